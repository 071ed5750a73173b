"""A client whose owner cannot be reached: one failed item the first time, recorded on the
client and shown in admin; skipped (run green) while the contact is unchanged; tried again as
soon as it changes. Through the real agent-check and follow-ups jobs."""

from datetime import UTC, datetime, timedelta

import pytest

from messaging.models import Client, Conversation, Lead, ScheduledMessage
from scheduling.models import JobRun, RunStatus
from tests.jobs import run_job_at

pytestmark = pytest.mark.django_db

TUESDAY_10AM_LA = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)


def make_client(name: str, **fields) -> Client:
    fields.setdefault("timezone", "America/Los_Angeles")
    fields.setdefault("owner_email", f"owner@{name.lower()}.example")
    return Client.objects.create(name=name, **fields)


def waiting(client: Client, phone: str) -> Conversation:
    return Conversation.objects.create(
        client=client, phone=phone, last_message_at=TUESDAY_10AM_LA, last_message_direction="in"
    )


def sent_to(source: str) -> list[str]:
    return sorted(ScheduledMessage.objects.filter(source=source).values_list("to", flat=True))


def set_contact(client: Client, **fields) -> None:
    """As an operator saving the client in admin."""
    client.refresh_from_db()
    for name, value in fields.items():
        setattr(client, name, value)
    client.save()


def test_agent_check_fails_one_item_then_skips_until_the_contact_changes():
    waiting(make_client("Good"), "+14155550150")
    bad = make_client("Bad", owner_email="")
    waiting(bad, "+14155550151")
    waiting(bad, "+14155550152")

    first = run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=20))
    assert first.status == RunStatus.PARTIAL
    assert (first.data["failed"], first.data["escalated"], first.data["skipped_owner_unreachable"]) == (1, 1, 1)
    assert "Bad" in JobRun.objects.get(pk=first.run_id).error
    bad.refresh_from_db()
    assert bad.owner_unreachable_at == TUESDAY_10AM_LA + timedelta(minutes=20)
    assert "no owner phone or email" in bad.owner_unreachable_reason and bad.owner_known_unreachable

    second = run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=35))
    assert second.status == RunStatus.SUCCEEDED
    assert (second.data["failed"], second.data["skipped_owner_unreachable"]) == (0, 2)
    assert sent_to("agent-stall") == ["owner@good.example"]

    set_contact(bad, owner_email="owner@bad.example")
    third = run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=50))
    assert third.status == RunStatus.SUCCEEDED and third.data["escalated"] == 2
    assert sent_to("agent-stall") == ["owner@bad.example", "owner@bad.example", "owner@good.example"]
    bad.refresh_from_db()
    assert (bad.owner_unreachable_at, bad.owner_unreachable_reason) == (None, "")


def test_follow_ups_fail_one_item_then_skip_and_send_once_the_contact_is_set():
    bad = make_client("Bad", owner_email="")
    for phone in ("+14155550143", "+14155550144"):
        Lead.objects.create(client=bad, phone=phone, follow_up_at=TUESDAY_10AM_LA - timedelta(minutes=5))

    first = run_job_at("follow-ups", TUESDAY_10AM_LA)
    assert first.status == RunStatus.FAILED  # its only item failed: worth one alert
    assert (first.data["failed"], first.data["skipped_owner_unreachable"]) == (1, 1)

    second = run_job_at("follow-ups", TUESDAY_10AM_LA + timedelta(minutes=30))
    assert second.status == RunStatus.SUCCEEDED
    assert (second.data["failed"], second.data["skipped_owner_unreachable"], second.data["follow_ups"]) == (0, 2, 0)

    set_contact(bad, owner_phone="+14155550100", notify_by="sms")
    third = run_job_at("follow-ups", TUESDAY_10AM_LA + timedelta(minutes=60))
    assert third.status == RunStatus.SUCCEEDED and third.data["follow_ups"] == 2
    assert sent_to("follow-up") == ["+14155550100", "+14155550100"]


def test_a_new_contact_that_is_not_valid_either_fails_once_more_naming_it():
    bad = make_client("Bad", owner_email="")
    waiting(bad, "+14155550151")
    run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=20))

    Client.objects.filter(pk=bad.pk).update(owner_email="owner at bad")  # bypasses form validation
    again = run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=35))
    assert again.status == RunStatus.FAILED and again.data["failed"] == 1
    bad.refresh_from_db()
    assert "owner email" in bad.owner_unreachable_reason and bad.owner_known_unreachable
    assert run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=50)).status == RunStatus.SUCCEEDED


def test_an_invalid_preferred_contact_falls_back_to_the_other_one():
    client = make_client("Mixed", notify_by="sms", owner_email="owner@mixed.example")
    Client.objects.filter(pk=client.pk).update(owner_phone="+1415")
    waiting(client, "+14155550151")
    result = run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=20))
    assert result.status == RunStatus.SUCCEEDED and sent_to("agent-stall") == ["owner@mixed.example"]


def test_client_admin_lists_and_filters_unreachable_owners(admin_client):
    make_client("Good")
    bad = make_client("Bad", owner_email="")
    waiting(bad, "+14155550151")
    run_job_at("agent-check", TUESDAY_10AM_LA + timedelta(minutes=20))

    page = admin_client.get("/admin/messaging/client/", {"owner_reachable": "no"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Bad" in html and "Good" not in html
    assert "no: client" in html and "no owner phone or email" in html
    change = admin_client.get(f"/admin/messaging/client/{bad.pk}/change/").content.decode()
    assert "no owner phone or email" in change
