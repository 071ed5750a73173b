"""Provider webhooks: Twilio delivery status and inbound SMS, Resend email events.

Thin views: check the provider's signature before reading anything else, then hand the
report to `messaging.delivery.reports` (delivery status, kept when it overtook the worker's
commit, bounces and complaints onto the suppression list) or the inbound SMS to
`messaging.conversations`, and answer 200 so the provider does not retry what was taken.

Resend signs with Standard Webhooks (Svix): the check is written out here, in a few lines
against the spec, rather than taken from the `standardwebhooks` package, whose 1.1.0 reads
only `webhook-*` headers (Resend sends `svix-*`), answers a malformed signature header with
an uncaught ValueError (a 500, which Svix retries) and accepts a mistyped secret without a
word. tests/messaging/test_webhooks.py checks this code against that package's signer.
"""

import base64
import binascii
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from messaging.conversations import receive_inbound_sms
from messaging.delivery.reports import apply_resend_event, apply_twilio_status

logger = logging.getLogger("messaging.web.webhooks")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SVIX_TOLERANCE = timedelta(minutes=5)


class SignatureError(Exception):
    """A webhook whose signature or timestamp does not check out."""


# -- Twilio ---------------------------------------------------------------------------------


def twilio_request_url(request: HttpRequest) -> str:
    """The URL as Twilio called it (the signature covers it), not as the proxy forwarded it."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return base + request.get_full_path() if base else request.build_absolute_uri()


def twilio_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request carries a valid X-Twilio-Signature; otherwise the answer to give."""
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        # An empty key would make every signature forgeable: refuse rather than accept.
        logger.error("twilio_webhook_not_configured")
        return HttpResponse("webhook secret not configured: set TWILIO_AUTH_TOKEN", status=503)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(token).validate(twilio_request_url(request), request.POST, signature):
        logger.warning("twilio_webhook_bad_signature", extra={"path": request.path, "signed": bool(signature)})
        return HttpResponse("invalid signature", status=403)
    return None


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    refusal = twilio_refusal(request)
    if refusal is not None:
        return refusal
    form = request.POST
    apply_twilio_status(
        form.get("MessageSid", ""), form.get("MessageStatus", ""), form.get("ErrorCode", ""), timezone.now()
    )
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    refusal = twilio_refusal(request)
    if refusal is not None:
        return refusal
    form = request.POST
    try:
        receive_inbound_sms(
            sender=form.get("From", ""),
            recipient=form.get("To", ""),
            body=form.get("Body", ""),
            now=timezone.now(),
            sid=form.get("MessageSid", ""),
        )
    except ValidationError:
        logger.warning("sms_received_from_non_phone", extra={"provider_message_id": form.get("MessageSid", "")})
    # Empty TwiML: no automatic reply (Twilio's own opt-out handling sends the STOP notice).
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


# -- Resend (Svix-signed) -------------------------------------------------------------------


def svix_key(secret: str) -> bytes:
    """The HMAC key from a `whsec_<base64>` signing secret."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(
            "RESEND_WEBHOOK_SECRET is not a valid signing secret: copy the whsec_... value from the Resend webhook page"
        ) from exc


def verify_svix_signature(
    *, secret: str, msg_id: str, timestamp: str, signatures: str, body: bytes, now: datetime
) -> None:
    """Raise SignatureError unless one `v1,<base64>` entry of `signatures` is the HMAC-SHA256
    of `{msg_id}.{timestamp}.{body}` and the timestamp is within 5 minutes of `now`.

    The timestamp check is what stops a captured request from being replayed later.
    """
    if not (msg_id and timestamp and signatures):
        raise SignatureError("missing svix-id, svix-timestamp or svix-signature header")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureError("svix-timestamp is not a Unix time") from exc
    if abs(now - sent_at) > SVIX_TOLERANCE:
        raise SignatureError("svix-timestamp is more than 5 minutes from now")
    digest = hmac.new(svix_key(secret), f"{msg_id}.{timestamp}.".encode() + body, sha256).digest()
    expected = base64.b64encode(digest)
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise SignatureError("no valid v1 signature")


@csrf_exempt
@require_POST
def resend_events(request: HttpRequest) -> HttpResponse:
    secret = settings.RESEND_WEBHOOK_SECRET
    if not secret:
        logger.error("resend_webhook_not_configured")
        return HttpResponse("webhook secret not configured: set RESEND_WEBHOOK_SECRET", status=503)
    try:
        verify_svix_signature(
            secret=secret,
            msg_id=request.headers.get("svix-id", ""),
            timestamp=request.headers.get("svix-timestamp", ""),
            signatures=request.headers.get("svix-signature", ""),
            body=request.body,
            now=timezone.now(),
        )
    except ImproperlyConfigured as exc:
        logger.error("resend_webhook_bad_secret")
        return HttpResponse(str(exc), status=503)
    except SignatureError as exc:
        logger.warning("resend_webhook_rejected", extra={"reason": str(exc)})
        return HttpResponse(str(exc), status=401)
    try:
        event = json.loads(request.body)
    except ValueError:
        return HttpResponse("body is not JSON", status=400)
    if not isinstance(event, dict):
        return HttpResponse("body is not a JSON object", status=400)
    apply_resend_event(event, timezone.now())
    return HttpResponse(status=200)
