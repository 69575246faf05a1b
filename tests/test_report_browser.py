"""The report in a real headless browser (Debian's ``chromium``, driven by Playwright): at
1400 px wide, the first screen shows the flagged count, the estimated false positives and the
first campaign's evidence, with no horizontal scrolling; opening the campaign shows all its
members, still without.

Playwright drives the system's chromium (``executable_path``); it never downloads a browser.
``.ci/run`` installs ``chromium`` when it is missing. The machine may have no network, so the
browser starts with everything that would reach out turned off."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector.audit import AuditResult

WIDTH, HEIGHT = 1400, 900
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package (the dev extra) is not installed"
)
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def page(small_audit: AuditResult) -> Iterator[Any]:
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": HEIGHT},
        )
        try:
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            pg.goto(small_audit.paths["report"].resolve().as_uri())
            yield pg
        finally:
            context.close()


def _on_first_screen(page: Any, selector: str) -> str:
    """The element's text, after checking that it is visible and inside the first screen."""
    el = page.locator(selector).first
    assert el.is_visible(), selector
    box = el.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (selector, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, (selector, box)
    return str(el.inner_text())


def _no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide at a {WIDTH} px window"


def test_first_screen_answers_who_how_sure_and_why(page: Any, small_audit: AuditResult) -> None:
    summary = small_audit.summary
    _no_horizontal_scroll(page)
    flagged = _on_first_screen(page, "#card-flagged")
    assert f"{summary['n_flagged']:,} accounts" in flagged
    fp = _on_first_screen(page, "#card-fp")
    estimate = summary["calibration"]["expected_normal_flagged"]["estimate"]
    assert f"≈ {estimate:.1f} or fewer" in fp
    assert small_audit.campaigns is not None
    first = (
        small_audit.campaigns.filter(pl.col("lift") > 0)
        .sort("score", descending=True)
        .row(0, named=True)
    )
    evidence = _on_first_screen(page, "#flagged details.item.campaign .evidence")
    assert evidence == first["evidence"][0]
    assert first["campaign_id"] in _on_first_screen(page, "#flagged details.item.campaign .name")


def test_opened_campaign_lists_all_members(page: Any, small_audit: AuditResult) -> None:
    assert small_audit.campaigns is not None
    first = (
        small_audit.campaigns.filter(pl.col("lift") > 0)
        .sort("score", descending=True)
        .row(0, named=True)
    )
    item = page.locator("#flagged details.item.campaign").first
    item.locator("summary").click()
    assert item.get_attribute("open") is not None
    rows = item.locator("table.members tbody tr")
    assert rows.count() == len(first["members"])
    shown = set(item.locator("table.members tbody tr td.id:first-child").all_inner_texts())
    assert {s.split("\n")[0] for s in shown} == set(first["members"])
    assert item.locator("img.fig").first.is_visible()  # the activity picture
    _no_horizontal_scroll(page)
