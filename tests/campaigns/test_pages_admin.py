"""The /campaigns/ page and the campaigns admin, through the Django test client."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Campaign, CampaignStatus
from campaigns.tick import process_campaigns
from scheduling.models import JobRun
from tests.campaigns.factories import NOON, add_recipients, make_campaign
from tests.messaging.factories import make_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def acme():
    return make_client(tz="America/New_York")


def test_page_needs_staff(client):
    response = client.get("/campaigns/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_page_shows_progress_in_flight_against_cap_and_window(staff, acme):
    from datetime import time

    campaign = make_campaign(acme, name="Spring", max_in_flight=2, window_start=time(9), window_end=time(18))
    add_recipients(campaign, 5)
    process_campaigns(NOON)
    response = staff.get("/campaigns/")
    row = response.context["rows"][0]
    assert row["counts"]["in_flight"] == 2 and row["launched_ever"] == 2 and row["counts"]["total"] == 5
    html = response.content.decode()
    assert "2 / 2" in html and "09:00-18:00 America/New_York" in html and "Spring" in html


def test_run_tick_now_runs_the_job_and_the_page_shows_the_run(staff, acme):
    campaign = make_campaign(acme, max_in_flight=3)
    add_recipients(campaign, 4)
    response = staff.post("/cron/process-campaigns/run/", {"next": "/campaigns/"})
    assert response.status_code == 302 and response["Location"] == "/campaigns/"
    run = JobRun.objects.get(job__name="process-campaigns")
    assert run.status == "succeeded" and run.summary["launched"] == 3
    page = staff.get("/campaigns/")
    tick = page.context["tick"]
    assert tick["last_run"] == run and tick["launched"] == 3 and tick["next_run_in"]


def test_admin_actions_pause_resume_cancel(staff, acme):
    campaign = make_campaign(acme)
    url = "/admin/campaigns/campaign/"
    staff.post(url, {"action": "pause_selected", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED
    staff.post(url, {"action": "resume_selected", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.QUEUED
    staff.post(url, {"action": "cancel_selected", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CANCELLED


def test_admin_change_page_shows_one_page_of_recipients(staff, acme):
    campaign = make_campaign(acme)
    add_recipients(campaign, 120)
    response = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert len(formset.forms) == 50
    page3 = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/?recipients_page=3")
    assert len(page3.context["inline_admin_formsets"][0].formset.forms) == 20
    assert "120 recipients" in response.content.decode()


def test_admin_cannot_change_a_recipients_address(staff, acme):
    """Addresses are checked when added (CSV, API, leads) and the tick trusts them."""
    (recipient,) = add_recipients(make_campaign(acme), 1)
    url = f"/admin/campaigns/campaignrecipient/{recipient.pk}/change/"
    form = staff.get(url).context["adminform"].form
    assert "to" not in form.fields and "campaign" not in form.fields
    staff.post(url, {"to": "+10000000000", "first_name": "X", "last_name": "", "fields": "{}"})
    recipient.refresh_from_db()
    assert recipient.to != "+10000000000"


def test_admin_csv_import_reports_bad_lines(staff, acme):
    campaign = make_campaign(acme)
    upload = SimpleUploadedFile("list.csv", b"phone,first_name\n+14155550111,Ana\nnope,Ben\n", "text/csv")
    response = staff.post(f"/admin/campaigns/campaign/{campaign.pk}/import-csv/", {"csv_file": upload}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert any("Added 1" in t and "line 3" in t for t in texts), texts
    assert campaign.recipients.count() == 1


def test_admin_changelist_counts_in_a_fixed_number_of_queries(staff, acme, django_assert_max_num_queries):
    for i in range(20):
        add_recipients(make_campaign(acme, name=f"c{i}"), 2)
    with django_assert_max_num_queries(15):
        response = staff.get("/admin/campaigns/campaign/")
    assert response.status_code == 200


def test_seed_demo_creates_a_running_a_paused_and_a_completed_campaign():
    from messaging.demo import seed_demo_data

    summary = seed_demo_data()
    assert summary.counts["campaigns"] == 3
    statuses = dict(Campaign.objects.values_list("name", "status"))
    assert sorted(statuses.values()) == ["completed", "paused", "running"]
    running = Campaign.objects.get(status="running")
    assert running.recipients.filter(state="launched").count() == running.max_in_flight
    assert running.recipients.filter(state="done").count() == 2
    assert Campaign.objects.get(status="completed").recipients.exclude(state="done").count() == 0
