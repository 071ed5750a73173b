from django.contrib import admin
from django.http import HttpRequest

from messaging.models import Client
from schedules.models import ClientSchedule, ScheduleExecution
from schedules.services import save_schedule


class ExecutionInline(admin.TabularInline):
    model = ScheduleExecution
    fields = ("occurrence_at", "manual", "status", "key", "detail", "error", "finished_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    ordering = ("-occurrence_at",)

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        recent = super().get_queryset(request).order_by("-occurrence_at").values_list("pk", flat=True)[:20]
        return super().get_queryset(request).filter(pk__in=list(recent))


@admin.register(ClientSchedule)
class ClientScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "client", "kind", "frequency", "cron", "timezone", "enabled", "next_occurrence_at")
    list_filter = ("kind", "frequency", "enabled")
    search_fields = ("name", "client__name")
    readonly_fields = ("cron_in_effect", "counts_from", "last_occurrence_at", "next_occurrence_at")
    inlines = [ExecutionInline]

    @admin.display(description="cron in effect")
    def cron_in_effect(self, item: ClientSchedule) -> str:
        return f"{item.cron} ({item.tz})" if item.cron else "-"

    def save_model(self, request: HttpRequest, obj: ClientSchedule, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        save_schedule(obj, set(form.changed_data) if change else set())


class ClientScheduleInline(admin.TabularInline):
    """The client's schedules, on the client's admin page."""

    model = ClientSchedule
    fields = ("name", "kind", "frequency", "cron", "timezone", "enabled", "next_occurrence_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True


# The client's page lists its schedules; messaging stays unaware of this app.
_client_admin = admin.site.get_model_admin(Client)
_client_admin.inlines = [*_client_admin.inlines, ClientScheduleInline]
