"""Tell operators when a job starts failing, goes overdue, or recovers: once per incident.

Failing means the last run failed (CRON_ALERT_AFTER_FAILURES in a row before the alert) or
CRON_PARTIAL_FAILING_AFTER runs in a row were partial; only a clean (succeeded) run recovers.

`Job.alert_state` records the incident operators were last told about. Each alert is a
conditional UPDATE of that field; only the process whose update changed the row sends the
email, so concurrent runs and watchdogs never send the same alert twice.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse_lazy
from django.utils import timezone

from notifications.models import Event
from notifications.services import notify
from scheduling.models import Health, Job, JobRun, RunStatus

logger = logging.getLogger("scheduling.alerts")
VIEW_JOBS = "scheduling.view_job"  # who may hear of a job: who may see it


def _transition(job: Job, to_state: str, now: datetime) -> bool:
    changed = (
        Job.objects.filter(pk=job.pk).exclude(alert_state=to_state).update(alert_state=to_state, alert_changed_at=now)
    )
    if changed:
        job.alert_state = to_state
        job.alert_changed_at = now
    return bool(changed)


def _send(event: str, subject: str, body: str, job: Job) -> None:
    """The team-wide email (CRON_ALERT_EMAILS), and each staff user who asked for `event`."""
    notify(event, subject, body, job=job.name, link=reverse_lazy("cron-history", args=[job.name]), perm=VIEW_JOBS)
    recipients = settings.CRON_ALERT_EMAILS
    logger.warning("cron_alert", extra={"job": job.name, "subject": subject, "recipients": len(recipients)})
    if not recipients:
        return
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # an alert that cannot be sent must not fail the run that raised it
        logger.exception("cron_alert_send_failed", extra={"job": job.name})


def notify_run_finished(job: Job, run: JobRun) -> None:
    now = run.finished_at or timezone.now()
    if run.status == RunStatus.FAILED:
        if job.consecutive_failures >= settings.CRON_ALERT_AFTER_FAILURES and _transition(job, Health.FAILING, now):
            _send(
                Event.FAILURE,
                f"[cron] {job.name} is failing",
                f"Job {job.name} failed {job.consecutive_failures} time(s) in a row.\n"
                f"Last run #{run.pk} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC:\n{run.error}\n",
                job,
            )
    elif run.status == RunStatus.PARTIAL:
        if job.is_failing() and _transition(job, Health.FAILING, now):
            _send(
                Event.PARTIAL,
                f"[cron] {job.name} is failing",
                f"Job {job.name} finished partial {job.consecutive_partials} time(s) in a row "
                f"(some items failed each time).\n"
                f"Last run #{run.pk} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC: "
                f"{run.succeeded} ok, {run.failed} failed:\n{run.error}\n",
                job,
            )
    elif run.status == RunStatus.SUCCEEDED and job.alert_state != Health.OK:
        # Only a clean run ends an incident: a partial run after a failure is not "recovered".
        previous = job.alert_state
        if _transition(job, Health.OK, now):
            _send(
                Event.RECOVERED,
                f"[cron] {job.name} recovered",
                f"Job {job.name} is healthy again (was {previous}).\n"
                f"Run #{run.pk} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC: {run.status}.\n",
                job,
            )
    if run.status == RunStatus.SUCCEEDED:
        # Not an incident: only users who chose it hear of every good run (off by default),
        # in the app or by email, never the team-wide list.
        notify(
            Event.SUCCESS,
            f"[cron] {job.name} succeeded",
            f"Run #{run.pk}: {run.succeeded} of {run.processed} items in {run.duration_ms} ms.",
            job=job.name,
            # Lazy: resolved only when someone is told. reverse() imports every URL module (the
            # admin, DRF, the webhooks' SDKs), a quarter of a job's start-up, paid by every
            # successful run although "every good run" notifications are off by default.
            link=reverse_lazy("cron-run", args=[job.name, run.pk]),
            perm=VIEW_JOBS,
        )


def notify_overloaded(job: Job, run: JobRun) -> None:
    """Alert that the overload guard keeps refusing `job`; once per incident."""
    now = run.finished_at or timezone.now()
    if job.alert_state != Health.OK or not _transition(job, Health.OVERLOADED, now):
        return
    _send(
        Event.OVERLOADED,
        f"[cron] {job.name} is not running: machine overloaded",
        f"Job {job.name} was refused {job.consecutive_overloads} time(s) in a row because the machine "
        f"is overloaded (CRON_MIN_FREE_MB / CRON_MAX_LOAD).\n"
        f"Last refusal #{run.pk} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC: {run.skip_reason}\n",
        job,
    )


def notify_overdue(job: Job, now: datetime) -> bool:
    """Alert that `job` missed its schedule; False when operators already know."""
    # From OVERLOADED too: a job that started again (a partial run does not clear that state)
    # and then stopped must still be heard of.
    if job.alert_state not in (Health.OK, Health.OVERLOADED) or not _transition(job, Health.OVERDUE, now):
        return False
    _send(
        Event.MISSED,
        f"[cron] {job.name} is overdue",
        f"Job {job.name} ({job.cron}, {job.tz}) has not completed a run since "
        f"{job.last_success_at or 'it was created'}; expected by "
        f"{job.grace_starts_at():%Y-%m-%d %H:%M} UTC plus {job.grace} grace.\n",
        job,
    )
    return True
