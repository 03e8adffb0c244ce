"""API keys beyond issue and revoke, with the real broker and PostgreSQL: no negative cache
(a key issued right after a refused try works as soon as it is folded), a cache that a flood
of made-up ids cannot empty, failed authentications limited per address (429), expiry, last
use, and the headers every response carries."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import HTTPException

from services.reporting.main import app as reporting_app
from shared import db
from shared.auth import KeyRing, Principal, new_token, token_sha256
from shared.settings import CommonSettings
from tests.helpers import event, wait_until
from tests.integration.test_auth import (
    PROBES,
    all_services,
    bearer,
    issue,
    known_everywhere,
)
from tooling import cli

pytestmark = pytest.mark.integration


async def test_a_key_issued_right_after_a_refused_try_works_without_waiting_for_a_cache(
    settings: CommonSettings,
) -> None:
    made = new_token()
    token = made[1]
    # A cache of an hour: a refusal that was cached would outlive the test by far.
    async with all_services(settings, api_key_cache_seconds=3600) as clients:
        for name, client in clients.items():
            refused = await client.get(PROBES[name], headers=bearer(token))
            assert refused.status_code == 401, name
        assert await issue(settings, ["admin"], made=made) == made
        await known_everywhere(clients, token)


async def _ring_over_fresh_schema(database_url: str) -> tuple[db.Pool, KeyRing]:
    schema = f"keyring_{secrets.token_hex(4)}"
    pool = await db.create_pool(database_url, schema, min_size=1, max_size=4)
    await db.migrate(pool, schema, db.CONSUMER_MIGRATIONS)
    return pool, KeyRing(pool, "", cache_seconds=3600)


async def test_a_flood_of_made_up_key_ids_does_not_push_a_good_key_out_of_the_cache(
    database_url: str,
) -> None:
    pool, ring = await _ring_over_fresh_schema(database_url)
    key_id, token = new_token()
    try:
        await pool.execute(
            "INSERT INTO api_keys (key_id, name, scopes, token_sha256) "
            "VALUES ($1, 'good', '{reports:read}', $2)",
            key_id,
            token_sha256(token),
        )
        assert await ring.authenticate(token) == Principal(key_id, frozenset({"reports:read"}))
        for _ in range(10_001):  # more than the cache holds
            made_up = new_token()[1]
            assert not isinstance(await ring.authenticate(made_up), Principal)
    finally:
        await pool.close()
    # The database is gone now: what is still accepted comes from the cache.
    assert await ring.authenticate(token) == Principal(key_id, frozenset({"reports:read"}))
    with pytest.raises(HTTPException) as unknown:
        await ring.authenticate(new_token()[1])
    assert unknown.value.status_code == 503  # an unknown id is looked up, and cannot be


@pytest.fixture
async def reporting(settings: CommonSettings) -> AsyncIterator[Any]:
    """Reporting alone with a budget of 3 failed authentications per address, refilled so
    slowly (one per 100 minutes) that none comes back during the test."""
    values = {**settings.model_dump(), "auth_failure_burst": 3, "auth_failures_per_minute": 0.01}
    app = reporting_app(CommonSettings(**values))
    async with app.router.lifespan_context(app):
        yield app


def client_at(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://service")


async def test_an_address_over_its_failed_authentication_budget_gets_429(
    reporting: Any,
) -> None:
    async with (
        client_at(reporting, "203.0.113.7") as noisy,
        client_at(reporting, "198.51.100.9") as other,
    ):
        answers = [
            (await noisy.get("/v1/kpis/metrics", headers=bearer(new_token()[1]))).status_code
            for _ in range(4)
        ]
        assert answers == [401, 401, 401, 429]
        over = await noisy.get("/v1/kpis/metrics", headers=bearer(new_token()[1]))
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        # Another address has its own budget.
        assert (await other.get("/v1/kpis/metrics", headers=bearer("crm_x"))).status_code == 401


async def test_an_expired_key_is_refused_everywhere_saying_it_expired(
    settings: CommonSettings,
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    _, expired = await issue(settings, ["admin"], expires_at=past)
    _, current = await issue(settings, ["admin"], expires_at=past + timedelta(days=30))
    async with all_services(settings) as clients:
        await known_everywhere(clients, current)

        async def expired_everywhere() -> bool:
            for name, client in clients.items():
                answer = await client.get(PROBES[name], headers=bearer(expired))
                if answer.status_code != 401 or "expired" not in answer.json()["detail"]:
                    return False
            return True

        await wait_until(expired_everywhere, timeout=60, what="the expired key folded")


async def test_keys_list_shows_expiry_and_the_latest_use_any_service_saw(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    expires = datetime(2099, 6, 30, 12, 0, tzinfo=UTC)
    used_id, used = await issue(settings, ["reports:read"], expires_at=expires)
    idle_id, _ = await issue(settings, ["reports:read"])
    async with all_services(settings) as clients:
        before = datetime.now(UTC)
        await known_everywhere(clients, used)  # asks every service, reporting last

        async def noted() -> bool:
            conn = await asyncpg.connect(settings.database_url)
            try:
                found = await conn.fetchval(
                    "SELECT last_used_at FROM reporting.api_keys WHERE key_id = $1", used_id
                )
            finally:
                await conn.close()
            return found is not None and found >= before - timedelta(seconds=1)

        await wait_until(noted, timeout=30, what="reporting noting the key's use")
        after = datetime.now(UTC)
    capsys.readouterr()
    await cli.keys_list(settings)
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "2099-06-30 12:00" in rows[used_id]
    # Columns: ... issued (2), expires (2), last used (2), revoked (1).
    last_used = datetime.strptime(" ".join(rows[used_id].split()[-3:-1]), "%Y-%m-%d %H:%M")
    assert before.replace(second=0, microsecond=0) <= last_used.replace(tzinfo=UTC) <= after
    assert "never" in rows[idle_id]
    assert rows[idle_id].split()[-2:] == ["-", "-"]  # never used, not revoked


async def test_api_responses_are_not_stored_and_the_dashboard_has_a_strict_policy(
    settings: CommonSettings,
) -> None:
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        for client, path in (
            (clients["scoring"], "/v1/customers/c-1"),
            (clients["complaints"], "/v1/complaints"),
            (clients["reporting"], "/v1/kpis/metrics"),
            (clients["ingest"], "/v1/schemas"),
        ):
            for headers in (bearer(token), {}):  # answers and refusals alike
                answer = await client.get(path, headers=headers)
                expected = "private, no-cache" if path.startswith("/v1/kpis") else "no-store"
                assert answer.headers["cache-control"] == expected, (path, answer.status_code)
                assert answer.headers["x-content-type-options"] == "nosniff"
        page = await clients["reporting"].get("/")
        assert page.status_code == 200
        policy = dict(
            [*directive.split(" ", 1), ""][:2]
            for directive in page.headers["content-security-policy"].split("; ")
        )
        assert policy["frame-ancestors"] == "'none'"
        assert policy["script-src"] == "'self'"  # no inline script, no eval
        assert policy["default-src"] == "'none'"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        script = await clients["reporting"].get("/static/dashboard.js")
        assert script.headers["x-content-type-options"] == "nosniff"


async def test_erasing_a_customer_takes_its_own_scope(settings: CommonSettings) -> None:
    """A shop's events:write key cannot erase customers (redaction cannot be undone): 403
    naming the scope, nothing of the batch stored; a key that also holds customers:erase can."""
    _, writer = await issue(settings, ["events:write"])
    _, eraser = await issue(settings, ["events:write", "customers:erase"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, writer)
        await known_everywhere(clients, eraser)
        ingest = clients["ingest"]
        batch = [
            event("crm.customer.registered", "c-kept", {"name": "Kept Customer"}),
            event("crm.customer.erased", "c-kept", {"reason": "ticket 17"}),
        ]
        refused = await ingest.post("/v1/events", json=batch, headers=bearer(writer))
        assert refused.status_code == 403
        assert refused.json()["errors"] == [
            {
                "index": 1,
                "id": batch[1]["id"],
                "field": "type",
                "message": "erasing a customer needs the scope 'customers:erase'",
            }
        ]
        conn = await asyncpg.connect(settings.database_url)
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM ingest.events WHERE subject = 'c-kept'"
            )
        finally:
            await conn.close()
        assert stored == 0  # all or nothing: the registration was not stored either
        allowed = await ingest.post("/v1/events", json=batch, headers=bearer(eraser))
        assert allowed.status_code == 202, allowed.text
