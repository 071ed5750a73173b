"""A real headless Chromium, driven through Debian's chromedriver. Nothing is downloaded:
both binaries come from PATH, and the tests are skipped (with the reason) when either is
missing. Each test gets a fresh browser profile in its tmp_path."""

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests import users

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1440,1000",
]
WAIT_SECONDS = 15
STAFF_PASSWORD = "a-long-test-password-42"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(
            "browser tests need Debian's chromium and chromedriver on PATH "
            "(apt-get install chromium chromium-driver; scripts/ensure_chromium.sh does it as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def staff_user():
    operator = (*users.MESSAGE_OPERATOR, *users.JOB_OPERATOR, *users.CAMPAIGN_OPERATOR)
    return users.staff_user("operator", *operator, password=STAFF_PASSWORD)


def wait(driver: webdriver.Chrome) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_SECONDS)


def log_in(driver: webdriver.Chrome, base_url: str, username: str, next_path: str) -> None:
    """Through the admin login form, as a person would; lands on `next_path`."""
    driver.get(f"{base_url}/admin/login/?next={next_path}")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(STAFF_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(driver).until(EC.url_to_be(f"{base_url}{next_path}"))


def screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page, not just the window (through the DevTools protocol)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def flash_texts(driver: webdriver.Chrome) -> list[str]:
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "ul.flash li")))
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "ul.flash li")]
