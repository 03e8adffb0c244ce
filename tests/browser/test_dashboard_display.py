"""What the dashboard shows when there is little to show, and whose calendar it uses (issue 15
item 13), in headless Chromium as test_dashboard.py runs it:

- a chart without data says "no data yet" (暂无数据) instead of drawing empty axes;
- the y axis scales to the data: a churn rate of 0 every week is a line at the bottom of a
  small axis, not of one that reads 0-10,000 %; revenue's axis ends a little above its top;
- dates on the axes are in the page's language (6月 on the Chinese page);
- the charts end on today in the service's zone (TIMEZONE), whatever the browser's clock and
  zone say: the browser runs 3 days behind (libfaketime) in another zone.

The page writes on each chart what it drew (data-empty, data-y-min, data-y-max, data-x-labels,
data-last-period), which the test reads from the dumped DOM; expectations come from the
events posted, summed here by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_dashboard import CHARTS, Page, chromium_args, run
from tests.e2e.test_reporting import ZONE, Reporting
from tests.helpers import TEST_TOKEN, api_client, event, wait_until

pytestmark = pytest.mark.e2e

FIGURES = (*CHARTS, "cohorts")
EMPTY_PANELS = len(FIGURES) + 1  # and the tier table
D = Decimal


def figure(page: Page, name: str) -> dict[str, str]:
    if name == "cohorts":
        (found,) = page.find("figure", id="chart-cohorts")
    else:
        (found,) = page.find("figure", **{"data-metric": name})
    return found


def run_in(*, args: list[str], **env: str) -> str:
    """`run` with more environment variables."""
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def dump(chromium: str, profile: Path, url: str) -> Page:
    return Page(run([*chromium_args(chromium, profile), "--dump-dom", url]))


async def test_charts_without_data_say_so(
    reporting: Reporting, chromium: str, tmp_path: Path
) -> None:
    shot = tmp_path / "empty-zh.png"
    url = f"{reporting.url}/?lang=zh#key={TEST_TOKEN}"
    run([*chromium_args(chromium, tmp_path / "shot"), f"--screenshot={shot}", url])
    for lang, words in (("en", "no data yet"), ("zh", "暂无数据")):
        page = dump(chromium, tmp_path / lang, f"{reporting.url}/?lang={lang}#key={TEST_TOKEN}")
        where = f"{lang}; the Chinese page: {shot}"
        assert page.find("body")[0].get("data-state") == "ready", where
        assert not page.find("canvas"), f"axes drawn without data; {where}"
        assert page.all_text.count(words) == EMPTY_PANELS, (where, page.all_text)
        for name in FIGURES:
            assert figure(page, name).get("data-empty") == "true", (name, where)
        (form,) = page.find("form", id="key-form")
        assert "hidden" in form, f"the key form shows with a key that works; {where}"


def purchases_every_five_days(today: date) -> list[dict[str, Any]]:
    """Three customers buying every 5 days for 150 days up to today (local noon, or a
    minute ago today): nobody is ever 30 days without a purchase, so no one is lost."""
    out = []
    now = datetime.now(ZONE)
    for n in range(31):
        day = today - timedelta(days=150 - 5 * n)
        for i in range(3):
            when = min(datetime.combine(day, time(12), ZONE), now - timedelta(minutes=1))
            amount = D(10 * (i + 1) + n % 7)
            data = {"order_id": f"o-{i}-{n}", "amount": str(amount), "currency": "USD"}
            out.append(event("crm.purchase.completed", f"c-{i}", data, time=when))
    return out


def weekly_revenue(events: list[dict[str, Any]]) -> dict[date, Decimal]:
    weeks: dict[date, Decimal] = defaultdict(Decimal)
    for e in events:
        day = datetime.fromisoformat(e["time"]).astimezone(ZONE).date()
        weeks[day - timedelta(days=day.weekday())] += D(e["data"]["amount"])
    return weeks


async def posted(reporting: Reporting, events: list[dict[str, Any]]) -> None:
    await reporting.post(events)
    first = min(datetime.fromisoformat(e["time"]).astimezone(ZONE).date() for e in events)
    async with api_client(base_url=reporting.url, timeout=10) as client:

        async def folded() -> bool:
            params = {"metrics": "orders", "granularity": "month", "from": str(first)}
            rows: list[dict[str, Any]] = (await client.get("/v1/kpis", params=params)).json()[
                "rows"
            ]
            return sum(int(r["orders"]) for r in rows) == len(events)

        await wait_until(folded, timeout=60, what="the purchases in reporting")


async def test_axes_scale_to_the_data_and_dates_speak_the_pages_language(
    reporting: Reporting, chromium: str, tmp_path: Path
) -> None:
    today = datetime.now(ZONE).date()
    events = purchases_every_five_days(today)
    await posted(reporting, events)
    this_week = today - timedelta(days=today.weekday())
    shown = [this_week - timedelta(weeks=k) for k in range(26)]  # the month view's 26 weeks
    top = max(v for w, v in weekly_revenue(events).items() if w in shown)
    pages = {
        lang: dump(
            chromium, tmp_path / lang, f"{reporting.url}/?lang={lang}&period=month#key={TEST_TOKEN}"
        )
        for lang in ("en", "zh")
    }
    for lang, page in pages.items():
        revenue, churn = figure(page, "revenue"), figure(page, "churn_rate")
        # Revenue: from 0 to a little above the best week (at most a quarter more).
        assert float(revenue["data-y-min"]) == 0, (lang, revenue)
        assert float(top) <= float(revenue["data-y-max"]) <= 1.25 * float(top), (lang, top)
        # Churn: 0 in every week with customers at its start (no one lost): a flat line on a
        # small axis, nowhere near 100 % (the old axis went to 10,000 %).
        assert int(churn["data-points"]) >= 15, (lang, churn)
        assert churn.get("data-empty") == "false", (lang, churn)
        assert 0 < float(churn["data-y-max"]) <= 0.05, (lang, churn)
        assert int(churn["data-ink"]) > 0, f"{lang}: the churn line is not drawn"
        cohorts = [row for row in page.find("tr") if "data-cohort" in row]
        assert len(cohorts) == 1, cohorts  # all three first bought in the same month
    english = figure(pages["en"], "revenue")["data-x-labels"].split("|")
    chinese = figure(pages["zh"], "revenue")["data-x-labels"].split("|")
    assert len(chinese) >= 3, chinese
    month = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    assert all(re.search(month, label) for label in english), english
    assert all(re.fullmatch(r"(\d{4}年)?\d{1,2}月(\d{1,2}日)?", x) for x in chinese), chinese
    assert "同期群留存：首购月份 × 之后月数" in pages["zh"].all_text


async def test_the_charts_end_on_the_services_today_not_the_browsers(
    reporting: Reporting, chromium: str, faketime: str, tmp_path: Path
) -> None:
    before = datetime.now(ZONE).date()
    await posted(reporting, purchases_every_five_days(before))
    # The browser's clock 3 days behind, in a zone 15-16 hours behind the service's.
    args = [faketime, "-f", "-3d", *chromium_args(chromium, tmp_path / "behind"), "--dump-dom"]
    url = f"{reporting.url}/?lang=en&period=week#key={TEST_TOKEN}"
    page = Page(run_in(TZ="America/Los_Angeles", args=[*args, url]))
    after = datetime.now(ZONE).date()
    (through,) = page.find("span", id="through")
    assert through.get("data-to") in {str(before), str(after)}, through
    for name in CHARTS:  # the week view: one point a day, the last one today
        last = figure(page, name).get("data-last-period")
        assert last in {str(before), str(after)}, (name, last, before)
