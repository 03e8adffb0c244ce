"""The dashboard in a real browser: headless Chromium loads GET / from reporting fed with a
month of events, runs its JavaScript, and the page proves what it drew.

Chromium's own --dump-dom and --screenshot are enough (no driver dependency): with
--virtual-time-budget the page's fetches, timers and drawing run to completion first. Each
chart writes on its element the number of data points it plotted (`data-points`) and the
number of pixels of the series colour it painted on its canvas (`data-ink`), read back from
the canvas itself; the test reads those from the DOM and saves screenshots, English and
Chinese, whose paths every assertion message names.
"""

from __future__ import annotations

import struct
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_reporting import ZONE, Reporting, month_of_events
from tests.helpers import TEST_TOKEN, api_client, event, wait_until

pytestmark = pytest.mark.e2e

CHARTS = ("revenue", "nps", "sla_compliance", "churn_rate")
WINDOW_SIZE = "1400,1700"


def chromium_args(binary: str, profile: Path) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",  # we run as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW_SIZE}",
        "--virtual-time-budget=20000",  # fetches, timers and drawing settle first
    ]


def run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


class Page(HTMLParser):
    """The bits of the dumped DOM the test looks at."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}  # element id or class path -> text
        self._stack: list[str] = []
        self.all_text: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        self._stack.append(found.get("id") or found.get("class") or tag)

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.all_text.append(data.strip())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {path}"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def fed(reporting: Reporting) -> dict[str, Any]:
    """A month up to today, and a crisis alert whose window ended half an hour ago."""
    today = datetime.now(ZONE).date()
    events = month_of_events(today - timedelta(days=34), today, seed=3)
    now = datetime.now(UTC)
    events.append(
        event(
            "crm.crisis.detected",
            "crisis:category:delivery",
            {
                "dimension": "category",
                "value": "delivery",
                "window_start": (now - timedelta(hours=6, minutes=30)).isoformat(),
                "window_end": (now - timedelta(minutes=30)).isoformat(),
                "count": 21,
                "baseline": 4.0,
                "score": 15.5,
                "decision_interval": 12,
            },
            time=now - timedelta(minutes=30),
            event_id="crisis-now",
        )
    )
    await reporting.post(events)
    async with api_client(base_url=reporting.url, timeout=10) as client:

        async def loaded() -> dict[str, Any] | None:
            summary = (await client.get("/v1/kpis/summary", params={"period": "month"})).json()
            alerts = (await client.get("/v1/alerts")).json()["items"]
            cards = {c["name"]: c for c in summary["cards"]}
            ready = cards["orders"]["value"] and cards["customer_equity"]["value"] and alerts
            return summary if ready else None

        found = await wait_until(loaded, timeout=60, what="the month in reporting")
        assert found is not None  # wait_until returns a truthy value or fails
        return found


async def test_the_dashboard_draws_its_charts_from_the_data(
    reporting: Reporting, chromium: str, tmp_path: Path
) -> None:
    summary = await fed(reporting)
    shots = {lang: tmp_path / f"dashboard-{lang}.png" for lang in ("en", "zh")}
    for lang, shot in shots.items():
        run(
            [
                *chromium_args(chromium, tmp_path / f"shot-{lang}"),
                f"--screenshot={shot}",
                f"{reporting.url}/?lang={lang}#key={TEST_TOKEN}",
            ]
        )
    where = f"screenshots: {shots['en']} and {shots['zh']}"
    for shot in shots.values():
        assert shot.stat().st_size > 20_000, f"an empty-looking page? {where}"
        assert png_size(shot) == (1400, 1700), where

    page = Page(
        run(
            [
                *chromium_args(chromium, tmp_path / "dom-en"),
                "--dump-dom",
                f"{reporting.url}/?lang=en&refresh=5#key={TEST_TOKEN}",
            ]
        )
    )
    body = page.find("body")[0]
    assert body.get("data-state") == "ready", f"the page did not load its data; {where}"
    assert int(body.get("data-refreshes", "0")) >= 2, f"the page does not refresh itself; {where}"
    for metric in CHARTS:
        (chart,) = page.find("figure", **{"data-metric": metric})
        points, ink = int(chart.get("data-points", "0")), int(chart.get("data-ink", "0"))
        assert points >= 2, f"{metric}: {points} points plotted; {where}"
        assert ink >= 150, f"{metric}: {ink} pixels of the series drawn; {where}"
    cards = {c["data-metric"] for c in page.find("div", class_="card")}
    assert {"revenue", "nps", "sla_compliance", "churn_rate", "open_crisis_alerts"} <= cards, where
    orders = next(c for c in summary["cards"] if c["name"] == "orders")["value"]
    assert f"{orders:,}" in page.all_text, f"the orders card does not show {orders}; {where}"
    tiers = {row["data-tier"] for row in page.find("tr") if "data-tier" in row}
    assert {"gold", "developing", "potential"} <= tiers, f"tier breakdown: {tiers}; {where}"
    assert page.find("li", **{"data-alert": "crisis-now"}), f"the open alert is missing; {where}"
    # The cohort matrix: the month's customers first bought in 4 or 5 different months (100
    # days of history before it); month 0 is the whole cohort.
    cohorts = [row["data-cohort"] for row in page.find("tr") if "data-cohort" in row]
    assert len(cohorts) >= 4, f"cohort rows: {cohorts}; {where}"
    shares = [float(td["data-share"]) for td in page.find("td") if "data-share" in td]
    assert shares.count(1.0) >= len(cohorts), f"month 0 is not 100 %: {shares}; {where}"
    assert "Customer relationship KPIs" in page.all_text, where

    chinese = Page(
        run(
            [
                *chromium_args(chromium, tmp_path / "dom-zh"),
                "--dump-dom",
                f"{reporting.url}/?lang=zh#key={TEST_TOKEN}",
            ]
        )
    )
    assert chinese.find("html")[0].get("lang") == "zh-CN", where
    assert "客户关系绩效指标" in chinese.all_text, f"no Chinese title; {where}"
    assert {"营业额", "净推荐值", "流失率"} <= set(chinese.all_text), (
        f"labels not in Chinese; {where}"
    )
    for metric in CHARTS:
        (chart,) = chinese.find("figure", **{"data-metric": metric})
        assert int(chart.get("data-ink", "0")) >= 150, f"{metric} (zh) not drawn; {where}"


async def test_without_a_key_the_dashboard_asks_for_one_and_shows_no_data(
    reporting: Reporting, chromium: str, tmp_path: Path
) -> None:
    await fed(reporting)
    page = Page(
        run([*chromium_args(chromium, tmp_path / "dom"), "--dump-dom", f"{reporting.url}/"])
    )
    body = page.find("body")[0]
    assert body.get("data-state") == "needs-key", body
    (form,) = page.find("form", id="key-form")
    assert "hidden" not in form, "the key form is hidden"
    assert not page.find("div", class_="card"), "cards drawn without a key"
