"""Django admin for campaigns: recipients inline a page at a time, the CSV import, and
pause / resume / cancel as actions (through the services, which check the transitions)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from campaigns.models import Campaign, CampaignRecipient
from campaigns.selectors import recipient_counts
from campaigns.services import CampaignConflict, add_csv, cancel_campaign, pause_campaign, resume_campaign
from messaging.admin import ReadOnlyMixin

RECIPIENTS_PER_PAGE = 50
CSV_MAX_BYTES = 10 * 1024 * 1024


class RecipientPageFormSet(BaseInlineFormSet):
    """One page of a campaign's recipients (`?recipients_page=N`): a campaign of 100,000 must
    not render 100,000 rows."""

    page = 1

    def get_queryset(self) -> QuerySet[CampaignRecipient]:
        if not hasattr(self, "_page_rows"):
            start = (self.page - 1) * RECIPIENTS_PER_PAGE
            self._page_rows = super().get_queryset().order_by("id")[start : start + RECIPIENTS_PER_PAGE]
        return self._page_rows


class RecipientInline(ReadOnlyMixin, admin.TabularInline):
    model = CampaignRecipient
    formset = RecipientPageFormSet
    extra = 0
    fields = ("to", "first_name", "last_name", "lead", "state", "reason", "message", "launched_at", "finished_at")
    readonly_fields = fields
    verbose_name_plural = f"recipients ({RECIPIENTS_PER_PAGE} a page; see 'Recipient pages' above)"

    def get_formset(self, request: HttpRequest, obj: Campaign | None = None, **kwargs: object) -> type:
        formset = super().get_formset(request, obj, **kwargs)
        try:
            page = max(1, int(request.GET.get("recipients_page", "1")))
        except ValueError:
            page = 1
        return type("RecipientPage", (formset,), {"page": page})


class CsvImportForm(forms.Form):
    csv_file = forms.FileField(label="CSV file", help_text="A header row with phone (SMS) or email, then any fields.")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "client", "channel", "status", "progress", "max_in_flight", "per_minute", "created_at")
    list_filter = ("status", "channel")
    search_fields = ("name",)
    list_select_related = ("client",)
    raw_id_fields = ("client",)
    show_full_result_count = False
    inlines = [RecipientInline]
    actions = ["pause_selected", "resume_selected", "cancel_selected"]
    readonly_fields = (
        "status",
        "last_error",
        "last_ticked_at",
        "started_at",
        "completed_at",
        "created_at",
        "recipient_pages",
    )

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            self._counts = recipient_counts(c.pk for c in cl.result_list)
        return response

    @admin.display(description="done / total")
    def progress(self, campaign: Campaign) -> str:
        # The changelist's counts come in two queries for the page (changelist_view); any
        # other caller (or a campaign not on that page) asks for its own.
        cached = getattr(self, "_counts", {})
        c = cached[campaign.pk] if campaign.pk in cached else recipient_counts([campaign.pk])[campaign.pk]
        return f"{c['done']} / {c['total']} ({c['failed']} failed, {c['skipped']} skipped)"

    @admin.display(description="Recipient pages")
    def recipient_pages(self, campaign: Campaign) -> str:
        if not campaign.pk:
            return "-"
        total = campaign.recipients.count()
        pages = max(1, -(-total // RECIPIENTS_PER_PAGE))
        links = format_html(
            '{} recipients. <a href="{}?campaign__id__exact={}">All in the recipients list</a> · '
            '<a href="{}">Import a CSV</a> · pages: ',
            total,
            reverse("admin:campaigns_campaignrecipient_changelist"),
            campaign.pk,
            reverse("admin:campaigns_campaign_import_csv", args=[campaign.pk]),
        )
        shown = [p for p in range(1, pages + 1) if p <= 10 or p == pages]
        return links + format_html_join(" ", '<a href="?recipients_page={}">{}</a>', ((p, p) for p in shown))

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:campaign_id>/import-csv/",
                self.admin_site.admin_view(self.import_csv),
                name="campaigns_campaign_import_csv",
            )
        ]
        return custom + super().get_urls()

    def import_csv(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not self.has_change_permission(request, campaign):
            return HttpResponseRedirect(reverse("admin:index"))
        form = CsvImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["csv_file"]
            if upload.size > CSV_MAX_BYTES:
                form.add_error("csv_file", f"At most {CSV_MAX_BYTES // (1024 * 1024)} MB; split the file.")
            else:
                try:
                    result = add_csv(campaign, upload.read().decode("utf-8-sig"))
                except UnicodeDecodeError:
                    form.add_error("csv_file", "The file is not UTF-8 text; save it as UTF-8.")
                except (ValidationError, CampaignConflict) as exc:
                    form.add_error("csv_file", " ".join(getattr(exc, "messages", [str(exc)])))
                else:
                    level = messages.WARNING if result.errors else messages.SUCCESS
                    lines = "; ".join(f"line {e['line']}: {e['error']}" for e in result.errors[:20])
                    self.message_user(
                        request,
                        f"Added {result.added}, {result.duplicates} duplicates, {len(result.errors)} bad rows"
                        + (f" ({lines})" if lines else "."),
                        level,
                    )
                    return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        context = {
            **self.admin_site.each_context(request),
            "campaign": campaign,
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/campaigns/import_csv.html", context)

    def _act(self, request: HttpRequest, queryset: QuerySet[Campaign], action, verb: str) -> None:  # noqa: ANN001
        done, refused = 0, []
        for campaign in queryset:
            try:
                action(campaign)
                done += 1
            except CampaignConflict as exc:
                refused.append(f"{campaign.name}: {exc}")
        if done:
            self.message_user(request, f"{verb} {done} campaign(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, " ".join(refused), messages.WARNING)

    @admin.action(description="Pause", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, pause_campaign, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, resume_campaign, "Resumed")

    @admin.action(description="Cancel (pending messages are cancelled)", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, cancel_campaign, "Cancelled")


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(admin.ModelAdmin):
    list_display = ("to", "campaign", "state", "reason", "launched_at", "finished_at")
    list_filter = ("state",)
    search_fields = ("to",)
    list_select_related = ("campaign",)
    raw_id_fields = ("campaign", "lead", "message")
    show_full_result_count = False
    # The address too: it was checked and normalised when added, and the tick trusts that
    # (an address typed here would be queued unchecked). A wrong one: delete, add it again.
    readonly_fields = ("campaign", "lead", "to", "state", "message", "reason", "launched_at", "finished_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # through the API or the campaign's CSV import, which normalise addresses
