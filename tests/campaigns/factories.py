"""Small builders for campaign tests."""

from datetime import UTC, datetime

from campaigns.models import Campaign, CampaignRecipient
from messaging.models import Client, ScheduledMessage

# A Tuesday, 15:00 UTC = 10:00 in New York.
NOON = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def make_campaign(client: Client, **fields) -> Campaign:
    fields.setdefault("name", "Winter promo")
    fields.setdefault("channel", "sms")
    fields.setdefault("body", "Hi {{ first_name }}, 20% off this week!")
    return Campaign.objects.create(client=client, **fields)


def add_recipients(campaign: Campaign, count: int, start: int = 0, **fields) -> list[CampaignRecipient]:
    rows = [
        CampaignRecipient(
            campaign=campaign,
            to=f"+1415555{i:04d}" if campaign.channel == "sms" else f"r{i}@example.com",
            first_name=f"R{i}",
            **fields,
        )
        for i in range(start, start + count)
    ]
    return CampaignRecipient.objects.bulk_create(rows)


def campaign_messages(campaign: Campaign):
    return ScheduledMessage.objects.filter(idempotency_key__startswith=f"campaign:{campaign.pk}:")


def finish_messages(campaign: Campaign, status: str = "sent", **fields) -> int:
    """As if process-scheduled had delivered the campaign's in-flight messages."""
    return campaign_messages(campaign).filter(status__in=["pending", "sending"]).update(status=status, **fields)
