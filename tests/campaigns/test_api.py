"""The campaigns API over HTTP: DRF token auth, JSON errors, real PostgreSQL."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignStatus, RecipientState
from campaigns.tick import process_campaigns
from messaging.models import Lead, Status
from tests.campaigns.factories import NOON, add_recipients, campaign_messages, make_campaign
from tests.messaging.factories import make_client
from tests.users import CAMPAIGN_OPERATOR, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    user = staff_user("operator", *CAMPAIGN_OPERATOR)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def client():
    return make_client(tz="America/New_York")


def create(api, client, **fields):
    body = {"client": client.pk, "name": "Winter promo", "channel": "sms", "body": "Hi {{ first_name }}", **fields}
    return api.post("/api/campaigns/", body, format="json")


def test_create_answers_201_queued_with_defaults(api, client):
    response = create(api, client, send_window={"start": "09:00", "end": "18:00"}, per_minute=5)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["max_in_flight"] == 10 and data["per_minute"] == 5
    assert data["send_window"] == {"start": "09:00", "end": "18:00"}
    assert data["counts"]["total"] == 0 and data["in_flight"] == 0


def test_create_refuses_bad_template_unknown_field_and_naive_start(api, client):
    response = create(api, client, body="Hi {% if %}", startAt="x", start_at="2026-12-01T09:00:00")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert set(fields) >= {"startAt", "start_at"}
    response = create(api, client, body="Hi {% if %}")
    assert response.status_code == 400 and "does not compile" in response.json()["fields"]["body"][0]
    response = create(api, client, channel="email")
    assert response.status_code == 400 and "subject" in response.json()["fields"]


def test_add_leads_once_per_campaign_with_errors_by_position(api, client):
    campaign = make_campaign(client)
    ana = Lead.objects.create(client=client, name="Ana Lopez", phone="+14155550111")
    no_phone = Lead.objects.create(client=client, name="Ben", email="ben@example.com")
    other = Lead.objects.create(client=make_client(name="Other"), phone="+14155550112")
    url = f"/api/campaigns/{campaign.pk}/recipients/"
    response = api.post(url, {"leads": [ana.pk, no_phone.pk, other.pk, ana.pk]}, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["added"] == 1 and data["duplicates"] == 1
    assert [e["line"] for e in data["errors"]] == [2, 3]
    again = api.post(url, {"leads": [ana.pk]}, format="json").json()
    assert again["added"] == 0 and again["duplicates"] == 1
    recipient = campaign.recipients.get()
    assert (recipient.first_name, recipient.last_name, recipient.lead_id) == ("Ana", "Lopez", ana.pk)


def test_add_contacts(api, client):
    campaign = make_campaign(client, channel="email", subject="Hi")
    response = api.post(
        f"/api/campaigns/{campaign.pk}/recipients/",
        {"contacts": [{"email": "A@Example.com", "first_name": "Ana", "city": "NYC"}, {"phone": "+14155550111"}]},
        format="json",
    )
    data = response.json()
    assert data["added"] == 1 and data["errors"] == [{"line": 2, "error": "No email: a email campaign needs one."}]
    recipient = campaign.recipients.get()
    assert recipient.to == "a@example.com" and recipient.fields == {"city": "NYC"}


def test_csv_keeps_good_rows_and_reports_bad_lines(api, client):
    campaign = make_campaign(client)
    csv_text = (
        "phone,first_name,city\n"
        "+14155550111,Ana,NYC\n"
        "not-a-number,Ben,LA\n"
        "+14155550112,Chloe,SF,extra\n"
        "(415) 555-0111,Ana again,NYC\n"
        ",Dev,\n"
        "+14155550113,Elif,Austin\n"
    )
    response = api.post(f"/api/campaigns/{campaign.pk}/recipients/", csv_text, content_type="text/csv")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["added"] == 2 and data["duplicates"] == 1
    assert [e["line"] for e in data["errors"]] == [3, 4, 6]
    assert sorted(campaign.recipients.values_list("first_name", flat=True)) == ["Ana", "Elif"]


def test_csv_without_an_address_column_is_a_400(api, client):
    campaign = make_campaign(client)
    response = api.post(f"/api/campaigns/{campaign.pk}/recipients/", "name\nAna\n", content_type="text/csv")
    assert response.status_code == 400 and "phone" in response.json()["error"]


def test_pause_resume_and_illegal_moves_are_409(api, client):
    campaign = make_campaign(client)
    base = f"/api/campaigns/{campaign.pk}"
    assert api.post(f"{base}/resume/").status_code == 409
    assert api.post(f"{base}/pause/").json()["status"] == "paused"
    assert api.post(f"{base}/pause/").status_code == 409
    assert api.post(f"{base}/resume/").json()["status"] == "queued"
    response = api.post(f"{base}/cancel/")
    assert response.json()["status"] == "cancelled"
    assert api.post(f"{base}/resume/").status_code == 409
    assert api.post(f"{base}/recipients/", {"leads": []}, format="json").status_code == 409


def test_cancel_cancels_pending_messages_and_skips_pending_recipients(api, client):
    campaign = make_campaign(client, max_in_flight=2)
    add_recipients(campaign, 4)
    process_campaigns(NOON)
    sent = campaign_messages(campaign).first()
    sent.status = Status.SENT
    sent.save()
    response = api.post(f"/api/campaigns/{campaign.pk}/cancel/")
    assert response.status_code == 200
    assert sorted(campaign_messages(campaign).values_list("status", flat=True)) == ["cancelled", "sent"]
    states = sorted(campaign.recipients.values_list("state", flat=True))
    assert states == ["launched", "skipped", "skipped", "skipped"]  # the sent one syncs to done next tick
    process_campaigns(NOON)
    assert sorted(campaign.recipients.values_list("state", flat=True)) == ["done", "skipped", "skipped", "skipped"]
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CANCELLED


def test_detail_has_counts_per_state_and_in_flight(api, client):
    campaign = make_campaign(client, max_in_flight=2)
    add_recipients(campaign, 3)
    process_campaigns(NOON)
    data = api.get(f"/api/campaigns/{campaign.pk}/").json()
    assert data["counts"] == {"pending": 1, "launched": 2, "done": 0, "skipped": 0, "failed": 0, "total": 3}
    assert data["in_flight"] == 2 and data["status"] == "running"


def test_list_filters_by_status(api, client):
    make_campaign(client, name="a")
    make_campaign(client, name="b", status=CampaignStatus.PAUSED)
    data = api.get("/api/campaigns/?status=paused").json()
    assert [c["name"] for c in data["results"]] == ["b"]
    assert api.get("/api/campaigns/").json()["count"] == 2
    response = api.get("/api/campaigns/?status=nope")
    assert response.status_code == 400 and "status" in response.json()["fields"]


def test_unknown_campaign_is_json_404_and_no_token_is_401(api):
    response = api.get("/api/campaigns/999999/")
    assert response.status_code == 404 and "999999" in response.json()["error"]
    assert APIClient().get("/api/campaigns/").status_code == 401


def test_adding_recipients_reopens_a_completed_campaign(api, client):
    campaign = make_campaign(client)
    process_campaigns(NOON)
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED
    api.post(f"/api/campaigns/{campaign.pk}/recipients/", {"contacts": [{"phone": "+14155550111"}]}, format="json")
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING
    assert process_campaigns(NOON).launched == 1
    assert campaign.recipients.get().state == RecipientState.LAUNCHED


def test_a_view_only_user_reads_campaigns_but_cannot_create_or_pause():
    viewer = staff_user("viewer", "campaigns.view_campaign")
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/campaigns/").status_code == 200
    assert client.post("/api/campaigns/", {"name": "x"}, format="json").status_code == 403
    assert client.post("/api/campaigns/1/pause/").status_code == 403
