"""The tick's batches on two threads, each with its own database connection (committed rows:
threads cannot see a test's open transaction, so these tests commit)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

import campaigns.tick as tick
from campaigns.tick import process_campaigns
from scheduling.dbname import application_name
from tests.campaigns.factories import NOON, add_recipients, campaign_messages, make_campaign
from tests.messaging.factories import make_client
from tests.sqlite_rerun import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


@pytest.fixture
def campaigns():
    client = make_client(tz="UTC")
    made = [make_campaign(client, name=f"c{i}", max_in_flight=2) for i in range(6)]
    for campaign in made:
        add_recipients(campaign, 3)
    return made


def threads_of_batches(monkeypatch, names: set[str] | None = None) -> set[int]:
    seen: set[int] = set()
    real = tick._tick_batch

    def recording(batch, now):
        seen.add(threading.get_ident())
        if names is not None:
            with connection.cursor() as cursor:
                cursor.execute("SHOW application_name")
                names.add(cursor.fetchone()[0])
        return real(batch, now)

    monkeypatch.setattr(tick, "_tick_batch", recording)
    return seen


def test_two_threads_visit_every_batch_once_within_the_caps(campaigns, monkeypatch):
    names: set[str] = set()
    seen = threads_of_batches(monkeypatch, names)
    with application_name("process-campaigns"):
        result = process_campaigns(NOON, batch_size=1, threads=2)
    assert len(seen) == 2 and threading.get_ident() not in seen
    assert names == {"cron:process-campaigns"}  # the threads' connections carry the job's name
    assert (result.visited, result.launched, result.deferred, result.errors) == (6, 12, 0, [])
    assert [campaign_messages(c).count() for c in campaigns] == [2] * 6
    again = process_campaigns(NOON + timedelta(minutes=1), batch_size=1, threads=2)
    assert (again.visited, again.launched) == (6, 0)  # every campaign at its cap


def test_inside_the_callers_transaction_one_thread_does_it_all(campaigns, monkeypatch):
    from django.db import transaction

    seen = threads_of_batches(monkeypatch)
    with transaction.atomic():
        result = process_campaigns(NOON, batch_size=1, threads=2)
    assert seen == {threading.get_ident()} and result.launched == 12


def test_the_deadline_stops_both_threads_and_counts_what_is_left(campaigns):
    asked = []
    lock = threading.Lock()

    def stop_after_three() -> bool:
        with lock:
            asked.append(1)
            return len(asked) > 3

    result = process_campaigns(NOON, batch_size=1, threads=2, should_stop=stop_after_three)
    assert (result.visited, result.deferred) == (3, 3)
    assert result.visited + result.deferred == len(campaigns)


def test_a_bug_in_a_thread_fails_the_tick_instead_of_vanishing(campaigns, monkeypatch):
    real = tick.TickResult.merge

    def broken_merge(self, other):
        if other.visited:
            raise RuntimeError("merge bug")
        return real(self, other)

    monkeypatch.setattr(tick.TickResult, "merge", broken_merge)
    with pytest.raises(RuntimeError, match="merge bug"):
        process_campaigns(NOON, batch_size=1, threads=2)
