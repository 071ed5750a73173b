"""Delivery reports that arrive before the send is recorded: kept, applied when the send is
recorded (in its transaction) or by the next run, expired after the retention; the race with
an uncommitted worker transaction, on PostgreSQL with real threads and connections."""

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from messaging.conversations import record_outbound_sms
from messaging.delivery.claiming import claim_due_messages
from messaging.delivery.outcomes import SendOutcome, record, record_many
from messaging.delivery.providers.base import SendResult
from messaging.delivery.reconcile import recover_expired_leases
from messaging.delivery.reports import (
    apply_pending_reports,
    apply_resend_event,
    apply_stored_reports,
    apply_twilio_status,
)
from messaging.models import Channel, EmailSuppression, Lead, PendingReport, ScheduledMessage, Status
from scheduling.runner import run_job
from tests.messaging.factories import ALWAYS_OPEN, email, make_client, make_lead, sms
from tests.messaging.webhook_client import resend_event, twilio_status, use_webhook_secrets

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def webhook_secrets(settings):
    use_webhook_secrets(settings)


def sent_sms(provider_id: str, **fields) -> ScheduledMessage:
    """An SMS recorded `sent` by a path that applies no stored report (set directly)."""
    message = sms(**fields)
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENT, provider_message_id=provider_id, sent_at=NOW
    )
    message.refresh_from_db()
    return message


def sending_sms(**fields) -> ScheduledMessage:
    message = sms(**fields)
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENDING)
    message.refresh_from_db()
    return message


def record_sent(message: ScheduledMessage, provider_id: str) -> int:
    """What record_many does for a send, minus the rest: `sent` + id, then the kept reports."""
    with transaction.atomic():
        ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENT, provider_message_id=provider_id)
        return apply_pending_reports([(message.channel, provider_id, message.pk)])


def fresh(message: ScheduledMessage) -> ScheduledMessage:
    return ScheduledMessage.objects.get(pk=message.pk)


def kept(provider_id: str | None = None) -> list[PendingReport]:
    rows = PendingReport.objects.order_by("id")
    return list(rows.filter(provider_message_id=provider_id) if provider_id else rows)


# -- Kept, then applied when the send is recorded -------------------------------------------


def test_report_for_a_message_not_recorded_yet_is_kept():
    sending_sms()

    assert apply_twilio_status("SM1", "delivered", "", NOW) == "stored"

    [report] = kept()
    assert (report.provider_message_id, report.target, report.event) == ("SM1", Status.DELIVERED, "twilio:delivered")


def test_kept_report_is_applied_when_the_send_is_recorded():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW - timedelta(seconds=1))

    assert record_sent(message, "SM1") == 1

    message = fresh(message)
    assert (message.status, message.delivered_at) == (Status.DELIVERED, NOW - timedelta(seconds=1))
    assert kept() == []


def test_kept_undelivered_report_is_applied_with_its_error():
    message = sending_sms()
    apply_twilio_status("SM1", "undelivered", "30003", NOW)

    record_sent(message, "SM1")

    message = fresh(message)
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, "30003")
    assert message.last_error == "Twilio reported the message undelivered (error 30003)"


def test_recording_a_send_leaves_the_reports_of_other_messages_kept():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW)
    apply_twilio_status("SM2", "delivered", "", NOW)

    record_sent(message, "SM1")

    assert [r.provider_message_id for r in kept()] == ["SM2"]


def test_a_kept_report_of_the_other_channel_with_the_same_id_is_not_applied():
    message = sending_sms()
    apply_resend_event(resend_event("email.delivered", email_id="X1"), NOW)

    assert record_sent(message, "X1") == 0

    assert fresh(message).status == Status.SENT
    assert len(kept("X1")) == 1


def test_a_repeated_report_is_kept_once_and_applied_once():
    message = sending_sms()
    for _ in range(3):
        apply_twilio_status("SM1", "delivered", "", NOW)

    assert len(kept()) == 1
    assert record_sent(message, "SM1") == 1
    assert fresh(message).status == Status.DELIVERED


def test_reports_kept_out_of_order_apply_in_the_order_they_occurred():
    message = email()
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENDING)
    later, earlier = NOW - timedelta(seconds=5), NOW - timedelta(seconds=10)
    bounce = {"type": "Transient", "message": "mailbox full"}
    apply_resend_event(resend_event("email.bounced", email_id="em_1", created_at=later, bounce=bounce), NOW)
    apply_resend_event(resend_event("email.delivered", email_id="em_1", created_at=earlier), NOW)

    record_sent(message, "em_1")

    # As if both had arrived after the send was recorded, in order: delivered is final.
    assert fresh(message).status == Status.DELIVERED
    assert kept() == []


def test_a_kept_complaint_after_delivery_is_recorded_on_the_delivered_message():
    message = email()
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENDING)
    apply_resend_event(resend_event("email.complained", email_id="em_1", created_at=NOW), NOW)
    apply_resend_event(resend_event("email.delivered", email_id="em_1", created_at=NOW - timedelta(minutes=1)), NOW)

    record_sent(message, "em_1")

    message = fresh(message)
    assert (message.status, message.last_error_code) == (Status.DELIVERED, "complained")


def test_a_live_report_for_a_sent_message_applies_the_earlier_kept_ones_first():
    message = sent_sms("SM1")
    PendingReport.objects.create(
        channel=Channel.SMS,
        provider_message_id="SM1",
        target=Status.DELIVERED,
        event="twilio:delivered",
        occurred_at=NOW - timedelta(minutes=1),
        received_at=NOW - timedelta(minutes=1),
    )

    assert apply_twilio_status("SM1", "undelivered", "30005", NOW) == "applied"

    assert fresh(message).status == Status.DELIVERED
    assert kept() == []


@pytest.mark.parametrize("size", [25, 100])
def test_recording_a_group_applies_its_kept_reports_in_a_constant_number_of_queries(size, django_assert_num_queries):
    messages = [sending_sms(to=f"+1415555{1000 + n:04d}") for n in range(size)]
    for n in range(size):
        apply_twilio_status(f"SM{n}", "delivered" if n % 2 else "undelivered", "30003", NOW)
    ScheduledMessage.objects.filter(pk__in=[m.pk for m in messages]).update(status=Status.SENT)
    for n, message in enumerate(messages):
        ScheduledMessage.objects.filter(pk=message.pk).update(provider_message_id=f"SM{n}")

    # Lock the ids, look the reports up, one UPDATE per final state, delete the reports.
    with django_assert_num_queries(5):
        changed = apply_pending_reports([(Channel.SMS, f"SM{n}", m.pk) for n, m in enumerate(messages)])

    assert changed == size
    statuses = ScheduledMessage.objects.values_list("status", flat=True)
    assert sorted(set(statuses)) == [Status.DELIVERED, Status.UNDELIVERED]
    assert kept() == []


def test_recording_a_group_with_nothing_kept_costs_two_queries(django_assert_num_queries):
    messages = [sent_sms(f"SM{n}", to=f"+1415555{1000 + n:04d}") for n in range(25)]

    with django_assert_num_queries(2):
        assert apply_pending_reports([(Channel.SMS, f"SM{n}", m.pk) for n, m in enumerate(messages)]) == 0


# -- The next run's sweep -------------------------------------------------------------------


def test_next_run_applies_kept_reports_of_messages_sent_since():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW)
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENT, provider_message_id="SM1")

    counts = apply_stored_reports(NOW)

    assert counts == {"reports_applied": 1, "reports_resolved": 1}
    assert fresh(message).status == Status.DELIVERED
    assert kept() == []


def test_next_run_keeps_reports_whose_message_is_still_sending_or_unknown():
    sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW)
    apply_twilio_status("SMunknown", "delivered", "", NOW)

    assert apply_stored_reports(NOW + timedelta(hours=1)) == {}

    assert len(kept()) == 2


def test_next_run_uses_up_kept_reports_of_messages_already_final():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW)
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.UNDELIVERED, provider_message_id="SM1")

    assert apply_stored_reports(NOW) == {"reports_resolved": 1}

    assert fresh(message).status == Status.UNDELIVERED
    assert kept() == []


def test_next_run_expires_reports_kept_longer_than_72_hours_by_default():
    apply_twilio_status("SMold", "delivered", "", NOW - timedelta(hours=72, seconds=1))
    apply_twilio_status("SMyoung", "delivered", "", NOW - timedelta(hours=71))

    assert apply_stored_reports(NOW) == {"reports_expired": 1}

    assert [r.provider_message_id for r in kept()] == ["SMyoung"]


def test_retention_of_kept_reports_follows_the_setting(settings):
    settings.DELIVERY_REPORT_RETENTION_HOURS = 1
    apply_twilio_status("SM1", "delivered", "", NOW - timedelta(hours=2))

    assert apply_stored_reports(NOW) == {"reports_expired": 1}


def test_next_run_applies_a_kept_report_even_past_the_retention_when_its_message_is_now_sent():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW - timedelta(days=5))
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENT, provider_message_id="SM1")

    apply_stored_reports(NOW)

    assert fresh(message).status == Status.DELIVERED


# -- Suppression does not wait for the message ----------------------------------------------


def test_a_permanent_bounce_kept_for_later_suppresses_the_address_at_once():
    event = resend_event("email.bounced", email_id="em_1", to=["lead@example.com"], bounce={"type": "Permanent"})

    assert apply_resend_event(event, NOW) == "stored"

    assert EmailSuppression.objects.filter(email="lead@example.com", reason="bounced").exists()


# -- The race with an uncommitted worker transaction ----------------------------------------


def backends_waiting_on(lock: str) -> int:
    """Sessions of this test database waiting on a lock of this kind (pg_stat_activity)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = %s",
            [lock],
        )
        return cursor.fetchone()[0]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the other session"
        time.sleep(0.01)


class InThread(threading.Thread):
    """Runs `work` on a connection of its own; its result or exception is kept for the test."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> object:
        self.join(10)
        assert not self.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class RowLock(InThread):
    """Holds a row lock on a lead in a transaction of its own until released."""

    def __init__(self, lead: Lead) -> None:
        self.locked, self.released = threading.Event(), threading.Event()
        super().__init__(self.hold)
        self.lead = lead

    def hold(self) -> None:
        with transaction.atomic():
            Lead.objects.select_for_update().get(pk=self.lead.pk)
            self.locked.set()
            self.released.wait(10)

    def __enter__(self) -> "RowLock":
        self.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.finish()


def claimed_sms_to_a_lead() -> tuple[ScheduledMessage, Lead]:
    """A real claim (the message `sending` under a token) of an SMS to a client's lead: recording
    it touches the lead's row (record_outbound_sms), where the worker can be made to wait."""
    client = make_client(quiet_hours_start=ALWAYS_OPEN[0], quiet_hours_end=ALWAYS_OPEN[1])
    lead = make_lead(client, phone="+14155550123")
    sms(to=lead.phone, client=client, lead=lead)
    [message] = claim_due_messages(timezone.now(), 10, timedelta(minutes=5)).ready
    return message, lead


def sent_outcome(message: ScheduledMessage, sid: str) -> SendOutcome:
    return SendOutcome(message=message, started_at=NOW, duration_ms=5, result=SendResult(sid, "queued", 201))


@pytest.mark.django_db(transaction=True)
class TestRaceWithTheWorkersCommit:
    def test_report_posted_while_the_workers_commit_waits_on_a_row_lock_is_applied_in_that_transaction(self):
        message, lead = claimed_sms_to_a_lead()
        outcome = sent_outcome(message, "SMrace")

        def record_group() -> None:
            # record_many's transaction, in its order: `sent` + id, the attempt, the
            # conversation (waits here on the lead's row), then the kept reports.
            with transaction.atomic():
                assert record(outcome, NOW) == "sent"
                outcome.attempt.save()
                record_outbound_sms([message], NOW)
                apply_pending_reports([(Channel.SMS, "SMrace", message.pk)])

        with RowLock(lead):
            worker = InThread(record_group)
            worker.start()
            wait_until(lambda: backends_waiting_on("transactionid") >= 1)

            response = twilio_status(sid="SMrace", status="delivered")

            assert response.status_code == 200
            assert fresh(message).status == Status.SENDING  # the worker has not committed
            assert len(kept("SMrace")) == 1
        worker.finish()

        message = fresh(message)
        assert (message.status, message.provider_message_id, message.delivered_at) == (Status.DELIVERED, "SMrace", NOW)
        assert kept() == []

    def test_report_posted_after_the_worker_looked_for_reports_waits_for_its_commit_and_applies_itself(self):
        message, _ = claimed_sms_to_a_lead()
        outcome = sent_outcome(message, "SMrace")
        looked, commit = threading.Event(), threading.Event()

        def record_group() -> int:
            with transaction.atomic():
                record(outcome, NOW)
                found = apply_pending_reports([(Channel.SMS, "SMrace", message.pk)])
                looked.set()
                assert commit.wait(10)
            return found

        worker = InThread(record_group)
        worker.start()
        assert looked.wait(10)
        webhook = InThread(lambda: twilio_status(sid="SMrace", status="delivered"))
        webhook.start()
        # It waits for the worker's commit (without the report lock it would store the report
        # at once, beside a message about to be `sent`, and this test would fail below).
        wait_until(lambda: backends_waiting_on("advisory") >= 1 or not webhook.is_alive())

        commit.set()

        assert worker.finish() == 0
        assert webhook.finish().status_code == 200
        assert fresh(message).status == Status.DELIVERED
        assert kept() == []

    def test_report_posted_while_the_worker_rolls_back_stays_kept(self):
        message, _ = claimed_sms_to_a_lead()
        outcome = sent_outcome(message, "SMrace")
        looked, give_up = threading.Event(), threading.Event()

        def record_then_fail() -> None:
            with transaction.atomic():
                record(outcome, NOW)
                apply_pending_reports([(Channel.SMS, "SMrace", message.pk)])
                looked.set()
                assert give_up.wait(10)
                raise RuntimeError("database went away")

        worker = InThread(record_then_fail)
        worker.start()
        assert looked.wait(10)
        webhook = InThread(lambda: twilio_status(sid="SMrace", status="delivered"))
        webhook.start()
        wait_until(lambda: backends_waiting_on("advisory") >= 1 or not webhook.is_alive())

        give_up.set()

        with pytest.raises(RuntimeError):
            worker.finish()
        assert webhook.finish().status_code == 200
        assert fresh(message).status == Status.SENDING  # lease recovery will decide
        assert len(kept("SMrace")) == 1  # and its `sent` write applies it

    def test_record_many_applies_a_report_posted_while_its_commit_waits_on_a_row_lock(self):
        message, lead = claimed_sms_to_a_lead()

        with RowLock(lead):
            worker = InThread(lambda: record_many([sent_outcome(message, "SMrace")], NOW))
            worker.start()
            wait_until(lambda: backends_waiting_on("transactionid") >= 1)
            # In a thread: had record_many taken the report locks before it waits, the
            # webhook waits for its commit (and then applies the report itself).
            webhook = InThread(lambda: twilio_status(sid="SMrace", status="delivered"))
            webhook.start()
            wait_until(lambda: not webhook.is_alive() or backends_waiting_on("advisory") >= 1)
        worker.finish()
        assert webhook.finish().status_code == 200

        assert fresh(message).status == Status.DELIVERED
        assert kept() == []


# -- Where the delivery engine applies them (see the reply of the change that added this) ---


def test_record_many_applies_reports_kept_before_the_send_was_recorded():
    message, _ = claimed_sms_to_a_lead()
    apply_twilio_status("SMearly", "delivered", "", NOW)

    record_many([sent_outcome(message, "SMearly")], NOW)

    assert fresh(message).status == Status.DELIVERED
    assert kept() == []


def test_process_scheduled_applies_reports_kept_for_messages_sent_since():
    message = sending_sms()
    apply_twilio_status("SM1", "delivered", "", NOW)
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENT, provider_message_id="SM1")

    result = run_job("process-scheduled", "manual")

    assert result.status == "succeeded", result.message
    assert fresh(message).status == Status.DELIVERED


def test_lease_recovery_that_finds_the_sms_at_twilio_applies_its_kept_report(provider_settings, fake_providers):
    message = sms(body="Hello from Acme")
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING,
        attempts=1,
        claim_token=uuid.uuid4(),
        claimed_at=NOW - timedelta(minutes=10),
        lease_expires_at=Now() - timedelta(minutes=5),  # leases are on the database's clock
    )
    found = fake_providers.preload_sms(message.to, "Hello from Acme", date_created=NOW - timedelta(minutes=9))
    apply_twilio_status(found["sid"], "delivered", "", NOW - timedelta(minutes=8))  # the worker had crashed

    assert recover_expired_leases(NOW)["reconciled_sent"] == 1

    assert fresh(message).status == Status.DELIVERED
    assert kept() == []


def test_email_to_a_suppressed_address_fails_as_suppressed_without_a_provider_call(provider_settings, fake_providers):
    EmailSuppression.objects.create(email="lead@example.com", reason="bounced")
    message = email(to="Lead@Example.com")

    run_job("process-scheduled", "manual")

    message = fresh(message)
    assert (message.status, message.last_error_code) == (Status.FAILED, "suppressed")
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["suppressed"]
    assert fake_providers.emails_sent() == []
