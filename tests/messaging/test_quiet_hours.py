from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from messaging.delivery.claiming import claim_due_messages
from messaging.models import Client, ScheduledMessage
from messaging.quiet_hours import next_allowed_time
from tests.messaging.factories import make_client, make_lead, sms

NEW_YORK = "America/New_York"
# 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC); 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC).
FALL_BACK_SECOND_0110 = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST, the second 01:10
SPRING_FORWARD_0145 = datetime(2026, 3, 8, 6, 45, tzinfo=UTC)  # 01:45 EST, just before the gap
LEASE = timedelta(minutes=5)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the arithmetic --------------------------------------------------------------------
def test_fall_back_opening_already_passed_once_is_the_second_one_not_the_past():
    opening = next_allowed_time(FALL_BACK_SECOND_0110, NEW_YORK, time(1, 30), time(21))
    assert opening == utc(2026, 11, 1, 6, 30)  # 01:30 EST, 20 minutes on; not 01:30 EDT an hour ago


def test_fall_back_window_that_closed_reopens_when_the_clock_repeats_the_hour():
    at_0150_edt = utc(2026, 11, 1, 5, 50)
    assert next_allowed_time(at_0150_edt, NEW_YORK, time(1, 30), time(1, 45)) == utc(2026, 11, 1, 6, 30)


def test_spring_forward_opening_that_does_not_exist_opens_at_the_end_of_the_gap():
    opening = next_allowed_time(SPRING_FORWARD_0145, NEW_YORK, time(2, 30), time(21))
    assert opening == utc(2026, 3, 8, 7, 0)  # 03:00 EDT, the first local time past 02:30


@pytest.mark.parametrize(
    "start",
    [time(0, 30), time(1, 0), time(1, 30), time(1, 59), time(2, 0), time(2, 30), time(3, 0), time(23, 0)],
)
def test_next_opening_is_never_earlier_than_now_across_both_dst_days(start):
    for day_start in (utc(2026, 11, 1, 3), utc(2026, 3, 8, 3)):
        for minutes in range(0, 8 * 60, 5):
            now = day_start + timedelta(minutes=minutes)
            opening = next_allowed_time(now, NEW_YORK, start, time(22))
            assert opening is None or now < opening <= now + timedelta(days=1, hours=1), (now, start, opening)


# --- claiming --------------------------------------------------------------------------
@pytest.mark.django_db
def test_sms_deferred_on_fall_back_day_is_not_claimed_again_before_its_opening():
    client = make_client(tz=NEW_YORK, quiet_hours_start=time(1, 30), quiet_hours_end=time(21))
    lead = make_lead(client)
    with time_machine.travel(FALL_BACK_SECOND_0110, tick=False):
        message = sms(to=lead.phone, lead=lead, client=client)
        first = claim_due_messages(FALL_BACK_SECOND_0110, 10, LEASE)
        again = claim_due_messages(FALL_BACK_SECOND_0110 + timedelta(minutes=1), 10, LEASE)
    assert (first.deferred, first.ready) == (1, [])
    assert ScheduledMessage.objects.get(pk=message.pk).next_attempt_at == utc(2026, 11, 1, 6, 30)
    assert (again.deferred, again.ready) == (0, [])  # before the fix: deferred on every claim


@pytest.mark.django_db
def test_sms_deferred_on_spring_forward_day_goes_at_the_end_of_the_gap():
    client = make_client(tz=NEW_YORK, quiet_hours_start=time(2, 30), quiet_hours_end=time(21))
    lead = make_lead(client)
    with time_machine.travel(SPRING_FORWARD_0145, tick=False):
        message = sms(to=lead.phone, lead=lead, client=client)
        claim_due_messages(SPRING_FORWARD_0145, 10, LEASE)
    assert ScheduledMessage.objects.get(pk=message.pk).next_attempt_at == utc(2026, 3, 8, 7, 0)
    assert len(claim_due_messages(utc(2026, 3, 8, 7, 0), 10, LEASE).ready) == 1


# --- which window ----------------------------------------------------------------------
NINE_AM_NEW_YORK = utc(2026, 11, 25, 14, 0)


@pytest.mark.django_db
def test_quiet_hours_setting_is_the_window_of_a_client_without_its_own(settings):
    settings.QUIET_HOURS = "10:00-12:00"
    client = make_client(tz=NEW_YORK)  # no window of its own: the default
    assert client.quiet_hours_start is None and client.quiet_hours_end is None
    lead = make_lead(client)
    with time_machine.travel(NINE_AM_NEW_YORK, tick=False):
        message = sms(to=lead.phone, lead=lead, client=client)
        claim = claim_due_messages(NINE_AM_NEW_YORK, 10, LEASE)
    assert claim.deferred == 1
    assert ScheduledMessage.objects.get(pk=message.pk).next_attempt_at == utc(2026, 11, 25, 15, 0)  # 10:00 EST


@pytest.mark.django_db
def test_a_clients_own_window_overrides_the_quiet_hours_setting(settings):
    settings.QUIET_HOURS = "10:00-12:00"
    client = make_client(tz=NEW_YORK, quiet_hours_start=time(8), quiet_hours_end=time(21))
    lead = make_lead(client)
    with time_machine.travel(NINE_AM_NEW_YORK, tick=False):
        sms(to=lead.phone, lead=lead, client=client)
        claim = claim_due_messages(NINE_AM_NEW_YORK, 10, LEASE)
    assert (claim.deferred, len(claim.ready)) == (0, 1)


@pytest.mark.parametrize("value", ["8-21", "08:00", "08:00-08:00", "25:00-26:00"])
def test_manage_py_check_refuses_a_quiet_hours_setting_that_is_not_a_window(settings, value):
    settings.QUIET_HOURS = value
    with pytest.raises(SystemCheckError, match=r"QUIET_HOURS=.* is not a valid window"):
        call_command("check")


def test_manage_py_check_accepts_a_valid_quiet_hours_setting(settings):
    settings.QUIET_HOURS = "07:30-20:00"
    call_command("check")


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [(time(8), None, "Set both quiet-hours times"), (time(8), time(8), "start and end must differ")],
)
def test_a_client_window_must_have_both_ends_and_not_be_empty(start, end, says):
    client = Client(name="Half", timezone=NEW_YORK, quiet_hours_start=start, quiet_hours_end=end)
    with pytest.raises(ValidationError, match=says):
        client.full_clean()
