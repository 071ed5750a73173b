"""Job schedules, runs and stats over HTTP: `/api/cron/jobs/`, `/api/cron/jobs/<name>/`,
`/api/cron/jobs/<name>/stats/`, `/api/cron/runs/`.

Either the cron secret (an external scheduler or a deploy script) or a DRF token / staff
session whose user has the model permission: `scheduling.view_job` to read,
`scheduling.change_job` to PATCH.
"""

from datetime import datetime
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import RefusesUnknownFields
from config.api_paging import StrictLimitOffsetPagination
from config.api_permissions import CHANGE, StaffModelPermissions
from scheduling import auth, registry, schedule
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.services import sync_jobs
from scheduling.stats import job_stats


class CronSecretOrModelPermission(StaffModelPermissions):
    """The cron secret, or a staff user with view (read) / change (write) on Job."""

    perms_map = {**StaffModelPermissions.perms_map, "POST": [CHANGE]}

    def has_permission(self, request: Request, view: APIView) -> bool:
        offered = auth.offered_secret(request)
        if offered:
            if auth.secret_matches(offered):
                return True  # the right secret always passes, as on the triggers
            throttled = auth.is_throttled(request)
            auth.record_failure(request)
            if throttled:
                raise Throttled(wait=60, detail="Too many wrong secrets from this address; wait a minute.")
            return False
        return super().has_permission(request, view)


class JobSerializer(RefusesUnknownFields, serializers.ModelSerializer):
    """A job's schedule as stored, as in effect (blank = the registry's default) and its next runs."""

    class Meta:
        model = Job
        fields = ("name", "description", "enabled", "schedule", "timezone", "grace_seconds", "jitter_seconds")
        read_only_fields = ("name", "description")
        extra_kwargs = {
            "schedule": {"allow_blank": True, "help_text": "Cron expression (5 fields); blank: the default."},
            "timezone": {"allow_blank": True},
            "grace_seconds": {"allow_null": True, "max_value": 7 * 24 * 3600},
            "jitter_seconds": {"max_value": 3600},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        job: Job = self.instance
        spec = registry.get(job.name)
        expr = attrs.get("schedule", job.schedule) or (spec.schedule if spec else "")
        zone = attrs.get("timezone", job.timezone) or (spec.timezone if spec else "UTC")
        try:
            schedule.validate_timezone(zone)
        except schedule.ScheduleError as exc:
            raise ValidationError({"timezone": [str(exc)]}) from exc
        if expr:
            try:
                schedule.validate(expr, zone)
            except schedule.ScheduleError as exc:
                raise ValidationError({"schedule": [str(exc)]}) from exc
        jitter = attrs.get("jitter_seconds", job.jitter_seconds)
        if jitter and expr:
            gap = schedule.shortest_gap(expr, zone, timezone.now())
            if jitter >= gap.total_seconds():
                reason = f"must be shorter than the {int(gap.total_seconds())} s between two runs of {expr!r}"
                raise ValidationError({"jitter_seconds": [reason]})
        return attrs

    def to_representation(self, job: Job) -> dict[str, Any]:
        now = timezone.now()
        data = super().to_representation(job)
        spec = registry.get(job.name)
        data.update(
            {
                "effective": {
                    "schedule": job.cron,
                    "schedule_text": schedule.describe(job.cron) if job.cron else "",
                    "timezone": job.tz,
                    "grace_seconds": int(job.grace.total_seconds()),
                },
                "default": None
                if spec is None
                else {
                    "schedule": spec.schedule,
                    "timezone": spec.timezone,
                    "grace_seconds": int(spec.grace.total_seconds()),
                },
                "next_runs": [
                    at.isoformat().replace("+00:00", "Z")
                    for at in (schedule.next_runs(job.cron, job.tz, now) if job.enabled and job.cron else [])
                ],
                "health": job.health(now),
                "last_run_at": job.last_run_at,
                "last_status": job.last_status or None,
                "last_success_at": job.last_success_at,
            }
        )
        return data


class RunSerializer(serializers.ModelSerializer):
    job = serializers.CharField(source="job.name")

    class Meta:
        model = JobRun
        fields = (
            "id",
            "job",
            "trigger",
            "status",
            "planned_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "processed",
            "succeeded",
            "failed",
            "skip_reason",
            "error",
            "summary",
            "host",
        )


class _JobsApi(APIView):
    permission_classes = [CronSecretOrModelPermission]
    queryset = Job.objects.all()  # the model whose permissions a staff user needs


def _job(name: str) -> Job:
    sync_jobs()
    if registry.get(name) is None:
        raise NotFound(f"unknown job {name!r}; GET /api/cron/jobs/ lists them")
    return get_object_or_404(Job, name=name)


class JobListView(_JobsApi):
    def get(self, request: Request) -> Response:
        jobs = sync_jobs()
        return Response({"count": len(jobs), "results": JobSerializer(jobs, many=True).data})


class JobDetailView(_JobsApi):
    def get(self, request: Request, name: str) -> Response:
        return Response(JobSerializer(_job(name)).data)

    def patch(self, request: Request, name: str) -> Response:
        serializer = JobSerializer(_job(name), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)


def _positive_int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ValidationError({name: [f"must be a whole number from 1 to {maximum}, not {raw!r}"]})
    return value


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationError({name: [f"must be an ISO 8601 time with offset, e.g. 2026-12-01T00:00:00Z, not {raw!r}"]})
    return value


class JobStatsView(_JobsApi):
    def get(self, request: Request, name: str) -> Response:
        days = _positive_int(request, "days", 7, 90)
        return Response(job_stats(_job(name), days, timezone.now()))


class RunsPagination(StrictLimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class RunListView(_JobsApi):
    filters = {"status": RunStatus.values, "trigger": Trigger.values}

    def get(self, request: Request) -> Response:
        runs = JobRun.objects.select_related("job").order_by("-started_at", "-id")
        params = request.query_params
        errors = {}
        if params.get("job"):
            if registry.get(params["job"]) is None:
                errors["job"] = [f"unknown job {params['job']!r}"]
            runs = runs.filter(job__name=params["job"])
        for field, allowed in self.filters.items():
            if params.get(field):
                if params[field] not in allowed:
                    errors[field] = [f"{params[field]!r} is not one of {', '.join(allowed)}"]
                runs = runs.filter(**{field: params[field]})
        try:
            since, until = _when(request, "since"), _when(request, "until")
        except ValidationError as exc:
            errors.update(exc.detail)
            since = until = None
        if errors:
            raise ValidationError(errors)
        if since:
            runs = runs.filter(started_at__gte=since)
        if until:
            runs = runs.filter(started_at__lt=until)
        paginator = RunsPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)
