from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from scheduling.models import Job, JobRun, Trigger
from scheduling.runner import run_job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "enabled",
        "cron_display",
        "tz_display",
        "last_status",
        "last_run_at",
        "last_success_at",
        "alert_state",
    )
    list_editable = ("enabled",)
    list_filter = ("enabled", "last_status", "alert_state")
    fields = (
        "name",
        "description",
        "enabled",
        "schedule",
        "timezone",
        "grace_seconds",
        "jitter_seconds",
        "last_run_at",
        "last_status",
        "last_success_at",
        "consecutive_failures",
        "consecutive_partials",
        "consecutive_overloads",
        "alert_state",
        "alert_changed_at",
    )
    readonly_fields = (
        "name",
        "description",
        "last_run_at",
        "last_status",
        "last_success_at",
        "consecutive_failures",
        "consecutive_partials",
        "consecutive_overloads",
        "alert_state",
        "alert_changed_at",
    )
    actions = ["run_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from the job registry

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Deleting a job would cascade to its run history, and the registry would recreate the
        # row, enabled, at the next tick: untick "enabled" instead. Without the permission the
        # change page has no delete link, "Delete selected" leaves the actions, and the delete
        # view answers 403.
        return False

    @admin.display(description="schedule")
    def cron_display(self, job: Job) -> str:
        return job.cron

    @admin.display(description="timezone")
    def tz_display(self, job: Job) -> str:
        return job.tz

    def has_run_permission(self, request: HttpRequest) -> bool:
        """ "Run now" sends messages: it needs scheduling.run_job, not just change_job."""
        return request.user.has_perm("scheduling.run_job")

    @admin.action(description="Run now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            result = run_job(job.name, Trigger.ADMIN)
            level = messages.SUCCESS if result.success else messages.ERROR
            self.message_user(request, f"{job.name}: {result.status}: {result.message}", level)


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    # Runs grow to millions of rows: no full count, no date hierarchy, the job joined once.
    list_display = (
        "id",
        "job",
        "trigger",
        "status",
        "started_at",
        "duration_ms",
        "processed",
        "succeeded",
        "failed",
        "host",
    )
    list_filter = ("status", "trigger", "job", "started_at")
    search_fields = ("=id", "error", "skip_reason", "idempotency_key")
    list_select_related = ("job",)
    raw_id_fields = ("job",)
    show_full_result_count = False
    ordering = ("-started_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False
