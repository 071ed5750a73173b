"""JSON bodies shaped like Twilio's and Resend's, for the fake server.

Only the fields the SDKs and our providers read are guaranteed; the rest
are there so payloads look like the real thing when a test prints them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

TWILIO_API_VERSION = "2010-04-01"

TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    # code: (http status, message)
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable Twilio phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21705: (400, "The Messaging Service is invalid."),
}

RESEND_ERRORS: dict[str, tuple[int, str]] = {
    # name: (http status, message)
    "missing_api_key": (401, "Missing API key in the authorization header."),
    "invalid_api_key": (403, "API key is invalid."),
    "invalid_from_address": (403, "The example.test domain is not verified."),
    "validation_error": (422, "Invalid `to` field."),
    "missing_required_field": (422, "Missing required field."),
    "invalid_idempotent_request": (
        409,
        "Same idempotency key used with a different request payload.",
    ),
    "concurrent_idempotent_requests": (
        409,
        "Same idempotency key used while original request is still in progress.",
    ),
    "rate_limit_exceeded": (429, "Too many requests. Please slow down."),
    "internal_server_error": (500, "An unexpected error occurred."),
}


def rfc2822(when: datetime | None) -> str | None:
    # Twilio formats as "Thu, 30 Jul 2015 20:12:31 +0000"; the SDK ignores
    # the offset when parsing, so this must always be UTC.
    return format_datetime(when.astimezone(UTC)) if when else None


def new_message_sid() -> str:
    return "SM" + uuid.uuid4().hex


def messages_uri(account_sid: str) -> str:
    return f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages.json"


def twilio_message(record: dict[str, Any], *, status: str | None = None) -> dict:
    """A Message resource; `status` overrides the stored one (create replies
    say "queued" even though the fake stores the message as sent)."""
    sid = record["sid"]
    uri = f"/{TWILIO_API_VERSION}/Accounts/{record['account_sid']}/Messages/{sid}"
    status = status or record["status"]
    return {
        "account_sid": record["account_sid"],
        "api_version": TWILIO_API_VERSION,
        "body": record["body"],
        "date_created": rfc2822(record["date_created"]),
        "date_sent": None if status == "queued" else rfc2822(record["date_sent"]),
        "date_updated": rfc2822(record["date_created"]),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": record["from"],
        "messaging_service_sid": record.get("messaging_service_sid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": record["to"],
        "uri": f"{uri}.json",
    }


def twilio_page(account_sid: str, records: list[dict], page: int, page_size: int, more: bool) -> dict:
    base = messages_uri(account_sid)

    def page_uri(n: int) -> str:
        return f"{base}?PageSize={page_size}&Page={n}"

    start = page * page_size
    return {
        # Page.load_page finds the records under the only non-meta key.
        "messages": [twilio_message(r) for r in records],
        "end": start + max(len(records) - 1, 0),
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1) if more else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": page_uri(page),
    }


def twilio_error(code: int, message: str | None = None) -> tuple[int, dict]:
    status, default = TWILIO_ERRORS[code]
    return status, {
        "code": code,
        "message": message or default,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def resend_error(name: str, message: str | None = None) -> tuple[int, dict]:
    status, default = RESEND_ERRORS[name]
    return status, {"statusCode": status, "name": name, "message": message or default}
