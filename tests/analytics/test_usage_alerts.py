from datetime import date, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import UsageAlert
from analytics.usage_alerts import check_all_client_alerts
from messaging.models import Client, ScheduledMessage
from messaging.services import schedule_message
from scheduling.models import JobRun
from scheduling.runner import run_job
from tests.analytics.factories import make_client, make_scheduled, sms_sent, utc

pytestmark = pytest.mark.django_db

NOW = utc(2025, 4, 20, 12)


def alert_emails() -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source="usage-alert").order_by("created_at"))


def test_below_80_percent_sends_no_alert():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 7)
    assert check_all_client_alerts(now=NOW) == []
    assert alert_emails() == []


def test_80_percent_emails_the_owner_once_with_the_threshold_key():
    client = make_client(monthly_sms_allowance=10, owner_email="Boss@Acme.example")
    sms_sent(client, utc(2025, 4, 10), 8)
    check_all_client_alerts(now=NOW)
    (email,) = alert_emails()
    assert (email.channel, email.to, email.idempotency_key) == (
        "email",
        "boss@acme.example",
        f"usage-alert:{client.pk}:2025-04:80",
    )
    assert "80%" in email.subject and "8 SMS" in email.body and "allowance of 10" in email.body


def test_second_run_in_the_same_month_sends_nothing_more():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 9)
    check_all_client_alerts(now=NOW)
    assert check_all_client_alerts(now=utc(2025, 4, 21)) == []
    assert len(alert_emails()) == 1


def test_100_percent_alerts_again_after_80_percent():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 8)
    check_all_client_alerts(now=NOW)
    sms_sent(client, utc(2025, 4, 20, 13), 2)
    check_all_client_alerts(now=utc(2025, 4, 20, 14))
    keys = [m.idempotency_key for m in alert_emails()]
    assert keys == [f"usage-alert:{client.pk}:2025-04:80", f"usage-alert:{client.pk}:2025-04:100"]
    assert "used up" in alert_emails()[1].body


def test_jumping_past_both_thresholds_sends_one_email_and_remembers_both():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 12)
    check_all_client_alerts(now=NOW)
    assert [m.idempotency_key for m in alert_emails()] == [f"usage-alert:{client.pk}:2025-04:100"]
    assert set(UsageAlert.objects.values_list("threshold", flat=True)) == {80, 100}
    assert check_all_client_alerts(now=utc(2025, 4, 21)) == []


def test_a_new_month_alerts_again():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 8)
    check_all_client_alerts(now=NOW)
    assert check_all_client_alerts(now=utc(2025, 5, 2)) == []  # May so far: nothing sent
    sms_sent(client, utc(2025, 5, 3), 8)
    check_all_client_alerts(now=utc(2025, 5, 4))
    assert [m.idempotency_key for m in alert_emails()] == [
        f"usage-alert:{client.pk}:2025-04:80",
        f"usage-alert:{client.pk}:2025-05:80",
    ]


def test_the_month_is_the_clients_local_month():
    auckland = make_client("Kiwi Cafe", "Pacific/Auckland", monthly_sms_allowance=10)
    sms_sent(auckland, utc(2025, 3, 31, 10), 5)  # 31 March 23:00 in Auckland
    sms_sent(auckland, utc(2025, 3, 31, 12), 8)  # 1 April 01:00 in Auckland
    check_all_client_alerts(now=utc(2025, 3, 31, 13))
    (alert,) = UsageAlert.objects.all()
    assert (alert.month, alert.threshold, alert.sms_count) == (date(2025, 4, 1), 80, 8)


def test_only_sms_accepted_by_the_provider_count_against_the_allowance():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 7)
    make_scheduled(client, "sms", "failed", at=utc(2025, 4, 10))
    make_scheduled(client, "sms", "pending", at=utc(2025, 4, 10), claimed=False)
    make_scheduled(client, "email", "sent", at=utc(2025, 4, 10), sent=True)
    make_scheduled(client, "sms", "delivered", at=utc(2025, 4, 10), sent=True)
    check_all_client_alerts(now=NOW)
    (alert,) = UsageAlert.objects.all()
    assert alert.sms_count == 8


def test_one_clients_invalid_owner_email_does_not_stop_the_others():
    broken = make_client("Broken Co", monthly_sms_allowance=10, owner_email="not-an-address")
    good = make_client("Good Co", monthly_sms_allowance=10)
    sms_sent(broken, utc(2025, 4, 10), 9)
    sms_sent(good, utc(2025, 4, 10), 9)
    recorded = check_all_client_alerts(now=NOW)
    assert [a.client_id for a in recorded] == [good.pk]
    assert not UsageAlert.objects.filter(client=broken).exists()


def test_owner_without_email_is_texted_instead():
    client = make_client(monthly_sms_allowance=10, owner_email="", owner_phone="+14155550100")
    sms_sent(client, utc(2025, 4, 10), 9)
    (alert,) = check_all_client_alerts(now=NOW)
    assert (alert.client_id, alert.threshold) == (client.pk, 80)
    assert (alert.message.channel, alert.message.to) == ("sms", "+14155550100")


def test_unreachable_owner_is_alerted_once_a_contact_is_set():
    client = make_client(monthly_sms_allowance=10, owner_email="", owner_phone="")
    sms_sent(client, utc(2025, 4, 10), 9)
    assert check_all_client_alerts(now=NOW) == []  # nobody to tell: not marked as told
    Client.objects.filter(pk=client.pk).update(owner_email="owner@example.com")
    (alert,) = check_all_client_alerts(now=utc(2025, 4, 21))
    assert alert.threshold == 80 and alert.message.to == "owner@example.com"


def test_daily_job_checks_usage_alerts_after_the_aggregation():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 10)
    with time_machine.travel(NOW, tick=False):
        result = run_job("daily", "manual")
    assert result.status == "succeeded"
    assert result.data["usage_alerts"] == 1
    assert [m.idempotency_key for m in alert_emails()] == [f"usage-alert:{client.pk}:2025-04:100"]


def _clients_over_80_percent(count: int, start: int = 0) -> list[Client]:
    clients = [make_client(f"Client{n} Co", monthly_sms_allowance=10) for n in range(start, start + count)]
    ScheduledMessage.objects.bulk_create(
        ScheduledMessage(
            client=client, channel="sms", to="+14155550000", body="hello", status="sent", send_at=at, sent_at=at
        )
        for client in clients
        for at in [utc(2025, 4, 10)] * 9
    )
    return clients


def test_queries_do_not_grow_with_the_number_of_clients_alerted():
    _clients_over_80_percent(5)
    with CaptureQueriesContext(connection) as few:
        assert len(check_all_client_alerts(now=NOW)) == 5
    _clients_over_80_percent(45, start=5)
    with CaptureQueriesContext(connection) as many:
        assert len(check_all_client_alerts(now=NOW)) == 45
    assert len(few) == len(many) <= 11


def test_daily_job_queries_do_not_grow_with_the_number_of_clients():
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        run_job("daily", "manual")  # the first run of a job also creates its Job row
    _clients_over_80_percent(5)
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as few:
        assert run_job("daily", "manual").data["usage_alerts"] == 5
    _clients_over_80_percent(45, start=5)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False), CaptureQueriesContext(connection) as many:
        assert run_job("daily", "manual").data["usage_alerts"] == 45
    assert len(few) == len(many) < 100


def test_a_rerun_for_many_clients_alerts_nobody_twice():
    clients = _clients_over_80_percent(20)
    check_all_client_alerts(now=NOW)
    assert check_all_client_alerts(now=utc(2025, 4, 21)) == []
    assert sorted(m.idempotency_key for m in alert_emails()) == sorted(
        f"usage-alert:{c.pk}:2025-04:80" for c in clients
    )


def test_a_message_queued_without_its_alert_recorded_is_linked_not_sent_again():
    client = make_client(monthly_sms_allowance=10)
    sms_sent(client, utc(2025, 4, 10), 9)
    queued, _ = schedule_message(
        channel="email",
        to=client.owner_email,
        subject="s",
        body="b",
        idempotency_key=f"usage-alert:{client.pk}:2025-04:80",
    )
    (alert,) = check_all_client_alerts(now=NOW)
    assert alert.message == queued
    assert UsageAlert.objects.get().message_id == queued.pk
    assert ScheduledMessage.objects.filter(idempotency_key__startswith="usage-alert:").count() == 1


def test_an_invalid_owner_email_is_the_clients_failed_item_in_the_run():
    make_client("Broken Co", monthly_sms_allowance=10, owner_email="not-an-address")
    good = make_client("Good Co", monthly_sms_allowance=10)
    sms_sent(Client.objects.get(name="Broken Co"), utc(2025, 4, 10), 9)
    sms_sent(good, utc(2025, 4, 10), 9)
    with time_machine.travel(NOW, tick=False):
        result = run_job("daily", "manual")
    assert result.status == "partial" and result.data["usage_alerts"] == 1
    run = JobRun.objects.get(pk=result.run_id)
    assert "usage alert for client" in run.error and "owner email: Enter a valid email address" in run.error
    broken = Client.objects.get(name="Broken Co")
    assert broken.owner_known_unreachable, "recorded on the client, so the next runs do not fail it again"
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        again = run_job("daily", "manual")
    assert again.status == "succeeded" and again.data["skipped_owner_unreachable"] == 1
