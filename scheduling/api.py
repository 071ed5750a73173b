"""HTTP triggers and status for external schedulers: thin views over run_job and job_overview."""

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling import auth
from scheduling.models import Trigger
from scheduling.runner import UnknownJob, run_job
from scheduling.services import is_healthy, job_overview


class _Denied(Exception):
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


class CronSecretView(APIView):
    """Base: Bearer / X-Cron-Secret auth with per-IP failure throttling; no user, no session.

    A refusal carries no body: nothing tells a prober which part was wrong.
    """

    authentication_classes: list = []
    permission_classes: list = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # The secret is checked first: a scheduler with the right secret is never locked out
        # by someone else's failures from a shared address (a hosted scheduler's egress IP).
        if auth.secret_matches(auth.offered_secret(request)):
            return
        throttled = auth.is_throttled(request)
        auth.record_failure(request)
        if throttled:
            raise _Denied(429, {"Retry-After": "60"})
        raise _Denied(401, {"WWW-Authenticate": 'Bearer realm="cron"'})

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Denied):
            return Response(status=exc.status, headers=exc.headers)
        return super().handle_exception(exc)


class TriggerView(CronSecretView):
    def post(self, request: Request, job: str) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 255:
            return Response({"success": False, "message": "Idempotency-Key is longer than 255 characters"}, status=400)
        try:
            result = run_job(job, Trigger.HTTP, idempotency_key=key, claim_slot=True)
        except UnknownJob:
            return Response({"success": False, "job": job, "message": f"unknown job {job!r}"}, status=404)
        headers = {"Retry-After": "60"} if result.http_status == 503 else {}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(result.as_dict(), status=result.http_status, headers=headers)


class StatusView(CronSecretView):
    def get(self, request: Request) -> Response:
        overview = job_overview()
        healthy = is_healthy(overview)
        return Response({"healthy": healthy, "jobs": overview}, status=200 if healthy else 503)


def healthz(request: HttpRequest) -> JsonResponse:
    """Database reachable? No auth: for load balancers and uptime checks."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"ok": False, "database": "unreachable"}, status=503)
    return JsonResponse({"ok": True, "database": "ok"})
