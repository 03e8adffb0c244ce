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

import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

ADMIN = "admin"  # holds every scope
BOOTSTRAP_KEY_ID = "bootstrap"  # the key of ADMIN_KEY_SHA256
_TOKEN = re.compile(r"^crm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_CACHE_LIMIT = 10_000  # distinct key ids remembered before the cache starts afresh
LOOKUP_TIMEOUT_SECONDS = 2.0
_NO_HASH = "0" * 64  # compared against when a key is unknown, so timing tells nothing

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or not a valid one."},
    403: {"model": ErrorBody, "description": "The key lacks the scope this operation needs."},
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
class _StoredKey:
    principal: Principal
    token_sha256: str


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
                "(key_id, name, scopes, token_sha256, rate_limit, issued_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (key_id) DO UPDATE SET name = EXCLUDED.name, "
                "scopes = EXCLUDED.scopes, token_sha256 = EXCLUDED.token_sha256, "
                "rate_limit = EXCLUDED.rate_limit, issued_at = EXCLUDED.issued_at "
                "WHERE api_keys.token_sha256 IS NULL",  # an id is issued once
                event.subject,
                event.data.name,
                list(event.data.scopes),
                event.data.token_sha256,
                event.data.rate_limit,
                event.time,
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
    bootstrap admin key of the settings."""

    def __init__(self, pool: Pool, admin_key_sha256: str, cache_seconds: float) -> None:
        self._pool = pool
        self._admin_key_sha256 = admin_key_sha256
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, _StoredKey | None]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        digest = token_sha256(token)
        if self._admin_key_sha256 and hmac.compare_digest(digest, self._admin_key_sha256):
            return Principal(BOOTSTRAP_KEY_ID, frozenset({ADMIN}))
        match = _TOKEN.match(token)
        stored = await self._lookup(match.group(1)) if match else None
        expected = stored.token_sha256 if stored is not None else _NO_HASH
        if hmac.compare_digest(digest, expected) and stored is not None:
            return stored.principal
        return None

    async def _lookup(self, key_id: str) -> _StoredKey | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            row = await self._pool.fetchrow(
                "SELECT scopes, token_sha256, rate_limit FROM api_keys "
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
        found = (
            None
            if row is None
            else _StoredKey(
                Principal(key_id, frozenset(row["scopes"]), row["rate_limit"]),
                row["token_sha256"],
            )
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key_id] = (now, found)
        return found


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
        ring: KeyRing = request.app.state.resources.keys
        principal = await ring.authenticate(credentials.credentials)
        if principal is None:
            # The key id, never the token: enough to find who mistyped or kept a revoked key.
            match = _TOKEN.match(credentials.credentials)
            log.info(
                "request refused: key not valid",
                extra={"key_id": match.group(1) if match else None, "path": request.url.path},
            )
            raise _unauthorised("the API key is not valid (unknown, revoked or mistyped)")
        if not principal.may(scope):
            log.info(
                "request refused: missing scope",
                extra={"key_id": principal.key_id, "scope": scope, "path": request.url.path},
            )
            raise HTTPException(403, f"the key lacks the scope '{scope}'")
        request.state.principal = principal
        return principal

    authorised.__name__ = f"require_{scope.replace(':', '_')}"
    return authorised


def _unauthorised(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer realm="crm"'})
