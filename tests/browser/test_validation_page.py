"""Scoring's model-validation page in a real browser: headless Chromium loads
/models/clv/validation from scoring (a process) holding the CDNOW sample, runs its script, and
the page proves what it drew: the groups it plotted (`data-drawn`), the pixels of the
predicted series' colour on its canvas (`data-ink`), and a table whose numbers are the API's
answer, fetched here separately. The numbers themselves are checked against the paper in
tests/integration/test_scoring_validation.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.scoring.projection import ScoringProjection
from shared import db
from tests.browser.test_dashboard import Page, chromium_args, png_size, run
from tests.helpers import TEST_TOKEN, ServiceProcess, api_client
from tests.integration.test_scoring_validation import (
    CALIBRATION_END,
    HOLDOUT_END,
    purchase_events,
)
from tooling.embedded import Broker, free_port, service_environment

pytestmark = pytest.mark.e2e

SPLIT = f"calibration_end={CALIBRATION_END}&holdout_end={HOLDOUT_END}"


@pytest.fixture
async def scoring(broker: Broker, database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    env = service_environment(
        broker,
        database_url,
        TIMEZONE="UTC",
        SCORING_COUNT_ZERO_VALUE_ORDERS="true",
        TOPIC_PARTITIONS="3",
    )
    service = ServiceProcess("scoring", env, tmp_path, free_port()).start()
    try:
        await service.wait_ready()
        pool = await db.create_pool(database_url, "scoring")
        try:
            async with pool.acquire() as conn, conn.transaction():
                await ScoringProjection(ZoneInfo("UTC")).store(conn, purchase_events())
        finally:
            await pool.close()
        yield service.url
    finally:
        service.stop()


async def test_the_validation_page_draws_the_models_answer(
    scoring: str, chromium: str, tmp_path: Path
) -> None:
    async with api_client() as client:
        answer = await client.get(f"{scoring}/v1/models/clv/validation?{SPLIT}")
        page_answer = await client.get(f"{scoring}/models/clv/validation")
    assert answer.status_code == 200, answer.text
    groups = answer.json()["groups"]
    assert "script-src 'self'" in page_answer.headers["content-security-policy"]

    shot = tmp_path / "validation.png"
    url = f"{scoring}/models/clv/validation?{SPLIT}#key={TEST_TOKEN}"
    run([*chromium_args(chromium, tmp_path / "shot"), f"--screenshot={shot}", url])
    assert png_size(shot) == (1400, 1700), shot
    page = Page(run([*chromium_args(chromium, tmp_path / "dom"), "--dump-dom", url]))
    body = page.find("body")[0]
    assert body.get("data-drawn") == str(len(groups)) == "8", f"not drawn; see {shot}"
    (canvas,) = page.find("canvas", id="chart")
    assert int(canvas.get("data-ink", "0")) > 500, f"no predicted line on the canvas; {shot}"
    expected = [
        (g["label"], str(g["customers"]), f"{g['actual_mean']:.3f}", f"{g['predicted_mean']:.3f}")
        for g in groups
    ]
    cells = page.all_text
    header = cells.index("Predicted mean")
    table = cells[header + 1 : header + 1 + 4 * len(groups)]
    drawn = [tuple(table[k : k + 4]) for k in range(0, len(table), 4)]
    assert drawn == expected, f"the table is not the API's answer; see {shot}"
    assert any("r 0.243" in text for text in cells), "the caption names the fitted r"
