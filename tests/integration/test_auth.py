"""API keys on every service, with the real broker and PostgreSQL: keys issued with `crm keys`
travel through ingest's event store and crm.keys to every service; 401 without a valid key,
403 without the scope, revocation everywhere, and ingest's per-key rate limit (429)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException

from services.complaints.main import app as complaints_app
from services.complaints.settings import ComplaintsSettings
from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from services.reporting.main import app as reporting_app
from services.scoring.main import app as scoring_app
from services.scoring.settings import ScoringSettings
from shared import auth, kafka
from shared.auth import KeyRing
from shared.events import Topic
from shared.outbox import open_event_store, relay_headers
from shared.settings import CommonSettings
from tests.helpers import (
    AUTH,
    event,
    mistyped,
    produce_with_headers,
    purchase,
    read_topic,
    wait_until,
)
from tooling import cli, keys
from tooling.embedded import free_port

pytestmark = pytest.mark.integration

# The scope each service's API asks for (scoring's model fit: admin).
SCOPE = {
    "ingest": "events:write",
    "scoring": "customers:read",
    "complaints": "complaints:act",
    "reporting": "reports:read",
}
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
Factory = Callable[[Any], FastAPI]
APPS: dict[str, tuple[Factory, type[CommonSettings]]] = {
    "ingest": (ingest_app, IngestSettings),
    "scoring": (scoring_app, ScoringSettings),
    "complaints": (complaints_app, ComplaintsSettings),
    "reporting": (reporting_app, CommonSettings),
}


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


@contextlib.asynccontextmanager
async def all_services(
    settings: CommonSettings, **overrides: Any
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    # Tests poll with keys not yet folded and try wrong keys, all from one address: more
    # failures than the default budget per address (429 past it: test_auth_keys.py).
    values = {
        **settings.model_dump(),
        "api_key_cache_seconds": 0.2,
        "auth_failure_burst": 1_000_000,
        **overrides,
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, (factory, settings_type) in APPS.items():
            clients[name] = await stack.enter_async_context(
                running(factory(settings_type(**values)))
            )
        yield clients


async def issue(settings: CommonSettings, scopes: list[str], **options: Any) -> tuple[str, str]:
    pool = await open_event_store(settings.database_url)
    try:
        async with pool.acquire() as conn, conn.transaction():
            return await keys.issue_key(
                conn, "test", scopes, **options, secret=settings.key_signing_secret
            )
    finally:
        await pool.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operations(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path with its parameters filled, scope) of every documented operation."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            concrete = re.sub(r"\{[^}]+\}", "x-1", path)
            secured = "security" in operation
            found.append((method.upper(), concrete, "secured" if secured else None))
    return found


# A read each service answers to any valid key with the scope (admin holds every scope).
PROBES = {
    "ingest": "/v1/schemas",
    "scoring": "/v1/segments",
    "complaints": "/v1/alerts",
    "reporting": "/v1/kpis/metrics",
}


async def known_everywhere(clients: dict[str, httpx.AsyncClient], token: str) -> None:
    """Wait until every service knows the key (answers anything but 401 to it)."""

    async def known() -> bool:
        for name, client in clients.items():
            if (await client.get(PROBES[name], headers=bearer(token))).status_code == 401:
                return False
        return True

    await wait_until(known, timeout=60, what="the key folded by every service")


async def test_every_api_but_health_and_metrics_asks_for_a_key_and_its_scope(
    settings: CommonSettings,
) -> None:
    reader_id, reader = await issue(settings, ["reports:read"])
    _, customers = await issue(settings, ["customers:read"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, reader)
        await known_everywhere(clients, customers)
        checked = 0
        for name, client in clients.items():
            app = client._transport.app  # type: ignore[attr-defined]
            for method, path, secured in operations(app):
                if path in OPEN_PATHS:
                    assert secured is None, f"{name} {path} should be open"
                    continue
                assert secured, f"{name} {method} {path} is not documented as secured"
                plain = await client.request(method, path)
                assert plain.status_code == 401, (name, method, path, plain.text)
                assert plain.headers["www-authenticate"].startswith("Bearer")
                assert plain.json()["detail"].startswith("no API key")
                for wrong in ("nope", mistyped(reader), f"crm_{reader_id}_" + "x" * 43):
                    refused = await client.request(method, path, headers=bearer(wrong))
                    assert refused.status_code == 401, (name, method, path, wrong)
                scope = "admin" if path == "/v1/models/clv/fit" else SCOPE[name]
                lacking = customers if scope in ("reports:read", "admin") else reader
                forbidden = await client.request(method, path, headers=bearer(lacking))
                assert forbidden.status_code == 403, (name, method, path, forbidden.text)
                assert scope in forbidden.json()["detail"]
                allowed = await client.request(method, path, headers=AUTH)
                assert allowed.status_code not in (401, 403), (name, method, path)
                checked += 1
        assert checked >= 20  # every service's routes were reached


async def test_a_revoked_key_is_refused_everywhere_and_listed_as_revoked(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        assert (
            await clients["reporting"].get("/v1/kpis/metrics", headers=bearer(token))
        ).is_success
        # The holder tries to take the revocation's identity first: under the key source it
        # is refused (reserved), under its own it is an ordinary event of another identity.
        for source, status in (("crm/keys", 422), ("pre-empt", 202)):
            squat = purchase("cust-squat", "1.00")
            squat.update(source=source, id=f"apikey:{key_id}:revoked")
            posted = await clients["ingest"].post("/v1/events", json=squat, headers=bearer(token))
            assert posted.status_code == status, posted.text
        await cli.keys_revoke(settings, key_id, "left the company")

        async def refused_everywhere() -> bool:
            answers = [
                (await client.get("/v1/alerts", headers=bearer(token))).status_code
                for name, client in clients.items()
                if name in ("complaints", "reporting")
            ]
            answers.append(
                (await clients["ingest"].get("/v1/schemas", headers=bearer(token))).status_code
            )
            return set(answers) == {401}

        await wait_until(refused_everywhere, timeout=60, what="the revocation everywhere")
    await cli.keys_list(settings)
    listing = capsys.readouterr().out
    (line,) = [row for row in listing.splitlines() if row.startswith(key_id)]
    assert line.split()[-2:] != ["-"], line  # a revocation time, not "-"
    assert token not in listing
    assert keys.token_sha256(token) not in listing


async def test_ingest_limits_each_key_to_its_rate(settings: CommonSettings) -> None:
    key_id, slow = await issue(settings, ["events:write"], rate_limit=1)
    async with all_services(settings, max_batch=10, rate_limit_events_per_second=1000) as clients:
        await known_everywhere(clients, slow)
        ingest = clients["ingest"]
        burst = [purchase(f"rate-{i}", "1.00") for i in range(10)]
        assert (
            await ingest.post("/v1/events", json=burst, headers=bearer(slow))
        ).status_code == 202
        over = await ingest.post(
            "/v1/events", json=[purchase("rate-x", "1.00")], headers=bearer(slow)
        )
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
        assert "over its rate" in over.json()["detail"]
        assert key_id not in over.text  # a key id is half of a token: not echoed
        other = await ingest.post("/v1/events", json=[purchase("rate-y", "1.00")], headers=AUTH)
        assert other.status_code == 202  # another key's budget is its own
        stored = await ingest.get("/v1/schemas", headers=bearer(slow))
        assert stored.status_code == 200  # reads are not charged
    conn = await asyncpg.connect(settings.database_url)
    try:
        ids = {r["subject"] for r in await conn.fetch("SELECT subject FROM ingest.events")}
    finally:
        await conn.close()
    assert "rate-x" not in ids
    assert {"rate-y", "rate-9"} <= ids


async def test_key_events_cannot_be_posted(settings: CommonSettings) -> None:
    forged = event(
        "crm.apikey.issued",
        "k-forged",
        {"name": "mine", "scopes": ["admin"], "token_sha256": "0" * 64},
    )
    async with all_services(settings) as clients:
        response = await clients["ingest"].post("/v1/events", json=forged, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "type"
    assert "crm keys" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("signing", ["unsigned", "another secret"])
async def test_a_writer_of_crm_keys_cannot_mint_a_key(
    settings: CommonSettings, signing: str
) -> None:
    """A key-issued event for a token of our own, published straight to crm.keys with the
    headers a relay writes (as a service whose credentials leaked could): every service
    dead-letters it and refuses the token; a key issued by `crm keys` works meanwhile."""
    key_id, token = auth.new_token()
    forged = event(
        "crm.apikey.issued",
        key_id,
        {"name": "mine", "scopes": ["admin"], "token_sha256": keys.token_sha256(token)},
        event_id=f"apikey:{key_id}:issued",
    )
    forged["source"] = "crm/keys"
    if signing == "another secret":
        forged["crmsignature"] = hmac.new(
            b"x" * 32, orjson.dumps(forged, option=orjson.OPT_SORT_KEYS), hashlib.sha256
        ).hexdigest()
    await kafka.ensure_topics(settings)
    await produce_with_headers(
        settings.kafka_bootstrap_servers,
        Topic.KEYS,
        orjson.dumps(forged),
        key=key_id.encode(),
        headers=relay_headers("ingest", 10**9, 1),
    )
    _, good = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, good)

        async def dead_lettered_by_all() -> bool:
            letters = await read_topic(settings.kafka_bootstrap_servers, Topic.DEADLETTER)
            refused = {
                dict(r.headers)["crm-consumer"].decode()
                for r in letters
                if r.key == key_id.encode() and b"crmsignature" in dict(r.headers)["crm-error"]
            }
            return refused >= {"ingest-archive", "scoring", "complaints", "reporting"}

        await wait_until(dead_lettered_by_all, timeout=60, what="the forged key dead-lettered")
        for name, client in clients.items():
            answer = await client.get(PROBES[name], headers=bearer(token))
            assert answer.status_code == 401, (name, answer.status_code)


async def test_a_key_store_that_cannot_be_read_answers_503_not_500() -> None:
    down = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", min_size=0
    )
    try:
        ring = KeyRing(down, "", cache_seconds=5)
        with pytest.raises(HTTPException) as refused:
            await ring.authenticate(f"crm_{'0' * 16}_{'a' * 43}")
    finally:
        await down.close()
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "2"}
