"""The README's picture of the web face: a scan opened from the data root of a running ``medgan-translate serve``,
translated with the default model by clicking, photographed by Debian's chromium (Playwright).

    medgan-translate serve --data-root ../shared/real-data &
    .venv/bin/python benchmarks/web_screenshot.py --url http://127.0.0.1:8080/ \
        --scan t1/philips_adni_mprage_1mm.nii.gz --out docs/images/web_face.png
"""
from __future__ import annotations

import argparse
import time

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
VIEWS_LOADED = """() => [...document.querySelectorAll('#panes img')].every(i => i.complete && i.naturalWidth > 0)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the address the server printed (with its ?token= if any)")
    parser.add_argument("--scan", required=True, help="path under the server's data root")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 760}).new_page()
        page.goto(args.url)
        page.wait_for_selector("#file-select option", state="attached")
        page.select_option("#file-select", args.scan)
        page.click("#load-input")
        page.wait_for_selector("#volume-input", timeout=120_000)
        started = time.monotonic()
        page.click("#translate")
        page.wait_for_selector("#review", state="visible", timeout=600_000)
        print(f"{args.scan}: {page.inner_text('#status')} after {time.monotonic() - started:.1f} s (engine start included)")
        page.wait_for_function(VIEWS_LOADED)
        page.screenshot(path=args.out)
        browser.close()


if __name__ == "__main__":
    main()
