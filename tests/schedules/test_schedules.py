"""Client schedules: cron from a frequency, each occurrence fired once, late ones missed."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from schedules import services
from schedules.models import ClientSchedule, ExecutionStatus, Frequency, Kind
from schedules.services import derive_cron, save_schedule, tick_schedule
from tests.messaging.factories import make_client

pytestmark = pytest.mark.django_db
FIRED: list[str] = []


@pytest.fixture(autouse=True)
def recording_handler(monkeypatch):
    """A stand-in for a kind's work: records the key it was given."""
    FIRED.clear()
    monkeypatch.setitem(services._handlers, "test", lambda item, occurrence, key: FIRED.append(key) or "queued")
    yield FIRED


def schedule(client, *, created: datetime, **fields) -> ClientSchedule:
    item = ClientSchedule(client=client, name="s", kind="test", **fields)
    return save_schedule(item, set(), now=created)


def tick_every_minute(item: ClientSchedule, start: datetime, end: datetime) -> None:
    now = start
    while now < end:
        if item.next_occurrence_at and item.next_occurrence_at <= now:  # what due_schedules() asks
            tick_schedule(item, now)  # keeps item's next_occurrence_at up to date
        now += timedelta(minutes=1)


@pytest.mark.parametrize(
    ("fields", "expr"),
    [
        ({"frequency": Frequency.DAILY, "time": time(9, 0)}, "0 9 * * *"),
        ({"frequency": Frequency.WEEKLY, "time": time(17, 30), "weekday": 4}, "30 17 * * 5"),
        ({"frequency": Frequency.WEEKLY, "time": time(8, 0), "weekday": 6}, "0 8 * * 0"),
        ({"frequency": Frequency.MONTHLY, "time": time(7, 5), "day": 31}, "5 7 31 * *"),
        ({"frequency": Frequency.CRON, "cron": "*/15 9-17 * * 1-5"}, "*/15 9-17 * * 1-5"),
    ],
)
def test_frequencies_translate_to_cron(fields, expr):
    assert derive_cron(ClientSchedule(client=make_client(), **fields)) == expr


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frequency": Frequency.DAILY}, "time: required"),
        ({"frequency": Frequency.WEEKLY, "time": time(9, 0)}, "weekday: required"),
        ({"frequency": Frequency.MONTHLY, "time": time(9, 0), "day": 0}, "day: required"),
        ({"frequency": Frequency.CRON, "cron": "* * * * * *"}, "6 fields given, 5 expected"),
        ({"frequency": Frequency.DAILY, "time": time(9, 0), "timezone": "Europe/Berln"}, "unknown timezone"),
    ],
)
def test_an_impossible_schedule_is_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        derive_cron(ClientSchedule(client=make_client(), **fields))


def test_each_occurrence_fires_once_even_when_ticked_twice():
    created = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.DAILY, time=time(9, 0))
    at = datetime(2026, 12, 1, 9, 0, 20, tzinfo=UTC)
    tick_schedule(item, at)
    tick_schedule(ClientSchedule.objects.get(pk=item.pk), at)  # a second tick, another host
    tick_schedule(ClientSchedule.objects.get(pk=item.pk), at + timedelta(minutes=1))
    assert FIRED == [f"schedule:{item.pk}:2026-12-01T09:00:00Z"]
    item.refresh_from_db()
    assert item.next_occurrence_at == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "fall_back"), [("America/New_York", datetime(2026, 11, 1, tzinfo=UTC))])
def test_a_daily_0130_fires_once_a_day_across_the_fall_back_and_spring_forward(zone, fall_back):
    client = make_client(tz=zone)
    start = fall_back - timedelta(days=1)
    item = schedule(client, created=start, frequency=Frequency.DAILY, time=time(1, 30))
    tick_every_minute(item, start, start + timedelta(days=3))
    assert len(FIRED) == 3 and len(set(FIRED)) == 3, FIRED
    spring = datetime(2027, 3, 14, tzinfo=UTC)
    FIRED.clear()
    item = schedule(client, created=spring - timedelta(days=1), frequency=Frequency.DAILY, time=time(2, 30))
    tick_every_minute(item, spring - timedelta(days=1), spring + timedelta(days=2))
    assert len(FIRED) == 3, FIRED  # 02:30 does not exist on the 14th: it runs once, at 03:00


def test_a_catch_up_gap_records_old_occurrences_missed_and_fires_only_a_recent_one():
    created = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.CRON, cron="0 * * * *")
    # The tick was down from 00:30 until 03:20: 01:00 and 02:00 are past, 03:00 is 20 min old.
    tick_schedule(item, datetime(2026, 12, 1, 3, 20, tzinfo=UTC))
    statuses = dict(item.executions.values_list("occurrence_at__hour", "status"))
    assert statuses == {1: ExecutionStatus.MISSED, 2: ExecutionStatus.MISSED, 3: ExecutionStatus.FIRED}
    assert FIRED == [f"schedule:{item.pk}:2026-12-01T03:00:00Z"]
    # The next tick, at 06:01, fires 06:00 and records 04:00 and 05:00 missed.
    FIRED.clear()
    tick_schedule(ClientSchedule.objects.get(pk=item.pk), datetime(2026, 12, 1, 6, 1, tzinfo=UTC))
    assert FIRED == [f"schedule:{item.pk}:2026-12-01T06:00:00Z"]
    # With 30 minutes of catch-up, 07:00 found at 07:45 is recorded missed, not fired late.
    item.refresh_from_db()
    item.catch_up_minutes = 30
    item.save()
    FIRED.clear()
    tick_schedule(item, datetime(2026, 12, 1, 7, 45, tzinfo=UTC))
    assert FIRED == [] and item.executions.get(occurrence_at__hour=7).status == ExecutionStatus.MISSED


def test_occurrences_while_disabled_are_not_missed():
    created = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.CRON, cron="0 * * * *")
    item.enabled = False
    save_schedule(item, {"enabled"}, now=created)
    item.enabled = True
    save_schedule(item, {"enabled"}, now=datetime(2026, 12, 3, 10, 30, tzinfo=UTC))
    tick_schedule(item, datetime(2026, 12, 3, 11, 0, 5, tzinfo=UTC))
    assert list(item.executions.values_list("status", flat=True)) == [ExecutionStatus.FIRED]


def test_a_failing_handler_is_that_occurrences_failure_and_notifies(monkeypatch):
    from notifications.models import Notification
    from tests.users import staff_user

    staff_user("ops", "schedules.view_clientschedule")

    def broken(item, occurrence, key):
        raise RuntimeError("the campaign template is gone")

    monkeypatch.setitem(services._handlers, "test", broken)
    created = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.DAILY, time=time(9, 0))
    assert tick_schedule(item, datetime(2026, 12, 1, 9, 0, 30, tzinfo=UTC)).failed == 1
    execution = item.executions.get()
    assert execution.status == ExecutionStatus.FAILED and "template is gone" in execution.error
    assert Notification.objects.get().event == "schedule_failed"


@pytest.fixture
def api():
    user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw-for-tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_api_create_answers_cron_and_the_next_runs(api):
    owner = make_client(tz="Europe/Berlin")
    response = api.post(
        "/api/schedules/",
        {
            "client": owner.pk,
            "name": "Friday summary",
            "kind": Kind.WEEKLY_SUMMARY,
            "frequency": "weekly",
            "time": "17:00",
            "weekday": 4,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cron"] == "0 17 * * 5" and body["timezone_effective"] == "Europe/Berlin"
    assert len(body["next_runs"]) == 5 and all(run.endswith(("T16:00:00Z", "T15:00:00Z")) for run in body["next_runs"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"frequency": "weekly", "time": "09:00"}, "weekday"),
        ({"frequency": "daily", "time": "9am"}, "time"),
        ({"frequency": "cron", "cron": "1 2 3"}, "cron"),
        ({"frequency": "daily", "time": "09:00", "timezone": "Mars/Base"}, "timezone"),
        ({"frequency": "daily", "time": "09:00", "kind": "fax"}, "kind"),
        ({"frequency": "daily", "time": "09:00", "wekday": 1}, "wekday"),
    ],
)
def test_api_refuses_an_invalid_schedule_naming_the_field(api, payload, field):
    body = {"client": make_client().pk, "name": "x", "kind": Kind.WEEKLY_SUMMARY, **payload}
    response = api.post("/api/schedules/", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"], response.content


def test_api_toggle_trigger_and_executions_with_stats(api):
    item = schedule(make_client(), created=datetime(2026, 12, 1, tzinfo=UTC), frequency="daily", time=time(9, 0))
    assert api.post(f"/api/schedules/{item.pk}/toggle/").json()["enabled"] is False
    assert api.post(f"/api/schedules/{item.pk}/toggle/").json()["enabled"] is True
    fired = api.post(f"/api/schedules/{item.pk}/trigger/")
    assert fired.status_code == 200 and fired.json()["status"] == "fired" and fired.json()["manual"] is True
    body = api.get(f"/api/schedules/{item.pk}/executions/?stats=true").json()
    assert body["count"] == 1 and body["stats"]["success_rate"] == 1.0 and body["stats"]["by_status"]["fired"] == 1
    assert api.patch(f"/api/schedules/{item.pk}/", {"time": "10:15"}, format="json").json()["cron"] == "15 10 * * *"
    assert api.delete(f"/api/schedules/{item.pk}/").status_code == 204
    assert api.get(f"/api/schedules/{item.pk}/").status_code == 404


def test_a_view_only_user_cannot_change_schedules():
    from tests.users import staff_user

    viewer = staff_user("viewer", "schedules.view_clientschedule")
    client = APIClient()
    client.force_authenticate(viewer)
    item = schedule(make_client(), created=datetime(2026, 12, 1, tzinfo=UTC), frequency="daily", time=time(9, 0))
    assert client.get("/api/schedules/").status_code == 200
    assert client.post(f"/api/schedules/{item.pk}/toggle/").status_code == 403
    assert client.patch(f"/api/schedules/{item.pk}/", {"name": "y"}, format="json").status_code == 403


def test_the_clients_admin_page_lists_its_schedules(admin_client):
    owner = make_client()
    schedule(owner, created=datetime(2026, 12, 1, tzinfo=UTC), frequency="daily", time=time(9, 0))
    content = admin_client.get(f"/admin/messaging/client/{owner.pk}/change/").content.decode()
    assert "Client schedules" in content and "0 9 * * *" in content
    item = ClientSchedule.objects.get()
    page = admin_client.get(f"/admin/schedules/clientschedule/{item.pk}/change/")
    assert page.status_code == 200


def test_missed_occurrences_notify_and_a_zero_catch_up_is_refused(api):
    from notifications.models import Notification
    from tests.users import staff_user

    watcher = staff_user("watcher", "schedules.view_clientschedule")
    created = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.CRON, cron="0 * * * *")
    tick_schedule(item, datetime(2026, 12, 1, 3, 20, tzinfo=UTC))
    (note,) = Notification.objects.filter(user=watcher)
    assert note.event == "schedule_missed" and "missed 2 occurrences" in note.subject
    body = {"client": item.client.pk, "name": "x", "kind": "weekly-summary", "frequency": "daily", "time": "09:00"}
    response = api.post("/api/schedules/", {**body, "catch_up_minutes": 0}, format="json")
    assert response.status_code == 400 and "catch_up_minutes" in response.json()["fields"]


def test_a_stale_firing_execution_of_a_disabled_schedule_is_not_fired_again():
    created = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    item = schedule(make_client(tz="UTC"), created=created, frequency=Frequency.DAILY, time=time(9, 0))
    item.executions.create(occurrence_at=created, key="schedule:x", status=ExecutionStatus.FIRING, created_at=created)
    item.enabled = False
    save_schedule(item, {"enabled"}, now=created)
    assert services.refire_stale(created + timedelta(hours=1)) == 0 and FIRED == []
    item.enabled = True
    save_schedule(item, {"enabled"}, now=created)
    assert services.refire_stale(created + timedelta(hours=1)) == 1 and FIRED == ["schedule:x"]


def test_api_client_filter_must_be_an_id(api):
    response = api.get("/api/schedules/?client=abc")
    assert response.status_code == 400 and "client" in response.json()["fields"]


@pytest.mark.django_db(transaction=True)
def test_a_schedule_follows_its_clients_new_timezone_without_a_missed_occurrence(recording_handler):
    owner = make_client(tz="America/New_York")
    item = schedule(owner, created=datetime(2026, 12, 1, tzinfo=UTC), frequency="daily", time=time(9, 0))
    assert item.next_occurrence_at == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 09:00 New York
    owner.timezone = "Europe/Berlin"
    owner.save()
    item.refresh_from_db()
    assert item.next_occurrence_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
    tick_schedule(item, item.next_occurrence_at + timedelta(seconds=20))
    assert [e.status for e in item.executions.all()] == [ExecutionStatus.FIRED]
