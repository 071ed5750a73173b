from django.contrib import admin

from notifications.models import Notification, Preference


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "in_app", "email", "jobs")
    search_fields = ("user__username", "user__email")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "event", "job", "subject", "read_at")
    list_filter = ("event", "job")
    search_fields = ("subject", "user__username")
    readonly_fields = ("user", "event", "job", "subject", "body", "link", "created_at", "read_at")

    def has_add_permission(self, request: object) -> bool:
        return False
