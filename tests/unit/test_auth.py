"""API keys and the ingest rate limit, pure parts: token format, scopes, token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.domain import take
from shared.auth import ADMIN, Principal, new_token, token_sha256
from shared.events import SCOPES, ApiKeyIssued


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


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    bucket, wait = take(None, 100, rate=10, capacity=100, now=0.0)
    assert (wait, bucket.tokens) == (0, 0)
    bucket, wait = take(bucket, 10, rate=10, capacity=100, now=0.5)
    assert wait == pytest.approx(0.5)  # 5 tokens back, 5 more needed at 10/s
    assert bucket.tokens == pytest.approx(5)
    bucket, wait = take(bucket, 10, rate=10, capacity=100, now=1.0)
    assert (wait, bucket.tokens) == (0, pytest.approx(0))


def test_a_refused_charge_takes_nothing() -> None:
    bucket, _ = take(None, 3, rate=1, capacity=5, now=0.0)
    after, wait = take(bucket, 4, rate=1, capacity=5, now=0.0)
    assert after.tokens == 2
    assert wait == pytest.approx(2.0)


def test_a_charge_over_capacity_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    bucket, _ = take(None, 4, rate=1, capacity=5, now=0.0)
    refused, wait = take(bucket, 8, rate=1, capacity=5, now=0.0)
    assert wait == pytest.approx(4.0)  # until the bucket is full, not forever
    passed, wait = take(refused, 8, rate=1, capacity=5, now=4.0)
    assert (wait, passed.tokens) == (0, pytest.approx(-3))
    _, wait = take(passed, 1, rate=1, capacity=5, now=5.0)
    assert wait == pytest.approx(3.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.floats(0, 3, allow_nan=False)), min_size=1, max_size=60
    )
)
def test_no_more_than_capacity_plus_rate_times_time_gets_through(
    requests: list[tuple[int, float]],
) -> None:
    rate, capacity, largest = 10.0, 40.0, 50
    now, passed, bucket = 0.0, 0, None
    for cost, gap in requests:
        now += gap
        bucket, wait = take(bucket, cost, rate, capacity, now)
        if wait == 0:
            passed += cost
    # a charge over the capacity may pass on a full bucket: at most largest - capacity more
    assert passed <= capacity + rate * now + (largest - capacity) + 1e-6
