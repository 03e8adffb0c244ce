"""API keys: issue, check, and fold, the same way in every service.

A token reads `crm_<key id>_<secret>`. Services keep only SHA-256 of the whole token (the
secret is 256 random bits, so a fast hash is enough: there is nothing to brute-force, unlike
a password; GitHub and Stripe tokens are stored the same way). The key id in the token finds
the row; the hashes are compared in constant time (`hmac.compare_digest`).

Keys travel as `crm.apikey.issued` / `crm.apikey.revoked` events on crm.keys: `crm keys`
writes them into ingest's event store, the relay publishes them, and the consumer runtime of
every service folds them into that service's own `api_keys` table.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from shared.db import Connection, Pool
from shared.events import (
    SCOPES,
    ApiKeyIssued,
    Event,
    FieldError,
)
from shared.http import ErrorBody
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

ADMIN = "admin"  # holds every scope
BOOTSTRAP_KEY_ID = "bootstrap"  # the key of ADMIN_KEY_SHA256
_TOKEN = re.compile(r"^crm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_CACHE_LIMIT = 10_000  # keys remembered; beyond it the least recently used is forgotten
ADDRESS_LIMIT = 10_000  # client addresses whose failed authentications are counted
# How often a service writes a key's last use (per key and instance): a write per request
# would cost more than the request.
LAST_USED_EVERY = timedelta(minutes=1)
LOOKUP_TIMEOUT_SECONDS = 2.0
_NO_HASH = "0" * 64  # compared against when a key is unknown, so timing tells nothing

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No API key, or not a valid one (the detail "
        "says whether it is unknown, revoked or expired).",
    },
    403: {"model": ErrorBody, "description": "The key lacks the scope this operation needs."},
    429: {
        "model": ErrorBody,
        "description": "Too many failed authentications from this address; retry after "
        "Retry-After seconds.",
    },
    503: {
        "model": ErrorBody,
        "description": "The key store (the database) cannot be read now; retry after "
        "Retry-After seconds.",
    },
}

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="crm_<key id>_<secret>",
    description="An API key issued with `crm keys create`: `Authorization: Bearer <key>`.",
)


def new_token() -> tuple[str, str]:
    """A fresh key: (key id, token). The token is shown once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"crm_{key_id}_{secrets.token_urlsafe(32)}"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key and what it may do."""

    key_id: str
    scopes: frozenset[str]
    rate_limit: float | None = None

    def may(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes


@dataclass(frozen=True)
class Refusal:
    """Why a token is not accepted (said in the 401)."""

    reason: str


UNKNOWN = Refusal("the API key is not valid (unknown, revoked or mistyped)")
EXPIRED = Refusal("the API key has expired")


@dataclass
class _StoredKey:
    principal: Principal
    token_sha256: str
    expires_at: datetime | None
    last_used_at: datetime | None  # as this instance last wrote or read it
    looked_up: float  # time.monotonic() of the lookup


class TokenBuckets:
    """Token buckets by key (the token bucket of Turner, 1986; RFC 2697 with one bucket),
    at most `limit` of them, least recently used first in line for eviction.

    A full bucket is what an unknown key starts with, so forgetting one changes nothing:
    eviction takes full buckets among the oldest. Only when none of those is full (a flood
    of new keys, each in debt) is the oldest forgotten anyway: memory stays bounded, and a
    forgotten key is no better off than a new one."""

    EVICTION_SCAN = 64  # oldest buckets looked at per eviction: O(1), not O(limit)

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # key -> (tokens, monotonic time of `tokens`, rate, capacity)
        self._buckets: OrderedDict[str, tuple[float, float, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str, cost: float, rate: float, capacity: float, now: float) -> float:
        """Seconds until `cost` fits (0: now), without taking it. A cost over the capacity
        fits a full bucket (and leaves it in debt): the long-run rate still holds."""
        tokens = self._tokens(key, capacity, now)
        if cost <= tokens or tokens >= capacity:
            return 0.0
        return (min(cost, capacity) - tokens) / rate

    def take(self, key: str, cost: float, rate: float, capacity: float, now: float) -> float:
        """Charge `cost` if it fits and return 0, else the seconds until it does."""
        waiting = self.wait(key, cost, rate, capacity, now)
        tokens = self._tokens(key, capacity, now) - (cost if waiting == 0 else 0)
        if key not in self._buckets and len(self._buckets) >= self._limit:
            self._evict(now)
        self._buckets[key] = (tokens, now, rate, capacity)
        self._buckets.move_to_end(key)
        return waiting

    def _tokens(self, key: str, capacity: float, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return capacity
        tokens, at, rate, _ = found
        return min(capacity, tokens + (now - at) * rate)

    def _evict(self, now: float) -> None:
        for scanned, (key, (tokens, at, rate, capacity)) in enumerate(self._buckets.items()):
            if tokens + (now - at) * rate >= capacity:
                del self._buckets[key]  # and stop iterating at once
                return
            if scanned + 1 >= self.EVICTION_SCAN:
                break
        self._buckets.popitem(last=False)


# ---- signed key events ----------------------------------------------------------------------
# A key event is honoured only with a valid signature: an HMAC-SHA256 (RFC 2104) of the event's
# canonical JSON (sorted keys, the bytes the event store keeps) without the signature, under
# KEY_SIGNING_SECRET, carried in a CloudEvents extension attribute. So whoever can write to
# crm.keys (a service's relay, a misconfigured ACL) still cannot mint or revoke a key.

SIGNATURE_ATTRIBUTE = "crmsignature"


def key_event_signature(body: dict[str, Any], secret: str) -> str:
    unsigned = {name: value for name, value in body.items() if name != SIGNATURE_ATTRIBUTE}
    canonical = orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def key_event_refusal(event: Event, secret: SecretStr | None) -> FieldError | None:
    """Why a key event read from crm.keys must not be honoured, or None when it may."""
    if secret is None:
        return FieldError(SIGNATURE_ATTRIBUTE, "KEY_SIGNING_SECRET is not set: no key is honoured")
    claimed = (event.envelope.model_extra or {}).get(SIGNATURE_ATTRIBUTE)
    if not isinstance(claimed, str):
        return FieldError(SIGNATURE_ATTRIBUTE, "a key event must be signed")
    expected = key_event_signature(event.to_json_dict(), secret.get_secret_value())
    if not hmac.compare_digest(claimed, expected):
        return FieldError(SIGNATURE_ATTRIBUTE, "the signature does not match (forged or altered)")
    return None


# ---- folding crm.keys (called by the consumer runtime in the read model's transaction) ----


async def store_key_events(conn: Connection, events: Sequence[Event]) -> None:
    for event in events:
        if isinstance(event.data, ApiKeyIssued):
            await conn.execute(
                "INSERT INTO api_keys "
                "(key_id, name, scopes, token_sha256, rate_limit, issued_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (key_id) DO UPDATE SET name = EXCLUDED.name, "
                "scopes = EXCLUDED.scopes, token_sha256 = EXCLUDED.token_sha256, "
                "rate_limit = EXCLUDED.rate_limit, issued_at = EXCLUDED.issued_at, "
                "expires_at = EXCLUDED.expires_at "
                "WHERE api_keys.token_sha256 IS NULL",  # an id is issued once
                event.subject,
                event.data.name,
                list(event.data.scopes),
                event.data.token_sha256,
                event.data.rate_limit,
                event.time,
                event.data.expires_at,
            )
        else:
            await conn.execute(
                "INSERT INTO api_keys (key_id, revoked_at) VALUES ($1, $2) "
                "ON CONFLICT (key_id) DO UPDATE "
                "SET revoked_at = LEAST(api_keys.revoked_at, EXCLUDED.revoked_at)",
                event.subject,
                event.time,
            )


# ---- checking a request ---------------------------------------------------------------------


class KeyRing:
    """The keys a service accepts: its `api_keys` table behind a short cache, plus the
    bootstrap admin key of the settings.

    Only keys found are cached (least recently used forgotten first): an unknown id is looked
    up each time, so a key issued a moment after a refused try works as soon as it is folded,
    and a flood of made-up ids cannot push good keys out. What bounds the lookups of unknown
    ids is the per-address limit on failed authentications (`require`)."""

    def __init__(self, pool: Pool, admin_key_sha256: str, cache_seconds: float) -> None:
        self._pool = pool
        self._admin_key_sha256 = admin_key_sha256
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, _StoredKey] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()  # last-used writes in flight

    async def authenticate(self, token: str, *, look_up: bool = True) -> Principal | Refusal:
        """The key's principal, or why it is refused. With `look_up` False only the cache is
        asked (the caller's address is over its failed-authentication budget)."""
        digest = token_sha256(token)
        if self._admin_key_sha256 and hmac.compare_digest(digest, self._admin_key_sha256):
            return Principal(BOOTSTRAP_KEY_ID, frozenset({ADMIN}))
        match = _TOKEN.match(token)
        stored = None
        if match is not None:
            stored = self._cached(match.group(1))
            if stored is None and look_up:
                stored = await self._lookup(match.group(1))
        expected = stored.token_sha256 if stored is not None else _NO_HASH
        if not hmac.compare_digest(digest, expected) or stored is None:
            return UNKNOWN
        now = datetime.now(UTC)
        if stored.expires_at is not None and stored.expires_at <= now:
            return EXPIRED
        self._note_use(stored, now)
        return stored.principal

    def _cached(self, key_id: str) -> _StoredKey | None:
        found = self._cache.get(key_id)
        if found is None:
            return None
        if time.monotonic() - found.looked_up >= self._cache_seconds:
            del self._cache[key_id]
            return None
        self._cache.move_to_end(key_id)
        return found

    async def _lookup(self, key_id: str) -> _StoredKey | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT scopes, token_sha256, rate_limit, expires_at, last_used_at "
                "FROM api_keys "
                "WHERE key_id = $1 AND revoked_at IS NULL AND token_sha256 IS NOT NULL",
                key_id,
                timeout=LOOKUP_TIMEOUT_SECONDS,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            # Fail closed, but as what it is: the database is away, not the key wrong.
            log.warning("cannot look up an API key", extra={"error": type(error).__name__})
            raise HTTPException(
                503, "the key store cannot be read now; retry", headers={"Retry-After": "2"}
            ) from None
        if row is None:
            return None
        found = _StoredKey(
            Principal(key_id, frozenset(row["scopes"]), row["rate_limit"]),
            row["token_sha256"],
            row["expires_at"],
            row["last_used_at"],
            time.monotonic(),
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.popitem(last=False)
        self._cache[key_id] = found
        return found

    def _note_use(self, stored: _StoredKey, now: datetime) -> None:
        """Write the key's last use in this service's `api_keys`, at most once a minute per
        key here: in the background, so a slow database does not slow the request."""
        if stored.last_used_at is not None and now - stored.last_used_at < LAST_USED_EVERY:
            return
        stored.last_used_at = now
        write = asyncio.create_task(self._write_last_use(stored.principal.key_id, now))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write_last_use(self, key_id: str, now: datetime) -> None:
        try:
            await self._pool.execute(
                "UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1 "
                "AND (last_used_at IS NULL OR last_used_at < $2)",
                key_id,
                now,
                timeout=LOOKUP_TIMEOUT_SECONDS,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            # Last use is a hint for whoever prunes keys: a lost write is caught up next time.
            log.warning("cannot note an API key's use", extra={"error": type(error).__name__})


def api_router(scope: str, **options: Any) -> APIRouter:
    """A service's /v1 router: every route asks for a key holding `scope` (401/403 as
    documented in AUTH_ERRORS)."""
    return APIRouter(
        prefix="/v1", dependencies=[Depends(require(scope))], responses=AUTH_ERRORS, **options
    )


@functools.cache  # one dependency per scope: FastAPI then checks a key once per request
def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency: the caller's key, which must hold `scope` (or admin)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def authorised(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorised("no API key: send `Authorization: Bearer <key>`")
        res = request.app.state.resources  # shared.service.Resources (which imports this)
        ring: KeyRing = res.keys
        failures: FailedAuthentications = res.failed_authentications
        address = request.client.host if request.client else "unknown"
        wait = failures.wait(address)
        verdict = await ring.authenticate(credentials.credentials, look_up=wait == 0)
        if isinstance(verdict, Refusal):
            # The key id, never the token: enough to find who mistyped or kept a revoked key.
            match = _TOKEN.match(credentials.credentials)
            log.info(
                "request refused: key not valid",
                extra={
                    "key_id": match.group(1) if match else None,
                    "path": request.url.path,
                    "reason": verdict.reason,
                    "throttled": wait > 0,
                },
            )
            if wait > 0:
                raise HTTPException(
                    429,
                    "too many failed authentications from this address; retry after "
                    "Retry-After seconds",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            failures.fail(address)
            raise _unauthorised(verdict.reason)
        if not verdict.may(scope):
            log.info(
                "request refused: missing scope",
                extra={"key_id": verdict.key_id, "scope": scope, "path": request.url.path},
            )
            raise HTTPException(403, f"the key lacks the scope '{scope}'")
        request.state.principal = verdict
        return verdict

    authorised.__name__ = f"require_{scope.replace(':', '_')}"
    return authorised


class FailedAuthentications:
    """Failed authentications per client address, a token bucket each: AUTH_FAILURE_BURST at
    once, then AUTH_FAILURES_PER_MINUTE. An address over it gets 429 for any key not already
    cached, without a database lookup: a flood of made-up keys costs the database little."""

    def __init__(self, settings: CommonSettings) -> None:
        self._rate = settings.auth_failures_per_minute / 60
        self._capacity = float(settings.auth_failure_burst)
        self._buckets = TokenBuckets(ADDRESS_LIMIT)

    def wait(self, address: str) -> float:
        """Seconds until this address may fail again (0: now)."""
        return self._buckets.wait(address, 1, self._rate, self._capacity, time.monotonic())

    def fail(self, address: str) -> None:
        self._buckets.take(address, 1, self._rate, self._capacity, time.monotonic())


def _unauthorised(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer realm="crm"'})
