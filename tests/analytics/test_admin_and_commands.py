import pytest
import time_machine
from django.core.management import call_command

from analytics.daily import run_daily_analytics_job
from analytics.usage_alerts import check_all_client_alerts
from tests.analytics.factories import make_client, sms_sent, utc

pytestmark = pytest.mark.django_db


def test_daily_stats_and_usage_alerts_are_listed_in_admin(admin_client):
    client = make_client("Acme Plumbing", monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 8)
    run_daily_analytics_job(now=utc(2025, 4, 12))
    check_all_client_alerts(now=utc(2025, 4, 12))
    stats_page = admin_client.get("/admin/analytics/dailystats/")
    alerts_page = admin_client.get("/admin/analytics/usagealert/")
    assert stats_page.status_code == alerts_page.status_code == 200
    assert "Acme Plumbing" in stats_page.content.decode() and "Acme Plumbing" in alerts_page.content.decode()


def test_daily_and_weekly_summary_commands_run_their_jobs(capsys):
    make_client("Acme Plumbing", "Europe/Berlin")
    with time_machine.travel(utc(2025, 3, 17, 7), tick=False):
        call_command("daily")
        call_command("weekly_summary")
    out = capsys.readouterr().out
    assert "daily: succeeded" in out
    assert "weekly-summary: succeeded" in out and "summaries_queued=1" in out
