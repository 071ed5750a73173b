"""Email through Resend's /emails/batch, via the real SDK against the fake server."""

from datetime import timedelta

import pytest
import resend
from django.utils import timezone

from messaging.delivery.batching import batch_key, call_batch, mark_batches, plan_batches
from messaging.delivery.claiming import claim_due_messages
from messaging.delivery.providers import get_email_provider
from messaging.models import Channel, ScheduledMessage, Status
from scheduling.runner import run_job
from tests.fakes.providers import FAKE_FROM_EMAIL, FAKE_RESEND_KEY
from tests.messaging.factories import email

pytestmark = pytest.mark.django_db


def emails(count: int, *, bad: set[int] = frozenset()) -> list[ScheduledMessage]:
    now = timezone.now() - timedelta(seconds=1)
    return ScheduledMessage.objects.bulk_create(
        ScheduledMessage(
            channel=Channel.EMAIL,
            to="not-an-address" if i in bad else f"lead{i}@example.com",
            subject="Hello",
            body=f"body {i}",
            html=f"<p>body {i}</p>",
            send_at=now,
            next_attempt_at=now,
        )
        for i in range(count)
    )


def deliver():
    return run_job("process-scheduled", "manual")


def expire_leases() -> None:
    ScheduledMessage.objects.filter(status=Status.SENDING).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def sent_once_with_their_ids(fake) -> None:
    """Every email went out exactly once and its message holds the id the fake gave it."""
    sent = fake.emails_sent()
    assert len({e["to"][0] for e in sent}) == len(sent)
    ids = {e["to"][0]: e["id"] for e in sent}
    messages = ScheduledMessage.objects.filter(channel=Channel.EMAIL)
    assert {m.to: m.provider_message_id for m in messages if m.status == Status.SENT} == ids


def crash_after_the_call(count: int) -> tuple[list[list[ScheduledMessage]], str]:
    """Claim, record batch keys and call Resend, then die before recording anything."""
    claim = claim_due_messages(timezone.now(), 200, timedelta(seconds=300))
    singles, batches = plan_batches(claim.ready, 100)
    assert singles == [] and len(batches) == 1
    mark_batches(batches, singles)
    outcomes = call_batch(batches[0], batches[0][0].batch_idempotency_key)
    assert all(o.error is None for o in outcomes)
    expire_leases()
    return batches, batches[0][0].batch_idempotency_key


def test_250_emails_go_in_3_batch_requests_each_sent_once_with_its_id(provider_settings, fake_providers):
    emails(250)
    result = deliver()
    assert result.status == "succeeded", result.message
    batches = fake_providers.requests_to("email_batch")
    assert sorted(len(r.json) for r in batches) == [50, 100, 100]
    assert fake_providers.requests_to("email") == []
    assert ScheduledMessage.objects.filter(status=Status.SENT).count() == 250
    sent_once_with_their_ids(fake_providers)
    # One key per batch, recorded on each of its messages, sent as the Idempotency-Key.
    keys = {r.headers["idempotency-key"] for r in batches}
    assert len(keys) == 3
    assert set(ScheduledMessage.objects.values_list("batch_idempotency_key", flat=True)) == keys
    assert {r.headers["x-batch-validation"] for r in batches} == {"strict"}
    assert result.data["sent"] == 250


def test_batch_key_is_deterministic_and_changes_with_a_retry_generation():
    a, b = ScheduledMessage(channel=Channel.EMAIL), ScheduledMessage(channel=Channel.EMAIL)
    assert batch_key([a, b]) == batch_key([b, a])
    before = batch_key([a, b])
    b.generation = 1  # an operator's retry: a new send, under a new key
    assert batch_key([a, b]) != before and len(before) <= 256


def test_crash_after_the_batch_call_is_resent_under_its_key_and_nothing_goes_twice(provider_settings, fake_providers):
    emails(5)
    _, key = crash_after_the_call(5)
    first_ids = {e["to"][0]: e["id"] for e in fake_providers.emails_sent()}
    assert len(first_ids) == 5
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENDING}

    deliver()

    assert len(fake_providers.emails_sent()) == 5  # nothing sent twice
    [replay] = fake_providers.replayed()
    assert replay.headers["idempotency-key"] == key
    messages = ScheduledMessage.objects.all()
    assert {m.status for m in messages} == {Status.SENT}
    assert {m.to: m.provider_message_id for m in messages} == first_ids


def test_recovery_of_part_of_a_batch_resends_the_same_payload_and_records_only_those(provider_settings, fake_providers):
    emails(4)
    batches, key = crash_after_the_call(4)
    first = fake_providers.requests_to("email_batch")[0].json
    done = batches[0][0]
    ScheduledMessage.objects.filter(pk=done.pk).update(status=Status.SENT, provider_message_id="recorded-before")

    deliver()

    replay = fake_providers.requests_to("email_batch")[-1]
    assert replay.json == first and replay.headers["idempotency-key"] == key  # same messages, same order
    assert len(fake_providers.emails_sent()) == 4 and len(fake_providers.replayed()) == 1
    assert ScheduledMessage.objects.get(pk=done.pk).provider_message_id == "recorded-before"
    assert ScheduledMessage.objects.filter(status=Status.SENT).count() == 4


def test_a_batch_that_cannot_be_rebuilt_fails_its_messages_instead_of_guessing(provider_settings, fake_providers):
    emails(3)
    batches, _ = crash_after_the_call(3)
    moved = batches[0][0]
    # Another key now on one member (as if it went out in another batch since).
    ScheduledMessage.objects.filter(pk=moved.pk).update(status=Status.SENT, batch_idempotency_key="batch:other")

    deliver()

    assert len(fake_providers.requests_to("email_batch")) == 1  # not resent
    left = ScheduledMessage.objects.exclude(pk=moved.pk)
    assert {m.status for m in left} == {Status.FAILED}
    assert all("cannot be resent" in m.last_error for m in left)


def test_one_invalid_email_in_a_strict_batch_splits_it_and_only_that_one_fails(provider_settings, fake_providers):
    messages = emails(5, bad={2})
    deliver()
    [batch] = fake_providers.requests_to("email_batch")
    assert batch.outcome == "error:validation_error"
    assert len(fake_providers.requests_to("email")) == 5
    by_pk = {m.pk: m for m in ScheduledMessage.objects.all()}
    assert by_pk[messages[2].pk].status == Status.FAILED and "Invalid `to`" in by_pk[messages[2].pk].last_error
    assert sum(m.status == Status.SENT for m in by_pk.values()) == 4
    sent_once_with_their_ids(fake_providers)
    # Alone, each went under its own key, so a replay of the refused batch is harmless.
    assert {r.headers["idempotency-key"] for r in fake_providers.requests_to("email")} == {str(m.pk) for m in messages}


def test_an_account_error_on_a_batch_holds_every_message_and_fails_the_run(provider_settings, fake_providers):
    emails(3)
    provider_settings.RESEND_API_KEY = "re_revoked"
    result = deliver()
    assert result.status == "failed" and "invalid_api_key" in result.message
    assert len(fake_providers.requests_to("email_batch")) == 1
    assert {(m.status, m.attempts) for m in ScheduledMessage.objects.all()} == {(Status.PENDING, 0)}


def test_a_429_on_a_batch_pauses_and_the_batch_goes_once_after(provider_settings, fake_providers):
    provider_settings.RESEND_SEND_RATE = 2
    emails(3)
    fake_providers.fail_next(1, "429", service="resend", retry_after="1")
    result = deliver()
    assert result.data["rate_limited"] == 1
    assert [r.outcome for r in fake_providers.requests_to("email_batch")] == ["fault:429", "sent"]
    assert {(m.status, m.attempts) for m in ScheduledMessage.objects.all()} == {(Status.SENT, 1)}


def test_a_500_on_a_batch_keeps_it_sending_until_recovery_resends_the_whole_batch(provider_settings, fake_providers):
    emails(3)
    fake_providers.fail_next(1, "500", service="resend")
    deliver()
    messages = ScheduledMessage.objects.all()
    assert {m.status for m in messages} == {Status.SENDING}  # may have gone: not re-batched
    key = messages[0].batch_idempotency_key
    expire_leases()
    deliver()
    last = fake_providers.requests_to("email_batch")[-1]
    assert last.headers["idempotency-key"] == key and len(last.json) == 3
    assert {m.status for m in ScheduledMessage.objects.all()} == {Status.SENT}
    assert len(fake_providers.emails_sent()) == 3


def test_batch_size_1_and_a_lone_email_send_singly(provider_settings, fake_providers):
    email()
    deliver()
    assert len(fake_providers.requests_to("email")) == 1 and fake_providers.requests_to("email_batch") == []
    provider_settings.RESEND_BATCH_SIZE = 1
    emails(3)
    deliver()
    assert len(fake_providers.requests_to("email")) == 4 and fake_providers.requests_to("email_batch") == []


def _sdk(fake) -> None:
    get_email_provider()  # configures the SDK's globals for the fake
    resend.api_key, resend.api_url = FAKE_RESEND_KEY, fake.url


def _item(to: str) -> dict:
    return {"from": FAKE_FROM_EMAIL, "to": [to], "subject": "s", "text": "t"}


def test_fake_batch_permissive_mode_creates_the_valid_ones_and_names_the_others(provider_settings, fake_providers):
    _sdk(fake_providers)
    answer = resend.Batch.send(
        [_item("a@example.com"), _item("nope"), _item("b@example.com")], {"batch_validation": "permissive"}
    )
    assert len(answer["data"]) == 2 and [e["index"] for e in answer["errors"]] == [1]
    assert [e["batch_index"] for e in fake_providers.emails_sent()] == [0, 2]


def test_fake_batch_key_reuse_with_another_payload_is_a_409(provider_settings, fake_providers):
    _sdk(fake_providers)
    first = resend.Batch.send([_item("a@example.com")], {"idempotency_key": "k1"})
    assert resend.Batch.send([_item("a@example.com")], {"idempotency_key": "k1"}) == first
    with pytest.raises(resend.exceptions.ResendError) as refused:
        resend.Batch.send([_item("b@example.com")], {"idempotency_key": "k1"})
    assert refused.value.code == 409 or "idempotent" in str(refused.value.error_type)
    assert len(fake_providers.emails_sent()) == 1


def test_a_batch_request_uses_one_attempt_of_each_message(provider_settings, fake_providers):
    emails(2)
    deliver()
    assert {m.attempts for m in ScheduledMessage.objects.all()} == {1}
