"""API keys and the ingest rate limit, pure parts: token format, scopes, token bucket."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from shared.auth import (
    ADMIN,
    Principal,
    TokenBuckets,
    key_event_refusal,
    new_token,
    token_sha256,
)
from shared.events import RECORDED, SCOPES, ApiKeyIssued, validate_event


def test_tokens_are_unique_and_carry_their_key_id() -> None:
    issued = [new_token() for _ in range(1000)]
    assert len({token for _, token in issued}) == 1000
    for key_id, token in issued[:10]:
        assert token.startswith(f"crm_{key_id}_")
        assert len(token_sha256(token)) == 64


def test_admin_holds_every_scope_and_others_only_their_own() -> None:
    admin = Principal("k", frozenset({ADMIN}))
    reader = Principal("k", frozenset({"reports:read"}))
    assert all(admin.may(scope) for scope in SCOPES)
    assert reader.may("reports:read")
    assert not reader.may("events:write")
    assert not reader.may(ADMIN)


def test_an_issued_key_event_holds_a_hash_and_known_scopes_only() -> None:
    digest = token_sha256("x")
    ApiKeyIssued(name="n", scopes=["reports:read"], token_sha256=digest)
    with pytest.raises(ValueError, match="scopes"):
        ApiKeyIssued(name="n", scopes=["root"], token_sha256=digest)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="token_sha256"):
        ApiKeyIssued(name="n", scopes=["admin"], token_sha256="crm_0123_secret")


SECRET = SecretStr("k" * 32)


def _key_event(**extra: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": "apikey:00ff00ff00ff00ff:issued",
        "source": "crm/keys",
        "type": "crm.apikey.issued",
        "time": "2026-11-30T10:00:00Z",
        "subject": "00ff00ff00ff00ff",
        "datacontenttype": "application/json",
        "data": {"name": "n", "scopes": ["admin"], "token_sha256": "ab" * 32},
        **extra,
    }


def _hmac(body: dict[str, object], secret: str) -> str:
    """RFC 2104 HMAC-SHA256 of the JSON with sorted keys, computed here independently."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def test_a_key_event_is_honoured_only_with_the_signature_of_the_secret() -> None:
    body = _key_event()
    signed = validate_event({**body, "crmsignature": _hmac(body, "k" * 32)}, RECORDED)
    assert key_event_refusal(signed, SECRET) is None
    unsigned = validate_event(body, RECORDED)
    assert key_event_refusal(unsigned, SECRET) is not None
    other = validate_event({**body, "crmsignature": _hmac(body, "o" * 32)}, RECORDED)
    assert key_event_refusal(other, SECRET) is not None
    assert key_event_refusal(signed, None) is not None  # no secret: nothing is honoured
    altered = dict(body, data={**body["data"], "scopes": ["reports:read"]})  # type: ignore[dict-item]
    moved = validate_event({**altered, "crmsignature": _hmac(body, "k" * 32)}, RECORDED)
    refusal = key_event_refusal(moved, SECRET)
    assert refusal is not None
    assert refusal.field == "crmsignature"


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    buckets = TokenBuckets(10)
    assert buckets.take("k", 100, rate=10, capacity=100, now=0.0) == 0
    # 5 tokens back after 0.5 s, 5 more needed at 10/s
    assert buckets.take("k", 10, rate=10, capacity=100, now=0.5) == pytest.approx(0.5)
    assert buckets.take("k", 10, rate=10, capacity=100, now=1.0) == 0
    assert buckets.wait("k", 1, rate=10, capacity=100, now=1.0) == pytest.approx(0.1)


def test_a_refused_charge_takes_nothing() -> None:
    buckets = TokenBuckets(10)
    buckets.take("k", 3, rate=1, capacity=5, now=0.0)
    assert buckets.take("k", 4, rate=1, capacity=5, now=0.0) == pytest.approx(2.0)
    assert buckets.take("k", 2, rate=1, capacity=5, now=0.0) == 0  # the 2 left are still there


def test_a_charge_over_capacity_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    buckets = TokenBuckets(10)
    buckets.take("k", 4, rate=1, capacity=5, now=0.0)
    assert buckets.take("k", 8, rate=1, capacity=5, now=0.0) == pytest.approx(4.0)
    assert buckets.take("k", 8, rate=1, capacity=5, now=4.0) == 0  # full: passes, 3 in debt
    assert buckets.take("k", 1, rate=1, capacity=5, now=5.0) == pytest.approx(3.0)


def test_waiting_does_not_take() -> None:
    buckets = TokenBuckets(10)
    for _ in range(3):
        assert buckets.wait("k", 5, rate=1, capacity=5, now=0.0) == 0
    assert buckets.take("k", 5, rate=1, capacity=5, now=0.0) == 0
    assert buckets.wait("k", 1, rate=1, capacity=5, now=0.0) == pytest.approx(1.0)


def test_a_flood_of_new_keys_evicts_full_buckets_not_one_in_debt() -> None:
    buckets = TokenBuckets(100)
    buckets.take("debtor", 5, rate=1, capacity=5, now=0.0)  # empty: 5 s to refill
    for n in range(1000):
        buckets.take(f"new-{n}", 1, rate=1000, capacity=1, now=0.001 * n)
        assert len(buckets) <= 100
    # Each newcomer's bucket was full again a millisecond later: those went, the debtor stayed.
    assert buckets.wait("debtor", 1, rate=1, capacity=5, now=1.0) == pytest.approx(0.0)
    assert buckets.take("debtor", 5, rate=1, capacity=5, now=1.0) == pytest.approx(4.0)


def test_when_every_bucket_is_in_debt_the_least_recently_used_goes() -> None:
    buckets = TokenBuckets(3)
    for key in ("a", "b", "c"):
        buckets.take(key, 5, rate=1, capacity=5, now=0.0)
    buckets.take("a", 1, rate=1, capacity=5, now=0.0)  # refused, but "a" is the latest used
    buckets.take("d", 5, rate=1, capacity=5, now=0.0)
    assert len(buckets) == 3
    assert buckets.wait("b", 5, rate=1, capacity=5, now=0.0) == 0  # forgotten: full again
    assert buckets.wait("a", 5, rate=1, capacity=5, now=0.0) == pytest.approx(5.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.floats(0, 3, allow_nan=False)), min_size=1, max_size=60
    )
)
def test_no_more_than_capacity_plus_rate_times_time_gets_through(
    requests: list[tuple[int, float]],
) -> None:
    rate, capacity, largest = 10.0, 40.0, 50
    now, passed, buckets = 0.0, 0, TokenBuckets(10)
    for cost, gap in requests:
        now += gap
        if buckets.take("k", cost, rate, capacity, now) == 0:
            passed += cost
    # a charge over the capacity may pass on a full bucket: at most largest - capacity more
    assert passed <= capacity + rate * now + (largest - capacity) + 1e-6
