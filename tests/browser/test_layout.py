"""The dashboard and the queue at a desktop width (1366 px) and a phone's (390 px), in a real
headless Chromium: no horizontal page scroll, and a 2,000-character error shows truncated,
inside the viewport, with the whole text on the run's / message's own page."""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from messaging.models import ScheduledMessage, Status
from scheduling.models import JobRun, Trigger
from scheduling.runner import run_job
from tests.browser.conftest import log_in, screenshot, wait
from tests.messaging.factories import email, sms

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1366, 768, False), "phone": (390, 844, True)}
RUN_ERROR = "ProviderError: Twilio answered 401 " + "a" * 900 + " " + "b" * 1066  # 2,000 chars
MESSAGE_ERROR = "Unable to create record: " + "c" * 1976  # 2,000 chars, one unbroken word


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def sized_browser(request, browser):
    width, height, mobile = WIDTHS[request.param]
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    browser.width_name = request.param
    return browser


def _page_fits(driver) -> tuple[int, int]:
    """(scrollWidth, innerWidth); innerWidth must be the emulated width: a phone browser
    widens its layout viewport (zooms out) for a page too wide, which would hide an overflow."""
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert inner_width == WIDTHS[driver.width_name][0], inner_width
    print(f"{driver.current_url} at {driver.width_name}: scrollWidth {scroll_width}, innerWidth {inner_width}")
    return scroll_width, inner_width


def _in_viewport(driver, element) -> bool:
    return driver.execute_script(
        "var r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= window.innerWidth;",
        element,
    )


def test_dashboard_with_a_long_failing_error_fits_the_screen(
    sized_browser, live_server, staff_user, tmp_path: Path, sample_jobs_registered
):
    result = run_job("test-fail", Trigger.CRON)  # a real failed run: the job's health turns failing
    JobRun.objects.filter(pk=result.run_id).update(error=RUN_ERROR)
    run = JobRun.objects.get(pk=result.run_id)
    log_in(sized_browser, live_server.url, staff_user.username, "/cron/")
    scroll_width, inner_width = _page_fits(sized_browser)
    screenshot(sized_browser, tmp_path / f"dashboard-{sized_browser.width_name}.png")
    sized_browser.save_screenshot(str(tmp_path / f"dashboard-{sized_browser.width_name}-viewport.png"))
    assert scroll_width <= inner_width, (scroll_width, inner_width)

    error = sized_browser.find_element(By.CSS_SELECTOR, 'tr[data-job="test-fail"] .run-error')
    assert error.is_displayed() and _in_viewport(sized_browser, error)
    assert error.text.startswith("ProviderError: Twilio answered 401 aaa") and "…" in error.text
    assert len(error.text) < 120

    error.find_element(By.LINK_TEXT, "full error").click()
    wait(sized_browser).until(EC.presence_of_element_located((By.ID, "error")))
    assert sized_browser.current_url.endswith(f"/cron/test-fail/runs/{run.pk}/")
    assert sized_browser.find_element(By.ID, "error").text.replace("\n", "") == RUN_ERROR
    scroll_width, inner_width = _page_fits(sized_browser)
    screenshot(sized_browser, tmp_path / f"run-{sized_browser.width_name}.png")
    assert scroll_width <= inner_width, (scroll_width, inner_width)

    sized_browser.find_element(By.LINK_TEXT, "test-fail history").click()
    wait(sized_browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#runs tr[data-run="{run.pk}"]')))
    scroll_width, inner_width = _page_fits(sized_browser)
    screenshot(sized_browser, tmp_path / f"history-{sized_browser.width_name}.png")
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    assert sized_browser.find_elements(By.CSS_SELECTOR, ".chart svg rect.failed")


def test_queue_with_a_long_error_fits_the_screen(sized_browser, live_server, staff_user, tmp_path: Path):
    failed = sms(to="+14155550142")
    ScheduledMessage.objects.filter(pk=failed.pk).update(
        status=Status.FAILED, last_error_code="21211", last_error=MESSAGE_ERROR
    )
    for i in range(5):
        sms(to=f"+1415555015{i}")
    email(to="someone.with.a.rather.long.address@example-company.example", subject="A subject " * 10)
    log_in(sized_browser, live_server.url, staff_user.username, "/scheduled/")
    scroll_width, inner_width = _page_fits(sized_browser)
    screenshot(sized_browser, tmp_path / f"queue-{sized_browser.width_name}.png")
    sized_browser.save_screenshot(str(tmp_path / f"queue-{sized_browser.width_name}-viewport.png"))
    assert scroll_width <= inner_width, (scroll_width, inner_width)

    error = sized_browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{failed.pk}"] .last-error')
    assert error.is_displayed() and _in_viewport(sized_browser, error)
    assert error.text.startswith("21211 Unable to create record: ccc") and error.text.endswith("…")

    sized_browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{failed.pk}"] a.recipient').click()
    wait(sized_browser).until(EC.presence_of_element_located((By.ID, "last-error")))
    assert sized_browser.find_element(By.ID, "last-error").text.replace("\n", "") == MESSAGE_ERROR
    scroll_width, inner_width = _page_fits(sized_browser)
    screenshot(sized_browser, tmp_path / f"message-{sized_browser.width_name}.png")
    assert scroll_width <= inner_width, (scroll_width, inner_width)
