"""Reads shared by the API, the admin and the /campaigns/ page: counts for many campaigns at once."""

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Count

from campaigns.models import CampaignRecipient, RecipientState
from messaging.models import Status

STATES = [state.value for state in RecipientState]


def recipient_counts(campaign_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """{campaign id: {state: n, ..., "total": n, "in_flight": n}}, two queries for any number."""
    ids = list(campaign_ids)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {**dict.fromkeys(STATES, 0), "total": 0, "in_flight": 0})
    if not ids:
        return counts
    rows = (
        CampaignRecipient.objects.filter(campaign_id__in=ids)
        .values_list("campaign_id", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, state, n in rows:
        counts[campaign_id][state] = n
        counts[campaign_id]["total"] += n
    flying = (
        CampaignRecipient.objects.filter(
            campaign_id__in=ids,
            state=RecipientState.LAUNCHED,
            message__status__in=[Status.PENDING, Status.SENDING],
        )
        .values_list("campaign_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, n in flying:
        counts[campaign_id]["in_flight"] = n
    return counts
