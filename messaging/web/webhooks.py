"""Provider webhooks: Twilio delivery status and inbound SMS, Resend email events.

Every view checks the provider's signature before reading anything else. Delivery reports
move a message only through `transition()` (sent -> delivered | undelivered), so a repeated
or late report changes nothing. A report for a message we do not know is acknowledged with
a 200 and logged: an error would only make the provider retry something we cannot use.
"""

import base64
import binascii
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from messaging.models import (
    Channel,
    Client,
    Conversation,
    Direction,
    Lead,
    Message,
    ScheduledMessage,
    Status,
    transition,
)
from messaging.optouts import record_opt_out, remove_opt_out
from messaging.phones import normalize_phone

logger = logging.getLogger("messaging.web.webhooks")

# Twilio's default opt-out / opt-in keywords; matched against the whole trimmed body.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SVIX_TOLERANCE = timedelta(minutes=5)


class SignatureError(Exception):
    """A webhook whose signature or timestamp does not check out."""


# -- Delivery reports (both providers) ------------------------------------------------------


def apply_delivery_report(channel: str, provider_id: str, target: str, **fields: Any) -> str:
    """Move the message the provider calls `provider_id` from sent to `target`.

    Returns what happened: "applied", "unknown" (no such message), "not_sent_yet" (the
    worker has not recorded the send yet) or "ignored" (already past sent: a repeat).
    """
    log = {"channel": channel, "provider_message_id": provider_id, "target": target}
    # An empty id would match every message not yet sent.
    message_id = None
    if provider_id:
        message_id = (
            ScheduledMessage.objects.filter(channel=channel, provider_message_id=provider_id)
            .values_list("pk", flat=True)
            .first()
        )
    if message_id is None:
        logger.info("delivery_report_unknown_message", extra=log)
        return "unknown"
    log["message_id"] = str(message_id)
    if transition(message_id, target, expect=[Status.SENT], **fields):
        logger.info("delivery_report_applied", extra=log)
        return "applied"
    current = ScheduledMessage.objects.filter(pk=message_id).values_list("status", flat=True).first()
    log["status"] = current
    if current in (Status.PENDING, Status.SENDING):
        # The provider answered before the worker committed "sent". Providers do not resend
        # a report we accepted, so this one is lost; the log says which message it was.
        logger.warning("delivery_report_before_sent", extra=log)
        return "not_sent_yet"
    logger.info("delivery_report_ignored", extra=log)
    return "ignored"


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


def apply_twilio_status(sid: str, message_status: str, error_code: str, now: datetime) -> str:
    """A Twilio status callback; queued/sending/sent and anything unknown change nothing."""
    message_status = message_status.lower()
    if message_status == "delivered":
        return apply_delivery_report(Channel.SMS, sid, Status.DELIVERED, delivered_at=now)
    if message_status in ("undelivered", "failed"):
        detail = f" (error {error_code})" if error_code else ""
        return apply_delivery_report(
            Channel.SMS,
            sid,
            Status.UNDELIVERED,
            last_error_code=(error_code or message_status)[:32],
            last_error=f"Twilio reported the message {message_status}{detail}",
        )
    logger.debug("twilio_status_no_change", extra={"provider_message_id": sid, "provider_status": message_status})
    return "no_change"


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


RESEND_EVENTS: dict[str, tuple[str, str]] = {
    "email.delivered": (Status.DELIVERED, ""),
    "email.bounced": (Status.UNDELIVERED, "bounced"),
    "email.complained": (Status.UNDELIVERED, "complained"),
    "email.failed": (Status.UNDELIVERED, "failed"),  # Resend could not send it at all
    "email.suppressed": (Status.UNDELIVERED, "suppressed"),  # on Resend's suppression list
}


def apply_resend_event(event: dict[str, Any], now: datetime) -> str:
    """One Resend event; types other than delivered/bounced/complained are acknowledged."""
    event_type = event.get("type", "")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    email_id = str(data.get("email_id") or "")
    if event_type not in RESEND_EVENTS:
        logger.debug("resend_event_ignored", extra={"type": event_type, "provider_message_id": email_id})
        return "no_change"
    target, code = RESEND_EVENTS[event_type]
    if target == Status.DELIVERED:
        return apply_delivery_report(Channel.EMAIL, email_id, target, delivered_at=now)
    error = resend_error_text(event_type, data)
    outcome = apply_delivery_report(Channel.EMAIL, email_id, target, last_error_code=code, last_error=error)
    if event_type == "email.complained" and outcome == "ignored":
        # Complaints usually come after "delivered", which no transition leaves; the message
        # stays delivered but shows the complaint, so an operator sees why a lead went quiet.
        ScheduledMessage.objects.filter(
            channel=Channel.EMAIL, provider_message_id=email_id, status=Status.DELIVERED
        ).update(last_error_code=code, last_error=error)
    if event_type == "email.complained":
        logger.warning("email_complaint", extra={"provider_message_id": email_id, "outcome": outcome})
    return outcome


def resend_error_text(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "email.complained":
        return "The recipient marked this email as spam."
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    kind = " / ".join(str(part) for part in (bounce.get("type"), bounce.get("subType")) if part)
    reason = str(bounce.get("message") or "")
    return "Resend reported a bounce" + (f" ({kind})" if kind else "") + (f": {reason}" if reason else ".")


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
