"""Headless Chromium for the page's tests, driven by Selenium through Debian's chromedriver.

Chromium and chromedriver come from the distribution's packages (`make test` installs them when
missing, as root); nothing is downloaded by a tool.  When they cannot be had, the tests that need
them are skipped with the reason, never silently passed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("ANYLOG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ANYLOG_CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags this machine needs: no sandbox as root, and no background traffic to the outside.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def why_no_browser() -> str | None:
    """None when headless Chromium can be driven here, else the reason it cannot."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            return f"{path} is missing: install Debian's {package} (make test does, as root: apt-get install -y " \
                   f"chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing: pip install -e '.[test]'"
    return None


def start_browser(user_data_dir: str | None = None):
    """A fresh headless Chromium session (its own empty profile); the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir or tempfile.mkdtemp(prefix='anylog-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def console_errors(driver) -> list[str]:
    """The console's errors since the last call (script errors, failed loads, CSP refusals)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


@pytest.fixture
def browser(tmp_path):
    reason = why_no_browser()
    if reason is not None:
        pytest.skip(f"no headless Chromium: {reason}")
    driver = start_browser(str(tmp_path / "chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()
