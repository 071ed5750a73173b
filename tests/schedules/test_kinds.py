"""The two kinds of client schedule, through the real tick: a campaign launched, a summary moved."""

from datetime import UTC, datetime, time

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignStatus
from messaging.models import LeadStatus, ScheduledMessage
from schedules.models import ClientSchedule, ExecutionStatus, Kind
from schedules.services import fire, save_schedule, tick_schedule
from scheduling.models import Trigger
from scheduling.runner import run_job
from tests.campaigns.factories import make_campaign
from tests.messaging.factories import make_client, make_lead

pytestmark = pytest.mark.django_db
MONDAY_0900_BERLIN = datetime(2026, 12, 7, 8, 0, 30, tzinfo=UTC)


def test_a_campaign_schedule_launches_a_campaign_to_qualified_leads_once():
    owner = make_client(tz="Europe/Berlin")
    template = make_campaign(owner, name="Monday offer", status=CampaignStatus.PAUSED, max_in_flight=4)
    for i, status in enumerate([LeadStatus.QUALIFIED, LeadStatus.QUALIFIED, LeadStatus.NEW]):
        make_lead(owner, phone=f"+1415555020{i}", status=status, name=f"Lead {i}")
    item = ClientSchedule(
        client=owner,
        name="weekly offer",
        kind=Kind.CAMPAIGN,
        frequency="weekly",
        time=time(9, 0),
        weekday=0,
        params={"campaign": template.pk, "lead_status": [LeadStatus.QUALIFIED]},
    )
    save_schedule(item, set(), now=datetime(2026, 12, 1, tzinfo=UTC))
    tick_schedule(item, MONDAY_0900_BERLIN)
    execution = item.executions.get()
    assert execution.status == ExecutionStatus.FIRED, execution.error
    launched = Campaign.objects.get(source_key=execution.key)
    assert launched.name == "Monday offer (2026-12-07)" and launched.max_in_flight == 4
    assert launched.status == CampaignStatus.QUEUED and launched.recipients.count() == 2
    fire(execution)  # a re-fire after a crash, same key
    assert Campaign.objects.filter(client=owner).count() == 2  # the template and one launch


def test_campaign_params_are_checked_when_the_schedule_is_made():
    owner, other = make_client(), make_client(name="Other")
    foreign = make_campaign(other, name="not yours")
    user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw-for-tests")
    api = APIClient()
    api.force_authenticate(user)
    body = {"client": owner.pk, "name": "x", "kind": "campaign", "frequency": "daily", "time": "09:00"}
    for params, reason in [({}, "the id of one of the client's campaigns"), ({"campaign": foreign.pk}, "no campaign")]:
        response = api.post("/api/schedules/", {**body, "params": params}, format="json")
        assert response.status_code == 400 and reason in " ".join(response.json()["fields"]["params"])


def test_a_weekly_summary_schedule_moves_the_clients_summary_from_monday_to_its_time():
    moved = make_client(name="Moved", tz="UTC", owner_email="moved@example.com", weekly_summary_enabled=True)
    make_client(name="Stays", tz="UTC", owner_email="stays@example.com", weekly_summary_enabled=True)
    item = ClientSchedule(
        client=moved, name="Friday summary", kind=Kind.WEEKLY_SUMMARY, frequency="weekly", time=time(17, 0), weekday=4
    )
    save_schedule(item, set(), now=datetime(2026, 12, 5, tzinfo=UTC))
    with time_machine.travel(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), tick=False):  # Monday 09:00
        run_job("weekly-summary", Trigger.CRON)
    assert list(ScheduledMessage.objects.values_list("to", flat=True)) == ["stays@example.com"]
    friday = datetime(2026, 12, 11, 17, 0, 20, tzinfo=UTC)
    with time_machine.travel(friday, tick=False):
        tick_schedule(ClientSchedule.objects.get(pk=item.pk), friday)
    execution = item.executions.get()
    assert execution.status == ExecutionStatus.FIRED, execution.error
    summary = ScheduledMessage.objects.get(to="moved@example.com")
    assert summary.idempotency_key == execution.key and "2026-12-04" in execution.detail
    assert fire(execution).detail == "already queued"
    assert ScheduledMessage.objects.filter(to="moved@example.com").count() == 1
