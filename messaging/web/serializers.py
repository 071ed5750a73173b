"""Shapes of the enqueue API: what a caller may send, and how a queued message looks."""

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from config.api_errors import RefusesUnknownFields
from messaging.models import Channel, Client, DeliveryAttempt, Lead, ScheduledMessage
from messaging.services import RECIPIENT_MAX_CHARS, SUBJECT_MAX_CHARS, content_errors, send_at_error

SEND_AT_EXAMPLE = "2026-11-28T09:00:00-05:00"


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset. DRF's own field would silently read a naive time
    as UTC; for "send at 9:00" that is a message at the wrong hour, so refuse it instead."""

    default_error_messages = {
        "invalid_iso": f"Expected an ISO 8601 date-time with a timezone offset, e.g. {SEND_AT_EXAMPLE} or "
        "2026-11-28T14:00:00Z.",
        "naive": f"This date-time has no timezone offset; add one, e.g. {SEND_AT_EXAMPLE} or 2026-11-28T14:00:00Z.",
    }

    def to_internal_value(self, value: Any) -> datetime:
        if not isinstance(value, str):
            self.fail("invalid_iso")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail("invalid_iso")
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail("naive")
        return parsed


class EnqueueSerializer(RefusesUnknownFields, serializers.Serializer):
    """Checks the shape of a request; recipients are checked (and normalised) by the service."""

    channel = serializers.ChoiceField(
        choices=Channel.choices,
        error_messages={"invalid_choice": "Unknown channel {input!r}: use 'sms' or 'email'."},
    )
    to = serializers.CharField(max_length=RECIPIENT_MAX_CHARS)
    body = serializers.CharField()  # its limit depends on the channel: see validate()
    subject = serializers.CharField(max_length=SUBJECT_MAX_CHARS, required=False, allow_blank=True, default="")
    html = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    send_at = AwareDateTimeField(required=False, allow_null=True, default=None)
    client = serializers.PrimaryKeyRelatedField(
        queryset=Client.objects.all(), required=False, allow_null=True, default=None
    )
    lead = serializers.PrimaryKeyRelatedField(
        queryset=Lead.objects.select_related("client"), required=False, allow_null=True, default=None
    )
    # 251: the API stores it as "api:<key>" in a 255-character column.
    idempotency_key = serializers.CharField(max_length=251, required=False, allow_blank=True, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's own rules, checked here too so that every wrong field is named at once.
        errors = content_errors(attrs["channel"], attrs["body"], attrs["subject"], attrs["html"])
        if reason := send_at_error(attrs["send_at"], timezone.now()):
            errors["send_at"] = reason
        if errors:
            raise serializers.ValidationError(errors)
        lead, client = attrs["lead"], attrs["client"]
        if lead is not None:
            if client is None:
                # A message to a lead goes out as that lead's business (sender, quiet hours).
                attrs["client"] = lead.client
            elif lead.client_id != client.pk:
                raise serializers.ValidationError(
                    {"lead": f"Lead {lead.pk} belongs to client {lead.client_id}, not client {client.pk}."}
                )
        attrs["idempotency_key"] = attrs.get("idempotency_key") or None
        return attrs


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScheduledMessage
        fields = [
            "id",
            "channel",
            "to",
            "subject",
            "body",
            "html",
            "client",
            "lead",
            "send_at",
            "status",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "provider_message_id",
            "last_error_code",
            "last_error",
            "sent_at",
            "delivered_at",
            "idempotency_key",
            "source",
            "created_at",
        ]
        read_only_fields = fields


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["started_at", "duration_ms", "outcome", "http_status", "error_code", "error"]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    delivery_attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "delivery_attempts"]
        read_only_fields = fields
