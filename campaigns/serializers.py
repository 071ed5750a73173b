"""Shapes of the campaigns API."""

from collections.abc import Mapping
from datetime import time
from typing import Any

from rest_framework import serializers

from campaigns.models import Campaign
from campaigns.services import template_errors
from config.api_errors import RefusesUnknownFields
from messaging.models import Channel, Client
from messaging.services import SUBJECT_MAX_CHARS
from messaging.web.serializers import AwareDateTimeField


class StrictSerializer(RefusesUnknownFields, serializers.Serializer):
    """Refuses unknown fields, naming the closest known one."""


class SendWindowField(serializers.Field):
    """{"start": "09:00", "end": "18:00"} in the client's zone -> (time, time)."""

    default_error_messages = {
        "invalid": 'Expected {"start": "HH:MM", "end": "HH:MM"}, e.g. {"start": "09:00", "end": "18:00"}.',
        "same": "start and end are the same time: leave send_window out to send at any time.",
    }

    def to_internal_value(self, data: Any) -> tuple[time, time]:
        if not isinstance(data, Mapping) or set(data) != {"start", "end"}:
            self.fail("invalid")
        try:
            start, end = (time.fromisoformat(str(data[k]).strip()) for k in ("start", "end"))
        except ValueError:
            self.fail("invalid")
        if start == end:
            self.fail("same")
        return start, end

    def to_representation(self, value: tuple[time, time]) -> dict[str, str]:
        return {"start": f"{value[0]:%H:%M}", "end": f"{value[1]:%H:%M}"}


class CampaignCreateSerializer(StrictSerializer):
    client = serializers.PrimaryKeyRelatedField(queryset=Client.objects.all())
    name = serializers.CharField(max_length=200)
    channel = serializers.ChoiceField(
        choices=Channel.choices,
        error_messages={"invalid_choice": "Unknown channel {input!r}: use 'sms' or 'email'."},
    )
    body = serializers.CharField()
    subject = serializers.CharField(max_length=SUBJECT_MAX_CHARS, required=False, allow_blank=True, default="")
    max_in_flight = serializers.IntegerField(min_value=1, max_value=10_000, default=10)
    per_minute = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True, default=None)
    send_window = SendWindowField(required=False, allow_null=True, default=None)
    start_at = AwareDateTimeField(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = template_errors(attrs["channel"], attrs["body"], attrs["subject"])
        if errors:
            raise serializers.ValidationError(errors)
        attrs["window"] = attrs.pop("send_window")
        return attrs


class RecipientsSerializer(StrictSerializer):
    leads = serializers.ListField(child=serializers.JSONField(), required=False)
    contacts = serializers.ListField(child=serializers.JSONField(), required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError(
                'Send one of {"leads": [ids]} or {"contacts": [{"phone"|"email", ...}]}, or a text/csv body.'
            )
        return attrs


class CampaignSerializer(serializers.ModelSerializer):
    send_window = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    in_flight = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "client",
            "name",
            "channel",
            "subject",
            "body",
            "max_in_flight",
            "per_minute",
            "send_window",
            "start_at",
            "status",
            "last_error",
            "counts",
            "in_flight",
            "created_at",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields

    def _counts(self, campaign: Campaign) -> dict[str, int]:
        return self.context["counts"][campaign.pk]

    def get_send_window(self, campaign: Campaign) -> dict[str, str] | None:
        if not campaign.has_window:
            return None
        return {"start": f"{campaign.window_start:%H:%M}", "end": f"{campaign.window_end:%H:%M}"}

    def get_counts(self, campaign: Campaign) -> dict[str, int]:
        return {k: v for k, v in self._counts(campaign).items() if k != "in_flight"}

    def get_in_flight(self, campaign: Campaign) -> int:
        return self._counts(campaign)["in_flight"]
