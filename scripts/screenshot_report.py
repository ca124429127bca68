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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={args.width},{args.height}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(args.html.resolve().as_uri())
        driver.save_screenshot(str(args.png))
    finally:
        driver.quit()
    print(args.png)


if __name__ == "__main__":
    main()
