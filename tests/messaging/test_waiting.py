"""Why a message waits (messaging.waiting): one sentence for its page, a few words for the list."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.delivery.claiming import claim_due_messages
from messaging.delivery.suppressions import SUPPRESSED_CODE, suppress_emails
from messaging.models import ScheduledMessage, Status
from messaging.optouts import record_opt_out
from messaging.waiting import why_waiting, why_waiting_many
from tests.messaging.factories import email, make_client, make_lead, sms

pytestmark = pytest.mark.django_db

# 2026-03-10 03:00 UTC is 23:00 in New York (EDT since 8 March): inside the 21:00-08:00 quiet hours.
NIGHT = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
NOON = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York


def in_state(message: ScheduledMessage, status: str = Status.PENDING, **fields: object) -> ScheduledMessage:
    ScheduledMessage.objects.filter(pk=message.pk).update(status=status, **fields)
    return ScheduledMessage.objects.select_related("client", "lead__client").get(pk=message.pk)


def lead_sms(**fields: object) -> ScheduledMessage:
    client = make_client(tz="America/New_York", quiet_hours_start=time(8, 0), quiet_hours_end=time(21, 0))
    lead = make_lead(client)
    return in_state(sms(to=lead.phone, client=client, lead=lead, send_at=NIGHT - timedelta(minutes=5), **fields))


def test_a_message_for_later_says_when_it_goes():
    message = in_state(sms(send_at=NOON + timedelta(hours=3)))
    reason = why_waiting(message, NOON)
    assert reason.kind == "scheduled"
    assert reason.text == "Scheduled for later: it goes out at 2026-03-10 19:00 UTC."
    assert reason.short == "scheduled for 19:00 UTC"
    assert why_waiting(message, NOON - timedelta(days=1)).short == "scheduled for 03-10 19:00 UTC"


def test_an_sms_in_the_recipients_quiet_hours_says_until_when_in_their_zone():
    message = lead_sms()
    reason = why_waiting(message, NIGHT)
    assert reason.kind == "quiet_hours"
    assert reason.text == (
        "Waiting for the recipient's quiet hours to end: it goes out from 08:00 in America/New_York "
        "(2026-03-10 12:00 UTC)."
    )
    assert reason.short == "quiet hours until 08:00 (America/New_York)"


def test_quiet_hours_reason_agrees_with_what_claiming_does():
    message = lead_sms()
    claim = claim_due_messages(NIGHT, limit=10, lease=timedelta(minutes=5))
    assert claim.deferred == 1 and not claim.ready
    deferred = in_state(message)
    assert deferred.next_attempt_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    # The claim moved it to the opening; the page names the same time, in the lead's zone.
    assert why_waiting(deferred, NIGHT + timedelta(minutes=1)).short == "quiet hours until 08:00 (America/New_York)"


def test_the_clients_own_window_is_the_one_read():
    message = lead_sms()
    message.lead.client.quiet_hours_start = time(9, 30)
    assert "from 09:30 in America/New_York" in why_waiting(message, NIGHT).text


def test_a_message_backing_off_names_the_error_and_the_next_attempt():
    message = in_state(
        sms(send_at=NOON - timedelta(minutes=5)),
        attempts=2,
        last_error_code="http_503",
        last_error="Service busy",
        next_attempt_at=NOON + timedelta(minutes=4),
    )
    reason = why_waiting(message, NOON)
    assert reason.kind == "backoff"
    assert reason.text == (
        "Backing off after error http_503: the next attempt is at 2026-03-10 16:04 UTC (attempt 3 of 5)."
    )
    assert reason.short == "retry at 16:04 UTC after http_503"


def test_a_message_held_by_a_misconfigured_provider_says_so_and_what_to_fix():
    message = in_state(
        sms(send_at=NOON - timedelta(minutes=5)),
        last_error_code="20003",
        last_error="held: Authenticate (20003): check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    )
    reason = why_waiting(message, NOON)
    assert reason.kind == "held"
    assert reason.text.startswith(
        "Held because the provider is misconfigured (Authenticate (20003): check TWILIO_ACCOUNT_SID"
    )
    assert reason.short == "held: provider misconfigured"


def test_a_pending_sms_to_an_opted_out_number_says_it_will_not_go():
    message = in_state(sms(to="+14155550123", send_at=NOON - timedelta(minutes=5)))
    record_opt_out("+14155550123", None, source="inbound_stop")
    reason = why_waiting(message, NOON)
    assert (reason.kind, reason.short) == ("opted_out", "opted out")
    assert reason.text.startswith("Will not be sent: +14155550123 opted out of SMS")


def test_a_pending_email_to_a_suppressed_address_says_it_will_not_go():
    message = in_state(email(to="gone@example.com"))
    suppress_emails(["gone@example.com"], "bounced")
    reason = why_waiting(message, message.send_at + timedelta(seconds=1))
    assert (reason.kind, reason.short) == ("suppressed", "suppressed")
    assert "gone@example.com is on the email suppression list" in reason.text


def test_failed_because_opted_out_or_suppressed_says_not_sent():
    opted = in_state(sms(), Status.FAILED, last_error_code="opted_out")
    gone = in_state(email(), Status.FAILED, last_error_code=SUPPRESSED_CODE)
    assert why_waiting(opted, NOON).text == "Not sent: +14155550123 opted out of SMS."
    assert why_waiting(gone, NOON).short == "suppressed"


def test_a_due_message_is_due_and_a_sent_one_needs_no_reason():
    message = in_state(sms(send_at=NOON - timedelta(minutes=1)), next_attempt_at=NOON - timedelta(minutes=1))
    assert why_waiting(message, NOON).text == "Due: it goes out on the next delivery run."
    assert why_waiting(in_state(message, Status.SENT), NOON) is None
    assert why_waiting(in_state(message, Status.CANCELLED), NOON) is None


def test_a_send_that_may_have_gone_out_says_it_is_being_checked():
    message = in_state(sms(), Status.SENDING, last_error_code="timeout", lease_expires_at=NOON + timedelta(minutes=2))
    reason = why_waiting(message, NOON)
    assert reason.kind == "checking" and "after error timeout" in reason.text and "16:02 UTC" in reason.text


def test_many_reasons_take_two_queries_whatever_the_number_of_messages():
    messages = [in_state(sms(to=f"+1415555012{i}", send_at=NOON - timedelta(minutes=1))) for i in range(5)]
    messages += [in_state(email(to=f"a{i}@example.com")) for i in range(5)]
    record_opt_out("+14155550121", None, source="inbound_stop")
    with CaptureQueriesContext(connection) as queries:
        reasons = why_waiting_many(messages, NOON)
    assert len(queries.captured_queries) == 2
    assert reasons[messages[1].pk].kind == "opted_out" and reasons[messages[0].pk].kind == "due"
