"""Notifications people choose: preferences honoured, once per incident, unread in the header."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from notifications.models import Event, Notification
from notifications.services import preferences_of
from scheduling.models import Trigger
from scheduling.runner import run_job
from scheduling.services import sync_jobs
from tests.scheduling import sample_jobs
from tests.users import JOB_OPERATOR, grant

pytestmark = pytest.mark.django_db


def staff(name: str, address: str = "", **prefs: list[str]):
    user = get_user_model().objects.create_user(name, email=address, password="pw-for-tests", is_staff=True)
    user = grant(user, "scheduling.view_job")
    if prefs:
        chosen = preferences_of(user)
        for field, value in prefs.items():
            setattr(chosen, field, value)
        chosen.save()
    return user


@pytest.fixture
def broken(sample_jobs_registered, monkeypatch):
    monkeypatch.setattr(sample_jobs, "BROKEN", True)
    return sample_jobs


def test_a_failing_job_is_one_notification_per_incident_and_its_recovery_one_more(broken, settings):
    settings.CRON_ALERT_EMAILS = []
    ann = staff("ann", "ann@example.com", email=[Event.FAILURE, Event.RECOVERED])
    bob = staff("bob", "bob@example.com")  # defaults: in the app only
    for _ in range(5):
        run_job("test-fail", Trigger.CRON)
    broken.BROKEN = False
    run_job("test-fail", Trigger.CRON)
    run_job("test-fail", Trigger.CRON)
    for user in (ann, bob):
        events = list(Notification.objects.filter(user=user).order_by("created_at").values_list("event", flat=True))
        assert events == [Event.FAILURE, Event.RECOVERED], user
    assert [(m.subject, m.to) for m in mail.outbox] == [
        ("[cron] test-fail is failing", ["ann@example.com"]),
        ("[cron] test-fail recovered", ["ann@example.com"]),
    ]


def test_success_is_off_by_default_and_on_for_who_chose_it(sample_jobs_registered):
    quiet = staff("quiet")
    keen = staff("keen", "keen@example.com", in_app=[Event.SUCCESS], email=[Event.SUCCESS])
    run_job("test-ok", Trigger.CRON)
    assert not Notification.objects.filter(user=quiet).exists()
    assert Notification.objects.get(user=keen).subject == "[cron] test-ok succeeded"
    assert [m.to for m in mail.outbox] == [["keen@example.com"]]


def test_a_job_filter_limits_what_a_user_hears_of(broken):
    only_ok = staff("only-ok", jobs=["test-ok"])
    everything = staff("everything")
    run_job("test-fail", Trigger.CRON)
    assert not Notification.objects.filter(user=only_ok).exists()
    assert Notification.objects.filter(user=everything, job="test-fail", event=Event.FAILURE).count() == 1


def test_inactive_and_non_staff_users_hear_nothing(broken):
    get_user_model().objects.create_user("customer", email="c@example.com", password="pw-for-tests")
    gone = staff("gone")
    gone.is_active = False
    gone.save()
    run_job("test-fail", Trigger.CRON)
    assert not Notification.objects.exists()


def test_the_header_counts_unread_and_the_page_marks_them_read(broken, client):
    user = grant(staff("reader"), *JOB_OPERATOR)
    run_job("test-fail", Trigger.CRON)
    client.force_login(user)
    dashboard = client.get("/cron/").content.decode()
    assert 'aria-label="1 unread"' in dashboard
    inbox = client.get("/notifications/").content.decode()
    assert "[cron] test-fail is failing" in inbox and "new" in inbox
    assert 'aria-label="1 unread"' in inbox  # counted before this page marked it read
    assert Notification.objects.get(user=user).read_at is not None
    assert "unread" not in client.get("/cron/").content.decode().split("<main>")[0]


def test_preferences_page_saves_what_was_ticked(client, sample_jobs_registered):
    user = staff("chooser", "c@example.com")
    client.force_login(user)
    sync_jobs()
    page = client.get("/notifications/preferences/").content.decode()
    assert "Job run succeeded" in page and 'name="jobs" value="watchdog"' in page
    response = client.post(
        "/notifications/preferences/",
        {"in_app": [Event.FAILURE, "not-an-event"], "email": [Event.MISSED], "jobs": ["watchdog", "nope"]},
    )
    assert response.status_code == 302
    prefs = preferences_of(user)
    assert (prefs.in_app, prefs.email, prefs.jobs) == ([Event.FAILURE], [Event.MISSED], ["watchdog"])


def test_staff_who_may_not_see_jobs_hear_nothing_about_them(broken):
    blind = get_user_model().objects.create_user("blind", password="pw-for-tests", is_staff=True)
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    run_job("test-fail", Trigger.CRON)
    assert not Notification.objects.filter(user=blind).exists()
    assert Notification.objects.filter(user=boss, event=Event.FAILURE).count() == 1
