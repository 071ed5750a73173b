"""Demo campaigns for `seed_demo`: one running, one paused, one completed, on the demo clients."""

import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta

from campaigns.models import Campaign, CampaignRecipient, CampaignStatus
from campaigns.services import add_leads, create_campaign
from campaigns.tick import process_campaigns
from messaging.models import Client, ScheduledMessage, Status


def seed_demo_campaigns(clients: list[Client], base: datetime, new_id: Callable[[], uuid.UUID]) -> list[Campaign]:
    """Three campaigns through the real services and two real ticks (at base - 3 and - 2 min);
    the messages they queued then get ids from `new_id` (the demo's seeded random), so that the
    same seed gives the same rows."""
    dental, *others = clients
    second = others[0] if others else dental
    running = create_campaign(
        client=dental,
        name="Winter check-up reminder",
        channel="sms",
        body="Hi {{ first_name }}, it's time for your winter check-up at Brightside. Reply YES to book.",
        max_in_flight=5,
        per_minute=10,
    )
    completed = create_campaign(
        client=second,
        name="Holiday opening hours",
        channel="email",
        subject="Our holiday hours, {{ first_name }}",
        body="Hi {{ first_name }},\n\nWe're open 9:00-13:00 on Dec 24 and closed on Dec 25.\n",
        max_in_flight=20,
    )
    paused = create_campaign(
        client=second,
        name="Spring promo (paused)",
        channel="sms",
        body="Hi {{ first_name }}, 15% off in March!",
        window=(time(9), time(18)),
    )
    for campaign in (running, completed, paused):
        add_leads(campaign, campaign.client.leads.order_by("pk").values_list("pk", flat=True))
    Campaign.objects.filter(pk=paused.pk).update(status=CampaignStatus.PAUSED)
    process_campaigns(base - timedelta(minutes=3))
    # As if process-scheduled had sent what the first tick launched for the completed one, and
    # two of the running one's: the second tick then finds the completed one done.
    keys = ScheduledMessage.objects.filter(idempotency_key__startswith=f"campaign:{completed.pk}:")
    keys.update(status=Status.SENT, sent_at=base - timedelta(minutes=3))
    first_two = ScheduledMessage.objects.filter(idempotency_key__startswith=f"campaign:{running.pk}:").order_by("to")
    ScheduledMessage.objects.filter(pk__in=list(first_two.values_list("pk", flat=True)[:2])).update(
        status=Status.SENT, sent_at=base - timedelta(minutes=3)
    )
    process_campaigns(base - timedelta(minutes=2))
    _renumber([running, completed], new_id)
    return [running, paused, completed]


def _renumber(campaigns: list[Campaign], new_id: Callable[[], uuid.UUID]) -> None:
    """Give the campaigns' messages ids from `new_id`, in a fixed order (the foreign key from
    the recipient is checked at commit, so both rows move inside the seeding transaction)."""
    for campaign in campaigns:
        messages = ScheduledMessage.objects.filter(idempotency_key__startswith=f"campaign:{campaign.pk}:")
        for old in messages.order_by("to").values_list("pk", flat=True):
            new = new_id()
            ScheduledMessage.objects.filter(pk=old).update(id=new)
            CampaignRecipient.objects.filter(message_id=old).update(message_id=new)
