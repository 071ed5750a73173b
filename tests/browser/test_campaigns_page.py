"""The /campaigns/ page in a real headless Chromium at desktop width, against a live server."""

from datetime import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from campaigns.models import CampaignStatus
from scheduling.models import JobRun, Trigger
from tests.browser.conftest import flash_texts, log_in, screenshot
from tests.campaigns.factories import add_recipients, make_campaign
from tests.messaging.factories import make_client

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def cell(driver, campaign, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-campaign="{campaign.pk}"] .{name}').text


def test_operator_runs_the_tick_and_sees_progress(browser, live_server, staff_user, tmp_path: Path):
    acme = make_client(tz="UTC")
    running = make_campaign(acme, name="Winter promo", max_in_flight=3)
    add_recipients(running, 5)
    paused = make_campaign(acme, name="Spring promo", status=CampaignStatus.PAUSED)
    add_recipients(paused, 2)
    windowed = make_campaign(acme, name="Evening", window_start=time(0, 0), window_end=time(23, 59))

    log_in(browser, live_server.url, staff_user.username, "/campaigns/")
    assert browser.get_window_size()["width"] >= 1280
    assert cell(browser, running, "in-flight") == "0 / 3"
    assert "never ran" in browser.find_element(By.CSS_SELECTOR, "#tick .last-run").text
    countdown = browser.find_element(By.CSS_SELECTOR, "#tick time.countdown").text
    assert countdown.startswith("in ") or countdown == "due now"

    browser.find_element(By.ID, "run-tick").click()
    assert flash_texts(browser)[0].startswith("process-campaigns: succeeded, ")
    assert browser.current_url.endswith("/campaigns/")
    assert cell(browser, running, "in-flight") == "3 / 3"
    assert cell(browser, running, "launched") == "3" and cell(browser, running, "total") == "5"
    assert cell(browser, running, "status") == "running"
    assert cell(browser, paused, "status") == "paused" and cell(browser, paused, "launched") == "0"
    assert "00:00-23:59 UTC" in cell(browser, windowed, "window")
    assert "succeeded" in browser.find_element(By.CSS_SELECTOR, "#tick .last-run").text
    assert browser.find_element(By.CSS_SELECTOR, "#tick .launched").text == "3"
    # Nothing overflows the desktop width.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(browser, tmp_path / "campaigns.png")
    run = JobRun.objects.get(job__name="process-campaigns")
    assert run.trigger == Trigger.ADMIN
