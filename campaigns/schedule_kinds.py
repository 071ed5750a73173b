"""The `campaign` kind of client schedule: "every Monday 09:00 our time, launch this campaign to
qualified leads".

`params`: `{"campaign": <id of a campaign of the client, the template>, "lead_status"?: [...]}`.
Each occurrence creates a new queued campaign from the template (body, subject, caps, window),
named after it and the local date, with the client's leads in `lead_status` (all leads when not
given) as recipients. The campaign records the occurrence's key, so a re-fire after a crash
launches nothing twice.
"""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction

from campaigns.models import Campaign
from campaigns.services import add_leads, create_campaign
from messaging.models import Lead, LeadStatus
from schedules.models import ClientSchedule, Kind
from schedules.services import handles


def check_params(client: Any, params: dict) -> list[str]:
    problems = []
    template_id = params.get("campaign")
    if not isinstance(template_id, int) or isinstance(template_id, bool):
        problems.append("campaign: the id of one of the client's campaigns, used as the template")
    elif client is not None and not Campaign.objects.filter(pk=template_id, client=client).exists():
        problems.append(f"campaign: no campaign {template_id} of this client")
    statuses = params.get("lead_status", [])
    if not isinstance(statuses, list) or any(status not in LeadStatus.values for status in statuses):
        problems.append(f"lead_status: a list of {', '.join(LeadStatus.values)}")
    unknown = set(params) - {"campaign", "lead_status"}
    if unknown:
        problems.append(f"unknown params: {', '.join(sorted(unknown))}")
    return problems


@handles(Kind.CAMPAIGN, params=check_params)
def launch_campaign(item: ClientSchedule, occurrence: datetime, key: str) -> str:
    existing = Campaign.objects.filter(source_key=key).first()
    if existing is not None:
        return f"campaign {existing.pk} already created for this occurrence"
    problems = check_params(item.client, item.params)
    if problems:
        raise ValueError("; ".join(problems))
    template = Campaign.objects.get(pk=item.params["campaign"], client=item.client)
    local_day = occurrence.astimezone(ZoneInfo(item.tz)).date()
    leads = Lead.objects.filter(client=item.client)
    if item.params.get("lead_status"):
        leads = leads.filter(status__in=item.params["lead_status"])
    # All or nothing: a re-fire after a crash finds either no campaign or the whole one.
    with transaction.atomic():
        campaign = _from_template(template, f"{template.name} ({local_day:%Y-%m-%d})", key)
        added = add_leads(campaign, list(leads.order_by("pk").values_list("pk", flat=True)))
    return f"campaign {campaign.pk} with {added.added} recipients"


def _from_template(template: Campaign, name: str, key: str) -> Campaign:
    return create_campaign(
        client=template.client,
        name=name,
        channel=template.channel,
        body=template.body,
        subject=template.subject,
        max_in_flight=template.max_in_flight,
        per_minute=template.per_minute,
        window=(template.window_start, template.window_end) if template.window_start else None,
        source_key=key,
    )
