"""The one place campaigns hand messages to the delivery queue: schedule_messages(), in bulk."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from messaging.bulk import MessageSpec, schedule_messages
from messaging.models import Client, Lead, ScheduledMessage


@dataclass(frozen=True)
class Launch:
    key: str  # campaign:<id>:<recipient id>
    recipient_id: int
    channel: str
    to: str
    body: str
    subject: str
    client_id: int
    lead_id: int | None
    send_at: datetime


@dataclass
class Launched:
    messages: dict[int, uuid.UUID] = field(default_factory=dict)  # recipient id -> its message
    errors: dict[int, str] = field(default_factory=dict)  # recipient id -> why it cannot be queued


def recipient_key(campaign_id: int, recipient_id: int) -> str:
    return f"campaign:{campaign_id}:{recipient_id}"


def launch_messages(launches: list[Launch], now: datetime) -> Launched:
    """Queue a message per launch, idempotent by key: a key already queued (a tick that ran
    twice) names the message queued the first time. Only the client's and lead's ids are
    needed to queue, so neither row is read."""
    # One stand-in per client, not one per message (only the primary key is used).
    clients = {client_id: Client(pk=client_id) for client_id in {launch.client_id for launch in launches}}
    specs = [
        MessageSpec(
            channel=launch.channel,
            to=launch.to,
            body=launch.body,
            subject=launch.subject,
            send_at=launch.send_at,
            client=clients[launch.client_id],
            lead=Lead(pk=launch.lead_id) if launch.lead_id else None,
            idempotency_key=launch.key,
        )
        for launch in launches
    ]
    # Recipients are normalised as they are added (campaigns.services): not parsed again.
    bulk = schedule_messages(specs, source="campaign", now=now, recipients_normalized=True)
    by_key = {launches[index].key: message_id for index, message_id in bulk.created_ids.items()}
    if bulk.existing_keys:
        by_key.update(
            ScheduledMessage.objects.filter(idempotency_key__in=bulk.existing_keys).values_list("idempotency_key", "pk")
        )
    result = Launched()
    for index, launch in enumerate(launches):
        if index in bulk.errors:
            result.errors[launch.recipient_id] = "; ".join(f"{k}: {v}" for k, v in bulk.errors[index].items())
        elif launch.key in by_key:
            result.messages[launch.recipient_id] = by_key[launch.key]
    return result
