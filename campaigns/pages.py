"""The /campaigns/ page for staff: each campaign's progress and the tick's last and next run."""

from datetime import datetime
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import recipient_counts
from scheduling import registry
from scheduling.dashboard import countdown_text
from scheduling.services import ensure_job

JOB_NAME = "process-campaigns"
PAGE_SIZE = 100


def tick_overview(now: datetime) -> dict[str, Any]:
    """The tick's last run (time, status, launched, errors) and its next run."""
    spec = registry.get(JOB_NAME)
    if spec is None:
        return {"registered": False}
    job = ensure_job(spec)
    last = job.runs.order_by("-started_at", "-id").first()
    next_run = job.next_run_at(now) if job.enabled else None
    return {
        "registered": True,
        "job": job,
        "last_run": last,
        "launched": (last.summary or {}).get("launched", 0) if last else 0,
        "errors": [line for line in (last.error or "").splitlines() if line] if last else [],
        "next_run_at": next_run,
        "next_run_in": countdown_text((next_run - now).total_seconds()) if next_run else "",
    }


def campaign_rows(status: str = "") -> list[dict[str, Any]]:
    campaigns = Campaign.objects.select_related("client").order_by("-created_at", "-id")
    if status in CampaignStatus.values:
        campaigns = campaigns.filter(status=status)
    campaigns = list(campaigns[:PAGE_SIZE])
    counts = recipient_counts(c.pk for c in campaigns)
    rows = []
    for campaign in campaigns:
        c = counts[campaign.pk]
        finished = c["done"] + c["failed"] + c["skipped"]
        rows.append(
            {
                "campaign": campaign,
                "counts": c,
                "launched_ever": c["launched"] + c["done"] + c["failed"] + c["skipped"],
                "percent": round(100 * finished / c["total"]) if c["total"] else 0,
            }
        )
    return rows


@staff_member_required
@permission_required("campaigns.view_campaign", raise_exception=True)
@require_GET
def campaigns_page(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    status = request.GET.get("status", "")
    context = {
        "rows": campaign_rows(status),
        "tick": tick_overview(now),
        "now": now,
        "status": status,
        "statuses": CampaignStatus.values,
        "page_size": PAGE_SIZE,
    }
    return render(request, "campaigns/campaigns.html", context)
