from typing import Any

from django.utils import timezone
from rest_framework import serializers

from config.api_errors import RefusesUnknownFields
from messaging.models import Client
from schedules.models import ClientSchedule, ScheduleExecution
from schedules.services import derive_cron, next_runs, params_problems


class ScheduleSerializer(RefusesUnknownFields, serializers.ModelSerializer):
    client = serializers.PrimaryKeyRelatedField(queryset=Client.objects.all())
    time = serializers.TimeField(format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], required=False, allow_null=True)

    class Meta:
        model = ClientSchedule
        fields = (
            "id",
            "client",
            "name",
            "kind",
            "frequency",
            "time",
            "weekday",
            "day",
            "cron",
            "timezone",
            "enabled",
            "params",
            "catch_up_minutes",
            "last_occurrence_at",
            "next_occurrence_at",
        )
        read_only_fields = ("id", "last_occurrence_at", "next_occurrence_at")
        extra_kwargs = {"cron": {"required": False, "allow_blank": True}, "timezone": {"allow_blank": True}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None and "client" in attrs and attrs["client"] != self.instance.client:
            raise serializers.ValidationError({"client": ["A schedule cannot move to another client."]})
        probe = ClientSchedule(**{**self._current(), **attrs})
        if probe.frequency != "cron":
            probe.cron = ""
        try:
            attrs["cron"] = derive_cron(probe)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise serializers.ValidationError(
                {field if field in self.fields else "non_field_errors": [reason]}
            ) from exc
        if problems := params_problems(probe.kind, probe.client, attrs.get("params", self._params())):
            raise serializers.ValidationError({"params": problems})
        return attrs

    def _params(self) -> dict:
        return self.instance.params if self.instance is not None else {}

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        names = ("client", "kind", "frequency", "time", "weekday", "day", "cron", "timezone")
        return {name: getattr(self.instance, name) for name in names}

    def to_representation(self, item: ClientSchedule) -> dict[str, Any]:
        data = super().to_representation(item)
        data["timezone_effective"] = item.tz
        data["next_runs"] = (
            [at.isoformat().replace("+00:00", "Z") for at in next_runs(item, timezone.now())] if item.enabled else []
        )
        return data


class ExecutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScheduleExecution
        fields = ("id", "occurrence_at", "manual", "status", "key", "detail", "error", "created_at", "finished_at")
