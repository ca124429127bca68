"""Screenshot an HTML report in headless Chromium (the picture in the README).

.venv/bin/advlab report RUN [RUN ...] --html report.html
.venv/bin/python scripts/screenshot_report.py report.html docs/img/report.png [--height 1400]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium(width: int = 1300, height: int = 1400, console_log: bool = False):
    """A headless Debian Chromium driven by selenium (the system browser and chromedriver;
    FileNotFoundError names what is missing)."""

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise FileNotFoundError(
            "no chromium/chromedriver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(arg)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args()
    driver = chromium(args.width, args.height)
    try:
        driver.get(args.html.resolve().as_uri())
        driver.save_screenshot(str(args.png))
    finally:
        driver.quit()
    print(args.png)


if __name__ == "__main__":
    main()
