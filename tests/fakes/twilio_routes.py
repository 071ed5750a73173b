"""Twilio Messages endpoints of the fake server (create and list)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .providers import FakeProviders, RecordedRequest

Result = tuple[int, Any, str]  # status, JSON body, outcome for the record


def handle_twilio(fake: FakeProviders, req: RecordedRequest) -> Result:
    account_sid = req.path.strip("/").split("/")[2]
    if _basic_auth(req) != (account_sid, fake.twilio_auth_token):
        return _error(20003)
    if req.route == "sms_create":
        return _create(fake, account_sid, req.form or {})
    return _list(fake, account_sid, req.query)


def _create(fake: FakeProviders, account_sid: str, form: dict[str, str]) -> Result:
    to = form.get("To")
    sender = form.get("From") or form.get("MessagingServiceSid")
    body = form.get("Body")
    if not to:
        return _error(21604)
    if not sender:
        return _error(21603)
    if not body and not form.get("MediaUrl"):
        return _error(21602)
    if fake.twilio_senders is not None and form.get("From") and form["From"] not in fake.twilio_senders:
        return _error(21606)
    service = form.get("MessagingServiceSid")
    if service and not service.startswith("MG"):
        return _error(21705)
    record = fake.store_sms(account_sid, to, sender, body or "", form.get("StatusCallback"), messaging_service=service)
    # Real Twilio answers "queued" ("accepted" through a Messaging Service, which picks the
    # sender later) and only later moves the message to sent; the fake stores it as sent
    # straight away so list queries find it.
    return 201, wire.twilio_message(record, status="accepted" if service else "queued"), "sent"


def _list(fake: FakeProviders, account_sid: str, query: dict[str, str]) -> Result:
    # The SDK sends date_sent_after as the key "DateSent>" (URL: DateSent%3E=),
    # which reads as "DateSent>=" on the wire.
    after = _parse_date(query.get("DateSent>"))
    before = _parse_date(query.get("DateSent<"))
    on = _parse_date(query.get("DateSent"))
    page_size = int(query.get("PageSize") or 50)
    page = int(query.get("Page") or 0)

    def keep(m: dict) -> bool:
        if m["account_sid"] != account_sid:
            return False
        if "To" in query and m["to"] != query["To"]:
            return False
        if "From" in query and m["from"] != query["From"]:
            return False
        sent = m["date_sent"]
        if (after or before or on) and sent is None:
            return False
        if after and sent < after:
            return False
        if before and sent > before:
            return False
        return not (on and sent.date() != on.date())

    with fake.lock:
        matched = [dict(m) for m in fake.messages if keep(m)]
    matched.sort(key=lambda m: m["date_sent"] or m["date_created"], reverse=True)
    start, end = page * page_size, (page + 1) * page_size
    body = wire.twilio_page(account_sid, matched[start:end], page, page_size, len(matched) > end)
    return 200, body, "listed"


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _basic_auth(req: RecordedRequest) -> tuple[str, str] | None:
    value = req.headers.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def _error(code: int) -> Result:
    status, body = wire.twilio_error(code)
    return status, body, f"error:{code}"
