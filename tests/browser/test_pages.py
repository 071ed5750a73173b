"""The staff pages in a real headless Chromium against a live server."""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from messaging.models import ScheduledMessage, Status
from scheduling.models import JobRun, Trigger
from tests.browser.conftest import flash_texts, log_in, screenshot, wait
from tests.messaging.factories import sms

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _statuses_on_page(driver) -> dict[str, str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr[data-id]")
    return {row.get_attribute("data-id"): row.find_element(By.CSS_SELECTOR, ".status").text for row in rows}


def test_operator_filters_pending_messages_and_cancels_one(browser, live_server, staff_user, tmp_path: Path):
    pending = [sms(to=f"+1415555010{i}") for i in range(3)]
    for status in (Status.SENT, Status.FAILED):
        ScheduledMessage.objects.filter(pk=sms(to="+14155550199").pk).update(status=status)

    log_in(browser, live_server.url, staff_user.username, "/scheduled/")
    Select(browser.find_element(By.ID, "id_status")).select_by_value("pending")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait(browser).until(EC.url_contains("status=pending"))

    shown = _statuses_on_page(browser)
    assert set(shown) == {str(m.pk) for m in pending}
    assert set(shown.values()) == {"pending"}
    screenshot(browser, tmp_path / "scheduled-pending.png")

    target = pending[1]
    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{target.pk}"] a.cancel').click()
    # A confirmation first, naming the message; nothing is cancelled yet.
    wait(browser).until(EC.presence_of_element_located((By.ID, "confirm-cancel")))
    assert f"SMS to {target.to} (id {str(target.pk)[:8]})" in browser.find_element(By.ID, "confirm").text
    target.refresh_from_db()
    assert target.status == Status.PENDING
    screenshot(browser, tmp_path / "scheduled-cancel-confirm.png")
    browser.find_element(By.ID, "confirm-cancel").click()
    assert flash_texts(browser) == [f"Cancelled SMS to {target.to} (id {str(target.pk)[:8]})."]
    # Back on the same filtered list: the cancelled message is no longer pending.
    assert "status=pending" in browser.current_url
    assert str(target.pk) not in _statuses_on_page(browser)

    browser.find_element(By.CSS_SELECTOR, '.tabs a[data-status="all"]').click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-id="{target.pk}"]')))
    assert _statuses_on_page(browser)[str(target.pk)] == "cancelled"
    screenshot(browser, tmp_path / "scheduled-after-cancel.png")
    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{target.pk}"] a').click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "status"), "cancelled"))
    screenshot(browser, tmp_path / "scheduled-detail.png")
    target.refresh_from_db()
    assert target.status == Status.CANCELLED


def test_operator_runs_watchdog_from_the_cron_dashboard(browser, live_server, staff_user, tmp_path: Path):
    log_in(browser, live_server.url, staff_user.username, "/cron/")
    jobs = [row.get_attribute("data-job") for row in browser.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]")]
    assert {"watchdog", "prune"} <= set(jobs)
    countdown = browser.find_element(By.CSS_SELECTOR, 'tr[data-job="watchdog"] time.countdown').text
    assert countdown.startswith("in ") or countdown == "due now"

    browser.find_element(By.CSS_SELECTOR, 'tr[data-job="watchdog"] button[type=submit]').click()
    assert flash_texts(browser)[0].startswith("watchdog: succeeded, ")
    last_run = browser.find_element(By.CSS_SELECTOR, 'tr[data-job="watchdog"] td.last-run').text
    assert "succeeded" in last_run and "admin" in last_run
    screenshot(browser, tmp_path / "cron-dashboard.png")

    run = JobRun.objects.get(job__name="watchdog")
    assert (run.trigger, run.status) == (Trigger.ADMIN, "succeeded")
    browser.find_element(By.LINK_TEXT, "watchdog").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#runs tr[data-run="{run.pk}"]')))
    assert browser.find_elements(By.CSS_SELECTOR, ".chart svg rect.succeeded")
    screenshot(browser, tmp_path / "cron-history.png")
