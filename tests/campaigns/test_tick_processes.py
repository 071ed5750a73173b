"""Two real `process_campaigns` processes at once: the caps hold together."""

from collections import Counter

import pytest

from campaigns.models import Campaign, CampaignRecipient, RecipientState
from messaging.models import ScheduledMessage, Status
from tests.campaigns.factories import add_recipients, make_campaign
from tests.conftest import start_manage
from tests.messaging.factories import make_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CAMPAIGNS, CAP, RECIPIENTS = 60, 3, 30


def in_flight_per_campaign() -> Counter:
    keys = ScheduledMessage.objects.filter(
        idempotency_key__startswith="campaign:", status__in=[Status.PENDING, Status.SENDING]
    ).values_list("idempotency_key", flat=True)
    return Counter(int(key.split(":")[1]) for key in keys)


def tick_twice_at_once() -> None:
    # Small batches: many short transactions, so the two processes interleave on the same rows.
    workers = [start_manage("process_campaigns", CAMPAIGNS_TICK_BATCH_SIZE="3") for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, (out, err)


def test_two_processes_at_once_never_exceed_max_in_flight():
    client = make_client(tz="UTC")
    campaigns = [make_campaign(client, name=f"c{i}", max_in_flight=CAP) for i in range(CAMPAIGNS)]
    for campaign in campaigns:
        add_recipients(campaign, RECIPIENTS)
    for _ in range(3):
        tick_twice_at_once()
        in_flight = in_flight_per_campaign()
        assert max(in_flight.values()) == CAP, in_flight  # never above the cap...
        assert set(in_flight) == {c.pk for c in campaigns} and min(in_flight.values()) == CAP  # ...and filled
        # As if process-scheduled had sent them all: room for CAP more each.
        ScheduledMessage.objects.filter(idempotency_key__startswith="campaign:").update(status=Status.SENT)
    launched = Counter(
        CampaignRecipient.objects.exclude(state=RecipientState.PENDING).values_list("campaign_id", flat=True)
    )
    assert set(launched.values()) == {3 * CAP}
    keys = ScheduledMessage.objects.values_list("idempotency_key", flat=True)
    assert len(keys) == len(set(keys)) == CAMPAIGNS * 3 * CAP
    assert Campaign.objects.filter(status="running").count() == CAMPAIGNS
