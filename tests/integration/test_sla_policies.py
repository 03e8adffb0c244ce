"""SLA policies over HTTP on a real broker and PostgreSQL: a policy changed with an effective
date applies to complaints opened from then on, a complaint opened before keeps its targets;
bad rules get 422 with the field and the reason; only admin keys change rules.

The calendar is Beijing's (Asia/Shanghai, 09:00-12:00 and 13:00-18:00, Monday to Friday,
China's public holidays: none in the days used). Deadlines are counted by hand below. The
complaints are stamped in March 2030, so that the change can take effect between them and
still lie in the future (a change never applies to the past); the service accepts events
that far ahead (FUTURE_TOLERANCE_SECONDS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.complaints.main import app as complaints_app
from services.complaints.settings import ComplaintsSettings
from shared.events import ValidationContext, validate_event
from shared.outbox import append_events
from shared.settings import CommonSettings
from tests.helpers import api_client, event, wait_until
from tooling import keys

pytestmark = pytest.mark.integration

BEIJING = ZoneInfo("Asia/Shanghai")
TEN_YEARS = 10 * 366 * 86_400
CONTEXT = ValidationContext(future_tolerance=timedelta(seconds=TEN_YEARS))
SEED = """
[[calendars]]
name = "cn-support"
zone = "Asia/Shanghai"
hours = "09:00-12:00,13:00-18:00"
country = "CN"

[[policies]]
name = "standard"
calendar = "cn-support"
first_response_hours = 4
next_response_hours = 8
resolution_hours = 16
"""
# The change takes effect on Wednesday 6 March 2030, 00:00 in Beijing.
EFFECTIVE = datetime(2030, 3, 6, tzinfo=BEIJING)


def beijing(day: int, hour: int) -> datetime:
    return datetime(2030, 3, day, hour, tzinfo=BEIJING)


@asynccontextmanager
async def complaints(settings: CommonSettings, seed: Path) -> AsyncIterator[httpx.AsyncClient]:
    values = settings.model_dump() | {
        "sla_policy_file": seed,
        "future_tolerance_seconds": TEN_YEARS,
    }
    app = complaints_app(ComplaintsSettings(**values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://complaints") as http:
            yield http


async def publish_opening(settings: CommonSettings, complaint: str, at: datetime) -> None:
    """Another system publishes a complaint's opening: straight into the complaints' log."""
    raw = event(
        "crm.complaint.opened",
        "cust-1",
        {"complaint_id": complaint, "channel": "chat", "category": "delivery"},
        time=at,
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO complaints")
            await append_events(conn, [validate_event(raw, CONTEXT)])
    finally:
        await conn.close()


async def due_dates(client: httpx.AsyncClient, complaint: str) -> dict[str, datetime]:
    """Each clock's deadline, once the complaint is folded."""

    async def folded() -> Any:
        response = await client.get(f"/v1/complaints/{complaint}")
        return response.json() if response.status_code == 200 else None

    body = await wait_until(folded, what=f"complaint {complaint} folded")
    return {c["metric"]: datetime.fromisoformat(c["due_at"]) for c in body["clocks"]}


async def issue(settings: CommonSettings, scopes: list[str]) -> str:
    """A key issued through the complaints service's own log (its relay publishes it)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO complaints")
            _, token = await keys.issue_key(
                conn, "test", scopes, secret=settings.key_signing_secret
            )
            return token
    finally:
        await conn.close()


def problem(response: httpx.Response) -> tuple[int, str, str]:
    """(status, field, message) of a one-error response."""
    (error,) = response.json()["errors"]
    return response.status_code, error["field"], error["message"]


async def test_a_policy_change_applies_to_complaints_opened_after_its_date(
    settings: CommonSettings, tmp_path: Path
) -> None:
    seed = tmp_path / "sla.toml"
    seed.write_text(SEED)
    async with complaints(settings, seed) as client:
        shown = (await client.get("/v1/sla/policies")).json()
        (calendar,) = shown["calendars"]
        assert (calendar["zone"], calendar["summary"]) == (
            "Asia/Shanghai",
            "Mon-Fri 09:00-12:00,13:00-18:00 Asia/Shanghai",
        )
        # Opened before the change, and folded before it is made.
        await publish_opening(settings, "before", beijing(5, 17))
        before = await due_dates(client, "before")

        change = {"first_response_hours": 1, "resolution_hours": 4}
        changed = await client.patch(
            "/v1/sla/policies/standard", json=change | {"effective_from": EFFECTIVE.isoformat()}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["status"] == "scheduled"
        assert changed.json()["next_response_hours"] == 8  # not given: kept
        # Opened after the change takes effect.
        await publish_opening(settings, "after", beijing(6, 11))
        after = await due_dates(client, "after")

        versions = [
            (p["effective_from"], p["resolution_hours"], p["status"])
            for p in (await client.get("/v1/sla/policies")).json()["policies"]
        ]
        assert versions == [
            ("1970-01-01T00:00:00Z", 16.0, "in_force"),
            (EFFECTIVE.astimezone(UTC).isoformat().replace("+00:00", "Z"), 4.0, "scheduled"),
        ]
        # Before: Tuesday 5 March 17:00, 4 hours to a first reply: 17-18, then Wednesday
        # 09-12: Wednesday 12:00. Resolution, 16 hours: 1 on Tuesday, 8 on Wednesday, 7 on
        # Thursday (09-12, 13-17): Thursday 17:00.
        assert before == {"first_response": beijing(6, 12), "resolution": beijing(7, 17)}
        # After: Wednesday 6 March 11:00, 1 hour: 12:00. Resolution, 4 hours: 11-12, then
        # 13-16 after lunch: Wednesday 16:00.
        assert after == {"first_response": beijing(6, 12), "resolution": beijing(6, 16)}
        # The complaint opened before is folded again from its history (a rebuild would do
        # the same): it still gets the old policy.
        assert await due_dates(client, "before") == before
        # The queue's order comes from the state the consumer stored: folded with the rules
        # committed before it (the earliest deadline of each is its first response).
        queue = (await client.get("/v1/complaints")).json()["items"]
        assert {i["complaint_id"]: datetime.fromisoformat(i["next_due_at"]) for i in queue} == {
            "before": beijing(6, 12),
            "after": beijing(6, 12),
        }


async def test_bad_rules_get_422_with_field_and_reason(
    settings: CommonSettings, tmp_path: Path
) -> None:
    seed = tmp_path / "sla.toml"
    seed.write_text(SEED)
    async with complaints(settings, seed) as client:
        bad_zone = await client.post(
            "/v1/sla/calendars", json={"name": "apac", "zone": "Asia/Beijing"}
        )
        assert problem(bad_zone) == (
            422,
            "body.zone",
            "unknown IANA time zone 'Asia/Beijing'",
        )
        bad_country = await client.post(
            "/v1/sla/calendars", json={"name": "apac", "zone": "Asia/Shanghai", "country": "XX"}
        )
        assert problem(bad_country) == (422, "body.country", "unknown country code 'XX'")
        unknown_calendar = await client.patch(
            "/v1/sla/policies/standard",
            json={"calendar": "apac", "effective_from": EFFECTIVE.isoformat()},
        )
        status, field, message = problem(unknown_calendar)
        assert (status, field) == (422, "body.calendar")
        assert message.startswith("unknown calendar 'apac'")
        first = await client.patch(
            "/v1/sla/policies/standard",
            json={"resolution_hours": 4, "effective_from": EFFECTIVE.isoformat()},
        )
        assert first.status_code == 200, first.text
        same_date = await client.patch(
            "/v1/sla/policies/standard",
            json={"resolution_hours": 8, "effective_from": EFFECTIVE.isoformat()},
        )
        status, field, message = problem(same_date)
        assert (status, field) == (422, "body.effective_from")
        assert message.startswith("overlaps the version effective from 2030-03-05T16:00:00")
        past = await client.patch(
            "/v1/sla/policies/standard",
            json={"resolution_hours": 8, "effective_from": "2020-01-01T00:00:00Z"},
        )
        assert problem(past)[:2] == (422, "body.effective_from")
        # A calendar that exists and names its zone is accepted, and a policy may use it.
        made = await client.post(
            "/v1/sla/calendars",
            json={
                "name": "apac",
                "zone": "Asia/Shanghai",
                "country": "CN",
                "working_days": ["2030-03-09"],
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["working_days"] == ["2030-03-09"]

        # Rules change with the admin scope only.
        agent = await issue(settings, ["complaints:act"])

        async def known() -> bool:
            headers = {"Authorization": f"Bearer {agent}"}
            return (await client.get("/v1/sla/policies", headers=headers)).status_code == 200

        await wait_until(known, what="the agent's key folded")
        refused = await client.patch(
            "/v1/sla/policies/standard",
            json={"resolution_hours": 1, "effective_from": "2031-01-01T00:00:00Z"},
            headers={"Authorization": f"Bearer {agent}"},
        )
        assert refused.status_code == 403
        assert "admin" in refused.json()["detail"]
