"""Keeping conversations current with what we send, so "waiting for a reply" and "idle"
mean what they say: a sent SMS to a client's contact is the client's reply."""

from datetime import datetime

from django.db.models import Q

from messaging.models import Channel, Conversation, Direction, Lead, Message, ScheduledMessage


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
