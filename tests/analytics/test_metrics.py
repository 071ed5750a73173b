"""The aggregate queries themselves; run again on SQLite (the demo's database), whose SQL differs."""

from datetime import date

import pytest

from analytics import metrics
from tests.analytics.factories import add_message, make_client, make_conversation, utc
from tests.sqlite_rerun import postgresql_only, rerun_on_sqlite

pytestmark = pytest.mark.django_db

MONDAY = date(2025, 3, 10)


def test_median_sets_keep_windows_with_the_same_client_and_label_apart():
    client = make_client()
    conversation = make_conversation(client)
    add_message(conversation, "in", utc(2025, 3, 10, 9))  # Monday: answered in 10 min
    add_message(conversation, "out", utc(2025, 3, 10, 9, 10))
    for day in (11, 12):  # later that week: 30 min, 30 min
        add_message(conversation, "in", utc(2025, 3, day, 9))
        add_message(conversation, "out", utc(2025, 3, day, 9, 30))
    monday = [metrics.Window(client.pk, MONDAY, utc(2025, 3, 10), utc(2025, 3, 11))]
    week = [metrics.Window(client.pk, MONDAY, utc(2025, 3, 10), utc(2025, 3, 17))]
    days, weeks = metrics.median_first_response_sets([monday, week])
    assert days == {(client.pk, MONDAY): 600} == metrics.median_first_response(monday)
    assert weeks == {(client.pk, MONDAY): 1800} == metrics.median_first_response(week)


def test_median_sets_of_nothing_are_empty():
    assert metrics.median_first_response_sets([[], []]) == [{}, {}]


@postgresql_only
def test_the_same_tests_pass_on_sqlite(tmp_path):
    assert " passed, 1 skipped" in rerun_on_sqlite(__file__, tmp_path)
