"""Posting provider webhooks as the providers do: signed with Twilio's RequestValidator and
with the Svix scheme, the signature computed here (not by the code under test)."""

import base64
import hashlib
import hmac
import json
from datetime import datetime

from django.conf import settings
from django.test import Client as HttpClient
from django.utils import timezone
from twilio.request_validator import RequestValidator

TWILIO_TOKEN = "twilio-auth-token-for-tests"
SVIX_KEY = b"resend-signing-key-for-tests-32b"
SVIX_SECRET = "whsec_" + base64.b64encode(SVIX_KEY).decode()
ALICE = "+14155550123"
SHARED_NUMBER = "+14155550100"


def use_webhook_secrets(settings_fixture) -> None:
    settings_fixture.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings_fixture.RESEND_WEBHOOK_SECRET = SVIX_SECRET
    settings_fixture.PUBLIC_BASE_URL = ""


def post_twilio(path: str, params: dict, *, url: str | None = None, signature: str | None = None):
    signed_url = url or f"http://testserver{path}"
    if signature is None:
        signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(signed_url, params)
    return HttpClient().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def twilio_status(sid: str = "SM123", status: str = "delivered", **extra: str):
    params = {"MessageSid": sid, "MessageStatus": status, "To": ALICE, "From": SHARED_NUMBER, **extra}
    return post_twilio("/webhooks/twilio/status/", params)


def svix_signature(msg_id: str, timestamp: str, body: bytes, key: bytes = SVIX_KEY) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def post_resend(event: dict, *, sent_at: datetime | None = None, key: bytes = SVIX_KEY, signature: str | None = None):
    body = json.dumps(event).encode()
    timestamp = str(int((sent_at or timezone.now()).timestamp()))
    headers = {
        "HTTP_SVIX_ID": "msg_1",
        "HTTP_SVIX_TIMESTAMP": timestamp,
        "HTTP_SVIX_SIGNATURE": signature or svix_signature("msg_1", timestamp, body, key),
    }
    return HttpClient().post("/webhooks/resend/", body, content_type="application/json", **headers)


def resend_event(event_type: str, email_id: str = "em_1", *, created_at: datetime | None = None, **data) -> dict:
    when = created_at or timezone.now()
    return {"type": event_type, "created_at": when.isoformat(), "data": {"email_id": email_id, **data}}
