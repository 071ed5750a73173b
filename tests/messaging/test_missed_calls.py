import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction

from messaging.jobs import check_missed_calls
from messaging.models import Call, CallStatus, Client, Lead, OptOut, ScheduledMessage, Status
from scheduling.context import JobContext
from scheduling.models import RunStatus
from scheduling.runner import run_job
from tests.jobs import job_context as shared_job_context

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
CALLER = "+14155550142"


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_client(name: str = "Acme Plumbing", **fields) -> Client:
    fields.setdefault("timezone", "America/New_York")
    fields.setdefault("owner_email", "owner@acme.example")
    fields.setdefault("owner_phone", "+14155550100")
    return Client.objects.create(name=name, **fields)


def missed_call(client: Client, caller: str = CALLER, minutes_ago: int = 3, **fields) -> Call:
    fields.setdefault("status", CallStatus.MISSED)
    return Call.objects.create(client=client, caller=caller, started_at=NOW - timedelta(minutes=minutes_ago), **fields)


def text_backs() -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source="missed-call").order_by("created_at", "to"))


def owner_notices() -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source="missed-call-notify"))


def job_context() -> JobContext:
    return shared_job_context("check-missed-calls", timedelta(minutes=4))


@pytest.mark.django_db
class TestTextBack:
    def test_missed_call_gets_the_default_text_from_the_client(self, frozen):
        call = missed_call(make_client())

        result = run_job("check-missed-calls", "manual")

        [text] = text_backs()
        assert (text.channel, text.to, text.client_id) == ("sms", CALLER, call.client_id)
        assert text.body == "Sorry we missed your call at Acme Plumbing! How can we help? Reply STOP to opt out."
        assert (text.idempotency_key, text.send_at, text.status) == (f"missed-call:{call.pk}", NOW, Status.PENDING)
        assert result.status == RunStatus.SUCCEEDED
        assert (result.data["processed"], result.data["texted"]) == (1, 1)

    def test_client_template_has_the_client_name_filled_in(self, frozen):
        missed_call(make_client(text_back_template="Hi, {client} here - we'll call you back today."))

        run_job("check-missed-calls", "manual")

        assert text_backs()[0].body == "Hi, Acme Plumbing here - we'll call you back today."

    def test_call_is_marked_handled_and_texted_back(self, frozen):
        call = missed_call(make_client())

        run_job("check-missed-calls", "manual")

        call.refresh_from_db()
        assert (call.handled, call.texted_back, call.handled_at) == (True, True, NOW)

    def test_text_back_is_linked_to_the_callers_lead(self, frozen):
        client = make_client()
        lead = Lead.objects.create(client=client, phone=CALLER, name="Ana")
        missed_call(client)

        run_job("check-missed-calls", "manual")

        assert text_backs()[0].lead_id == lead.pk

    def test_calls_that_were_answered_or_already_handled_are_left_alone(self, frozen):
        client = make_client()
        missed_call(client, status=CallStatus.COMPLETED)
        missed_call(client, caller="+14155550143", handled=True)

        result = run_job("check-missed-calls", "manual")

        assert ScheduledMessage.objects.count() == 0
        assert result.data["processed"] == 0


@pytest.mark.django_db
class TestOwnerNotice:
    def test_owner_who_chose_email_gets_an_email_in_local_time(self, frozen):
        call = missed_call(make_client(notify_by="email"))

        run_job("check-missed-calls", "manual")

        [notice] = owner_notices()
        assert (notice.channel, notice.to, notice.idempotency_key) == (
            "email",
            "owner@acme.example",
            f"missed-call-notify:{call.pk}",
        )
        assert notice.subject == f"Missed call from {CALLER}"
        # 14:57 UTC is 10:57 in New York (EDT since March 8).
        assert "Tue 10 Mar 10:57" in notice.body and "We texted them back." in notice.body

    def test_owner_who_chose_sms_gets_a_text(self, frozen):
        missed_call(make_client(notify_by="sms"))

        run_job("check-missed-calls", "manual")

        [notice] = owner_notices()
        assert (notice.channel, notice.to, notice.subject) == ("sms", "+14155550100", "")

    def test_owner_without_a_phone_is_emailed_even_when_sms_was_chosen(self, frozen):
        missed_call(make_client(notify_by="sms", owner_phone=""))

        run_job("check-missed-calls", "manual")

        assert owner_notices()[0].channel == "email"


@pytest.mark.django_db
class TestSkipRules:
    @pytest.mark.parametrize("scope", ["this client", "every client"])
    def test_opted_out_caller_is_not_texted_but_the_owner_hears_of_the_call(self, frozen, scope):
        client = make_client()
        OptOut.objects.create(phone=CALLER, client=client if scope == "this client" else None, source="manual")
        call = missed_call(client)

        result = run_job("check-missed-calls", "manual")

        assert text_backs() == []
        assert "opted out" in owner_notices()[0].body
        call.refresh_from_db()
        assert (call.handled, call.texted_back) == (True, False)
        assert (result.data["skipped"], result.data["skipped_opted_out"]) == (1, 1)

    def test_opt_out_from_another_client_does_not_stop_the_text(self, frozen):
        OptOut.objects.create(phone=CALLER, client=make_client("Other"), source="manual")
        missed_call(make_client())

        run_job("check-missed-calls", "manual")

        assert len(text_backs()) == 1

    def test_caller_texted_by_the_client_in_the_last_24_hours_is_not_texted_again(self, frozen):
        client = make_client()
        with time_machine.travel(NOW - timedelta(hours=23), tick=False):
            ScheduledMessage.objects.create(channel="sms", to=CALLER, body="Your quote", client=client, source="api")
        call = missed_call(client)

        result = run_job("check-missed-calls", "manual")

        assert text_backs() == []
        call.refresh_from_db()
        assert (call.handled, call.texted_back) == (True, False)
        assert result.data["skipped_recently_texted"] == 1

    def test_caller_texted_more_than_24_hours_ago_is_texted(self, frozen):
        client = make_client()
        with time_machine.travel(NOW - timedelta(hours=25), tick=False):
            ScheduledMessage.objects.create(channel="sms", to=CALLER, body="Your quote", client=client, source="api")
        missed_call(client)

        run_job("check-missed-calls", "manual")

        assert len(text_backs()) == 1

    def test_cancelled_text_does_not_count_as_texted(self, frozen):
        client = make_client()
        ScheduledMessage.objects.create(
            channel="sms", to=CALLER, body="Your quote", client=client, status=Status.CANCELLED
        )
        missed_call(client)

        run_job("check-missed-calls", "manual")

        assert len(text_backs()) == 1

    def test_two_missed_calls_from_one_caller_get_one_text(self, frozen):
        client = make_client()
        missed_call(client, minutes_ago=20)
        missed_call(client, minutes_ago=10)

        run_job("check-missed-calls", "manual")

        assert len(text_backs()) == 1
        assert len(owner_notices()) == 2
        assert list(Call.objects.order_by("started_at").values_list("handled", "texted_back")) == [
            (True, True),
            (True, False),
        ]

    def test_client_with_text_back_off_gets_no_text_but_is_notified(self, frozen):
        call = missed_call(make_client(text_back_enabled=False))

        result = run_job("check-missed-calls", "manual")

        assert text_backs() == []
        assert "Text-back is off" in owner_notices()[0].body
        call.refresh_from_db()
        assert call.handled is True
        assert result.data["skipped_text_back_off"] == 1


@pytest.mark.django_db
class TestRerunsAndGaps:
    def test_second_run_sends_nothing_more(self, frozen):
        missed_call(make_client())
        run_job("check-missed-calls", "manual")

        frozen.shift(timedelta(minutes=5))
        result = run_job("check-missed-calls", "manual")

        assert ScheduledMessage.objects.count() == 2  # one text-back, one owner notice
        assert result.data["processed"] == 0

    def test_run_after_three_day_gap_handles_every_call_exactly_once(self, frozen):
        client = make_client()
        callers = [f"+1415555{150 + n:04d}" for n in range(7)]
        for n, caller in enumerate(callers):
            missed_call(client, caller=caller, minutes_ago=60 * 10 * (n + 1))  # spread over ~3 days

        result = run_job("check-missed-calls", "manual")
        frozen.shift(timedelta(minutes=5))
        run_job("check-missed-calls", "manual")

        assert sorted(message.to for message in text_backs()) == sorted(callers)
        assert len(owner_notices()) == 7
        assert not Call.objects.filter(handled=False).exists()
        assert result.data["texted"] == 7

    def test_call_missed_after_now_waits_for_its_time(self, frozen):
        missed_call(make_client(), minutes_ago=-2)

        run_job("check-missed-calls", "manual")

        assert ScheduledMessage.objects.count() == 0


@pytest.mark.django_db
class TestFailureIsolation:
    def test_unreachable_owner_still_gets_the_caller_texted_back_and_is_counted(self, frozen):
        good = missed_call(make_client("Good"), caller="+14155550150")
        bad = missed_call(make_client("Bad", owner_email="", owner_phone=""), caller="+14155550151")

        result = run_job("check-missed-calls", "manual")

        assert result.status == RunStatus.SUCCEEDED
        assert result.data["owner_unreachable"] == 1
        good.refresh_from_db()
        bad.refresh_from_db()
        assert (good.handled, bad.handled) == (True, True)
        assert sorted(message.to for message in text_backs()) == ["+14155550150", "+14155550151"]

    def test_invalid_stored_owner_email_does_not_block_the_call(self, frozen):
        client = make_client(owner_phone="")
        Client.objects.filter(pk=client.pk).update(owner_email="not an address")
        call = missed_call(client)

        result = run_job("check-missed-calls", "manual")

        assert result.status == RunStatus.SUCCEEDED and result.data["owner_unreachable"] == 1
        call.refresh_from_db()
        assert call.handled is True and [m.to for m in text_backs()] == [call.caller]
        client.refresh_from_db()
        assert "owner email" in client.owner_unreachable_reason  # shown on the client in admin

    def test_invalid_stored_owner_email_falls_back_to_the_owner_phone(self, frozen):
        client = make_client()
        Client.objects.filter(pk=client.pk).update(owner_email="not an address")
        missed_call(client)

        result = run_job("check-missed-calls", "manual")

        assert result.status == RunStatus.SUCCEEDED and "owner_unreachable" not in result.data
        assert list(ScheduledMessage.objects.filter(source="missed-call-notify").values_list("to", flat=True)) == [
            "+14155550100"
        ]

    def test_withheld_caller_number_is_skipped_and_handled_not_retried_forever(self, frozen):
        call = missed_call(make_client(), caller="+266696687")  # a carrier's stand-in for "withheld"

        result = run_job("check-missed-calls", "manual")

        assert result.status == RunStatus.SUCCEEDED and result.data["skipped_invalid_number"] == 1
        call.refresh_from_db()
        assert call.handled is True and call.texted_back is False
        assert text_backs() == []

    def test_a_client_with_bad_data_fails_only_its_call_and_the_run_is_partial(self, frozen):
        good = missed_call(make_client("Good"), caller="+14155550150")
        broken = make_client("Broken")
        Client.objects.filter(pk=broken.pk).update(timezone="Mars/Olympus_Mons")
        bad = missed_call(Client.objects.get(pk=broken.pk), caller="+14155550151")

        result = run_job("check-missed-calls", "manual")

        assert result.status == RunStatus.PARTIAL
        assert (result.data["processed"], result.data["succeeded"], result.data["failed"]) == (2, 1, 1)
        good.refresh_from_db()
        bad.refresh_from_db()
        assert (good.handled, bad.handled) == (True, False)
        # The failed call's text-back was rolled back with it, so the next run does it whole.
        assert [message.to for message in text_backs()] == ["+14155550150"]


@pytest.mark.django_db
def test_lookups_are_batched_not_one_per_call(frozen, django_assert_num_queries):
    client = make_client()
    for n in range(5):
        missed_call(client, caller=f"+1415555{160 + n:04d}", minutes_ago=n + 1)
    ctx = job_context()

    # 1 batch + 3 lookups (opt-outs, recent texts, leads) + 1 empty next batch, then per call:
    # savepoint, lock, 2 x schedule_message (key check, savepoint, insert, release), update, release.
    with django_assert_num_queries(5 + 5 * 12):
        check_missed_calls(ctx, NOW)

    assert ctx.data["texted"] == 5


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def test_call_locked_by_another_worker_is_skipped_without_waiting(self):
        call = missed_call(make_client())
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            with transaction.atomic():
                Call.objects.select_for_update().get(pk=call.pk)
                locked.set()
                release.wait(10)
            connection.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(10)
            ctx = job_context()
            check_missed_calls(ctx, NOW)
            assert ctx.data == {"texted": 0, "skipped": 0, "already_handled": 1}
            assert ScheduledMessage.objects.count() == 0
        finally:
            release.set()
            holder.join()

        check_missed_calls(job_context(), NOW)
        assert len(text_backs()) == 1

    def test_two_workers_at_once_text_each_caller_once(self):
        client = make_client()
        for n in range(20):
            missed_call(client, caller=f"+1415555{170 + n:04d}", minutes_ago=n + 1)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                ctx = job_context()
                start.wait(10)
                check_missed_calls(ctx, NOW)
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len(text_backs()) == 20
        assert len(owner_notices()) == 20
        assert not Call.objects.filter(handled=False).exists()
