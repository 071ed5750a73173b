"""The weekly summary end to end: queued by the job, sent by process-scheduled, received by
the fake Resend server."""

import pytest

from analytics.weekly_summary import send_weekly_summaries
from messaging.models import ScheduledMessage, Status
from scheduling.runner import run_job
from tests.analytics.factories import add_message, make_call, make_client, make_conversation, make_lead, utc

pytestmark = pytest.mark.django_db

MONDAY_8AM_BERLIN = utc(2025, 3, 17, 7)  # in the past, so the queued email is due now


def test_weekly_summary_arrives_at_resend_with_subject_numbers_and_both_parts(provider_settings, fake_providers):
    client = make_client("Acme & Sons", "Europe/Berlin", owner_email="owner@acme.example")
    for day in (10, 11, 12, 13):
        make_lead(client, utc(2025, 3, day, 12))
    make_lead(client, utc(2025, 3, 4, 12))
    conversation = make_conversation(client)
    add_message(conversation, "in", utc(2025, 3, 12, 10))
    add_message(conversation, "out", utc(2025, 3, 12, 10, 2))
    make_call(client, utc(2025, 3, 14, 9), texted_back=True)
    (queued,) = send_weekly_summaries(now=MONDAY_8AM_BERLIN)

    result = run_job("process-scheduled", "manual")

    assert result.status == "succeeded", result.message
    (email,) = fake_providers.emails_sent()
    assert email["to"] == ["owner@acme.example"]
    assert email["subject"] == "Weekly summary for Acme & Sons: 10–16 Mar 2025"
    assert "New leads: 4 (+300% vs previous week)" in email["text"]
    assert "Median response time: 2 min (no replies measured the previous week)" in email["text"]
    assert "Missed calls texted back: 1 (up from 0 the previous week)" in email["text"]
    assert "Weekly summary for Acme &amp; Sons" in email["html"]
    assert ">4</td>" in email["html"] and "+300% vs previous week" in email["html"]
    assert ScheduledMessage.objects.get(pk=queued.pk).status == Status.SENT
