from django.contrib import admin
from django.http import HttpRequest

from analytics.models import COUNTER_FIELDS, DailyStats, UsageAlert


@admin.register(DailyStats)
class DailyStatsAdmin(admin.ModelAdmin):
    # One row per client per day: grows to millions, so no full counts or date drill-down.
    list_display = ("date", "client", *COUNTER_FIELDS, "median_first_response_seconds", "computed_at")
    list_select_related = ("client",)
    list_filter = ("date",)
    search_fields = ("client__name",)
    raw_id_fields = ("client",)
    show_full_result_count = False
    readonly_fields = ("client", "date", *COUNTER_FIELDS, "median_first_response_seconds", "computed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from the daily job


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    list_display = ("month", "client", "threshold", "sms_count", "allowance", "message", "created_at")
    list_select_related = ("client", "message")
    list_filter = ("threshold",)
    search_fields = ("client__name",)
    raw_id_fields = ("client", "message")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from the daily job
