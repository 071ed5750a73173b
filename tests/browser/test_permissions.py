"""A view-only operator in a real headless Chromium: sees the queue and the jobs, and no
button they may not use."""

import pytest
from selenium.webdriver.common.by import By

from messaging.models import ScheduledMessage, Status
from tests import users
from tests.browser.conftest import STAFF_PASSWORD, log_in
from tests.messaging.factories import sms

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_view_only_operator_sees_queue_and_jobs_without_action_buttons(browser, live_server):
    users.staff_user("viewer", "messaging.view_scheduledmessage", "scheduling.view_job", password=STAFF_PASSWORD)
    pending = sms()
    failed = sms(to="+14155550199")
    ScheduledMessage.objects.filter(pk=failed.pk).update(status=Status.FAILED)

    log_in(browser, live_server.url, "viewer", "/scheduled/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr[data-id]")
    assert {row.get_attribute("data-id") for row in rows} == {str(pending.pk), str(failed.pk)}
    assert browser.find_elements(By.CSS_SELECTOR, "#queue button") == []

    browser.get(f"{live_server.url}/scheduled/{failed.pk}/")
    assert browser.find_element(By.ID, "status").text == "failed"
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".card button")] == []

    browser.get(f"{live_server.url}/cron/")
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-job="watchdog"]')
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#jobs button")] == []
