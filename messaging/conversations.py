"""Keeping conversations current with what we send and receive, so "waiting for a reply" and
"idle" mean what they say: a sent SMS to a client's contact is the client's reply, an inbound
SMS waits for one (unless it is a STOP, or the owner answering a notification)."""

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from messaging.models import Channel, Client, Conversation, Direction, Lead, Message, ScheduledMessage
from messaging.optouts import record_opt_out, remove_opt_out
from messaging.phones import normalize_phone

logger = logging.getLogger("messaging.conversations")

# Twilio's default opt-out / opt-in keywords; matched against the whole trimmed body.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


def record_outbound_sms(messages: list[ScheduledMessage], now: datetime) -> int:
    """Add each sent SMS to its client's conversation with the recipient (created if new),
    mark those conversations as answered, and count the contact's lead as active.

    Set-based: a handful of queries per call whatever the number of messages. Messages to
    the client's owner (notifications) are not conversations with a contact and are skipped.
    """
    replies = [
        m
        for m in messages
        if m.channel == Channel.SMS and m.client_id is not None and m.to != (m.client.owner_phone if m.client else "")
    ]
    if not replies:
        return 0
    pairs = {(m.client_id, m.to) for m in replies}
    match = Q()
    for client_id, phone in pairs:
        match |= Q(client_id=client_id, phone=phone)
    conversations: dict[tuple[int, str], Conversation] = {}
    for conversation in Conversation.objects.filter(match).order_by("created_at"):
        conversations[(conversation.client_id, conversation.phone)] = conversation  # the newest wins
    missing = [
        Conversation(client_id=client_id, phone=phone, created_at=now)
        for client_id, phone in pairs
        if (client_id, phone) not in conversations
    ]
    for conversation in Conversation.objects.bulk_create(missing):
        conversations[(conversation.client_id, conversation.phone)] = conversation
    Message.objects.bulk_create(
        Message(
            conversation=conversations[(m.client_id, m.to)], direction=Direction.OUTBOUND, body=m.body, created_at=now
        )
        for m in replies
    )
    Conversation.objects.filter(pk__in=[c.pk for c in conversations.values()]).update(
        last_message_at=now, last_message_direction=Direction.OUTBOUND, escalated_for_message_at=None
    )
    lead_ids = {m.lead_id for m in replies if m.lead_id}
    if lead_ids:
        Lead.objects.filter(pk__in=lead_ids).update(last_activity_at=now)
    return len(replies)


def client_for_number(number: str) -> Client | None:
    """The client that texts from `number`; None for the platform's shared number."""
    try:
        number = normalize_phone(number)
    except ValidationError:
        return None
    return Client.objects.filter(sms_from_number=number).order_by("pk").first()


def receive_inbound_sms(*, sender: str, recipient: str, body: str, now: datetime, sid: str = "") -> str:
    """Handle one inbound SMS: opt-out/opt-in keywords, then the client's conversation.

    Returns the keyword action: "opt_out", "opt_in" or "" (an ordinary message).
    Raises ValidationError when the sender is not a phone number (a short code, say).
    """
    phone = normalize_phone(sender)
    if sid and Message.objects.filter(provider_message_id=sid).exists():
        logger.info("sms_received_again", extra={"provider_message_id": sid})  # Twilio retried the webhook
        return ""
    client = client_for_number(recipient)
    keyword = body.strip().upper()
    action = ""
    if keyword in STOP_WORDS:
        record_opt_out(phone, client, source="inbound_stop")
        action = "opt_out"
    elif keyword in START_WORDS:
        remove_opt_out(phone, client)
        action = "opt_in"
    conversation_id = None
    if client is not None:
        # Nobody may answer a STOP, so it must not leave the conversation waiting for a reply
        # (agent-check would escalate it). START/YES can be a real answer and does wait. The
        # owner answering a notification is not a contact waiting for the client either
        # (escalating it would text the owner about the owner, round and round).
        awaits_reply = action != "opt_out" and phone != client.owner_phone
        conversation_id = record_inbound_message(client, phone, body, now, awaits_reply=awaits_reply, sid=sid)
    logger.info(
        "sms_received",
        extra={
            "provider_message_id": sid,
            "client_id": client.pk if client else None,
            "conversation_id": conversation_id,
            "action": action or "message",
        },
    )
    return action


def record_inbound_message(
    client: Client, phone: str, body: str, now: datetime, *, awaits_reply: bool, sid: str = ""
) -> int:
    """Add the message to the client's conversation with `phone` (created if new); its id."""
    with transaction.atomic():
        # Two texts at once from a new number must not open two conversations, and nothing
        # makes (client, phone) unique: serialise per client on the client's row instead.
        Client.objects.select_for_update().filter(pk=client.pk).exists()
        conversation = Conversation.objects.filter(client=client, phone=phone).order_by("-created_at").first()
        if conversation is None:
            lead = Lead.objects.filter(client=client, phone=phone).order_by("-created_at").first()
            conversation = Conversation.objects.create(client=client, lead=lead, phone=phone, created_at=now)
        Message.objects.create(
            conversation=conversation, direction=Direction.INBOUND, body=body, created_at=now, provider_message_id=sid
        )
        if conversation.lead_id:
            Lead.objects.filter(pk=conversation.lead_id).update(last_activity_at=now)
        if awaits_reply:
            Conversation.objects.filter(pk=conversation.pk).update(
                last_message_at=now, last_message_direction=Direction.INBOUND, escalated_for_message_at=None
            )
    return conversation.pk
