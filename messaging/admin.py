"""Django admin for messaging: thin, and cheap on the tables that grow to millions of rows
(the queue, its attempts, conversation messages): no full counts, raw id widgets, joins
declared up front."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from messaging.delivery.suppressions import normalize_address
from messaging.models import (
    Call,
    Client,
    Conversation,
    DeliveryAttempt,
    EmailSuppression,
    Lead,
    Message,
    OptOut,
    PendingReport,
    ScheduledMessage,
)
from messaging.selectors import recipient_condition
from messaging.services import cancel_message, retry_message

INLINE_MESSAGES = 50


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class DeliveryAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ("started_at", "duration_ms", "outcome", "http_status", "error_code", "error", "provider_message_id")
    readonly_fields = fields
    ordering = ("started_at",)


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(admin.ModelAdmin):
    list_display = ("to", "channel", "status", "send_at", "attempts", "client", "source", "sent_at")
    list_filter = ("status", "channel", "client", "send_at")
    search_fields = ("to", "idempotency_key")  # shows the box; get_search_results does the lookup
    list_select_related = ("client",)
    raw_id_fields = ("client", "lead")
    show_full_result_count = False
    ordering = ("-send_at",)
    inlines = [DeliveryAttemptInline]
    actions = ["cancel_selected", "retry_selected"]

    # Read-only: state moves only through the services (the actions below) and the delivery
    # job, and recipients are only normalised on the way in through schedule_message().
    def get_readonly_fields(self, request: HttpRequest, obj: ScheduledMessage | None = None) -> list[str]:
        return [field.name for field in ScheduledMessage._meta.concrete_fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ScheduledMessage], search_term: str
    ) -> tuple[QuerySet[ScheduledMessage], bool]:
        """A full number or address (any common spelling) or idempotency key matches exactly,
        through an index; anything else is a substring of the recipient."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(recipient_condition(term) | Q(idempotency_key=term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # enqueue through the API or a job, which validate and normalise

    @admin.action(description="Cancel", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[ScheduledMessage]) -> None:
        changed = sum(cancel_message(message) for message in queryset.iterator(chunk_size=500))
        self._report(request, changed, "cancelled", "only pending messages can be cancelled")

    @admin.action(description="Retry now", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[ScheduledMessage]) -> None:
        changed = sum(retry_message(message) for message in queryset.iterator(chunk_size=500))
        self._report(request, changed, "queued again", "only failed or undelivered messages can be retried")

    def _report(self, request: HttpRequest, changed: int, done: str, rule: str) -> None:
        if changed:
            self.message_user(request, f"{changed} message{'s' if changed != 1 else ''} {done}.", messages.SUCCESS)
        else:
            self.message_user(request, f"No message {done}: {rule}.", messages.WARNING)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("message", "started_at", "duration_ms", "outcome", "http_status", "error_code", "worker")
    list_filter = ("outcome",)
    list_select_related = ("message",)
    raw_id_fields = ("message",)
    show_full_result_count = False
    ordering = ("-started_at",)


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    list_display = ("phone", "client", "source", "created_at")
    list_filter = ("source",)
    search_fields = ("phone",)
    list_select_related = ("client",)
    raw_id_fields = ("client",)


class EmailSuppressionForm(forms.ModelForm):
    class Meta:
        model = EmailSuppression
        fields = ("email", "reason", "detail")

    def clean_email(self) -> str:
        return normalize_address(self.cleaned_data["email"])  # as schedule_message stores recipients


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    """Addresses no email goes to. Deleting a row is how an operator lifts a suppression (the
    next email, or a Retry of the failed one, is sent); adding one suppresses by hand."""

    list_display = ("email", "reason", "created_at", "provider_message_id")
    list_filter = ("reason",)
    search_fields = ("email",)
    ordering = ("-created_at",)
    form = EmailSuppressionForm
    fields = ("email", "reason", "detail", "provider_message_id", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: EmailSuppression | None = None) -> tuple[str, ...]:
        # What a provider reported stays as reported: lift it (delete) or keep it.
        return self.fields if obj is not None else ("provider_message_id", "created_at")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, str]:
        return {"reason": "manual"}


@admin.register(PendingReport)
class PendingReportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Delivery reports whose message is not recorded `sent` yet; applied or expired by the
    delivery job, never edited."""

    list_display = ("provider_message_id", "channel", "event", "target", "error_code", "occurred_at", "received_at")
    list_filter = ("channel", "target")
    search_fields = ("=provider_message_id",)
    show_full_result_count = False
    ordering = ("-received_at",)


class OwnerReachableFilter(admin.SimpleListFilter):
    title = "owner reachable"
    parameter_name = "owner_reachable"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "No: notifications fail"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Client]) -> QuerySet[Client]:
        if self.value() == "no":
            return queryset.filter(owner_unreachable_at__isnull=False)
        if self.value() == "yes":
            return queryset.filter(owner_unreachable_at__isnull=True)
        return queryset


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "timezone",
        "notify_by",
        "owner_reachability",
        "text_back_enabled",
        "weekly_summary_enabled",
        "created_at",
    )
    list_filter = (OwnerReachableFilter, "notify_by", "text_back_enabled", "weekly_summary_enabled")
    search_fields = ("name", "owner_email", "owner_phone")
    readonly_fields = ("owner_reachability", "owner_unreachable_at")

    @admin.display(description="owner reachable", ordering="owner_unreachable_at")
    def owner_reachability(self, client: Client) -> str:
        if client.owner_unreachable_at is None:
            return "yes"
        if not client.owner_known_unreachable:
            return "contact changed: tried again at the next run"
        return f"no: {client.owner_unreachable_reason}"


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ("name", "phone", "email", "status", "client", "follow_up_at", "last_activity_at")
    list_filter = ("status", "client")
    search_fields = ("name", "phone", "email")
    list_select_related = ("client",)
    raw_id_fields = ("client",)
    show_full_result_count = False


class LatestMessagesFormSet(BaseInlineFormSet):
    """Only the newest messages: a long conversation must not render thousands of rows."""

    def get_queryset(self) -> QuerySet[Message]:
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset().order_by("-created_at", "-id")[:INLINE_MESSAGES]
        return self._latest


class MessageInline(ReadOnlyMixin, admin.TabularInline):
    model = Message
    formset = LatestMessagesFormSet
    extra = 0
    fields = ("created_at", "direction", "body")
    readonly_fields = fields
    verbose_name_plural = f"messages (newest {INLINE_MESSAGES})"


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("phone", "client", "lead", "last_message_at", "last_message_direction")
    list_filter = ("last_message_direction", "client")
    search_fields = ("phone",)
    list_select_related = ("client", "lead")
    raw_id_fields = ("client", "lead")
    show_full_result_count = False
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("conversation", "direction", "created_at")
    list_filter = ("direction",)
    search_fields = ("=conversation__phone",)
    list_select_related = ("conversation__client",)
    raw_id_fields = ("conversation",)
    show_full_result_count = False
    ordering = ("-created_at",)


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ("caller", "client", "status", "handled", "texted_back", "started_at")
    list_filter = ("status", "handled", "texted_back")
    search_fields = ("=caller",)
    list_select_related = ("client",)
    raw_id_fields = ("client",)
    show_full_result_count = False
    ordering = ("-started_at",)
