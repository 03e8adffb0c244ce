"""HTTP caching of the read models, over the real broker and PostgreSQL: every successful GET
of /v1 carries an ETag, a request naming it in If-None-Match gets 304 with no body while the
model is unchanged, and 200 with a new tag once an event changed it. Personal data stays
`no-store`; reporting (aggregates only) lets a browser keep and revalidate its answers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from shared.settings import CommonSettings
from tests.helpers import purchase, wait_until
from tests.integration.test_auth import all_services, bearer, issue, known_everywhere

pytestmark = pytest.mark.integration

DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REVENUE = f"/v1/kpis?metrics=revenue&from={DAY.date()}&to={DAY.date()}"


def revenue_of(answer: httpx.Response) -> str:
    return str(answer.json()["rows"][0]["revenue"])


async def test_an_unchanged_model_answers_304_and_a_changed_one_a_new_etag(
    settings: CommonSettings,
) -> None:
    _, token = await issue(settings, ["admin"])
    auth = bearer(token)
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        ingest, reporting = clients["ingest"], clients["reporting"]
        first = await ingest.post(
            "/v1/events", json=purchase("c-etag", "10.00", time=DAY), headers=auth
        )
        assert first.status_code == 202, first.text

        async def revenue_is(amount: str) -> httpx.Response | None:
            answer = await reporting.get(REVENUE, headers=auth)
            return answer if answer.status_code == 200 and revenue_of(answer) == amount else None

        answer = await wait_until(
            lambda: revenue_is("10.00"), what="the first purchase in the KPIs"
        )
        tag = answer.headers["etag"]
        # The validator is the body's own digest, recomputed here from the bytes received.
        assert tag == '"' + hashlib.blake2b(answer.content, digest_size=16).hexdigest() + '"'
        assert answer.headers["cache-control"] == "private, no-cache"

        for named in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            again = await reporting.get(REVENUE, headers={**auth, "If-None-Match": named})
            assert again.status_code == 304, named
            assert again.content == b""
            assert again.headers["etag"] == tag
            assert again.headers["cache-control"] == "private, no-cache"
        stale = await reporting.get(REVENUE, headers={**auth, "If-None-Match": '"other"'})
        assert stale.status_code == 200
        assert stale.content == answer.content

        second = await ingest.post(
            "/v1/events", json=purchase("c-etag", "5.50", time=DAY), headers=auth
        )
        assert second.status_code == 202, second.text

        async def changed() -> httpx.Response | None:
            answer = await reporting.get(REVENUE, headers={**auth, "If-None-Match": tag})
            return answer if answer.status_code == 200 else None

        fresh = await wait_until(changed, what="the second purchase to change the KPIs")
        assert revenue_of(fresh) == "15.50"  # 10.00 + 5.50, by hand
        assert fresh.headers["etag"] != tag


async def test_personal_data_is_validated_but_never_stored_and_errors_carry_no_etag(
    settings: CommonSettings,
) -> None:
    _, token = await issue(settings, ["admin"])
    auth = bearer(token)
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        scoring = clients["scoring"]
        segments = await scoring.get("/v1/segments", headers=auth)
        assert segments.status_code == 200
        assert segments.headers["cache-control"] == "no-store"
        tag = segments.headers["etag"]
        again = await scoring.get("/v1/segments", headers={**auth, "If-None-Match": tag})
        assert again.status_code == 304
        assert again.content == b""
        missing = await scoring.get("/v1/customers/nobody-here", headers=auth)
        assert missing.status_code == 404
        assert "etag" not in missing.headers
        refused = await scoring.get("/v1/segments", headers={"If-None-Match": tag})
        assert refused.status_code == 401  # a validator is no credential
        assert "etag" not in refused.headers


async def test_a_kept_kpi_answer_is_the_one_asked_for_json_or_csv(
    settings: CommonSettings,
) -> None:
    """Reporting keeps each KPI answer under the read model's version (memo.py): the same
    question asked as JSON and as CSV gets each its own answer, again and again, and a
    repeated answer is byte for byte the first."""
    _, token = await issue(settings, ["admin"])
    auth = bearer(token)
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        ingest, reporting = clients["ingest"], clients["reporting"]
        posted = await ingest.post(
            "/v1/events", json=purchase("c-memo", "12.25", time=DAY), headers=auth
        )
        assert posted.status_code == 202, posted.text

        async def folded() -> httpx.Response | None:
            answer = await reporting.get(REVENUE, headers=auth)
            return answer if answer.status_code == 200 and revenue_of(answer) == "12.25" else None

        first_json = await wait_until(folded, what="the purchase in the KPIs")
        as_csv = {**auth, "Accept": "text/csv"}
        for _ in range(2):
            csv_answer = await reporting.get(REVENUE, headers=as_csv)
            assert csv_answer.status_code == 200
            assert csv_answer.headers["content-type"] == "text/csv; charset=utf-8"
            assert (
                csv_answer.text
                == f"period,period_end,revenue\r\n{DAY.date()},{DAY.date()},12.25\r\n"
            )
            json_answer = await reporting.get(REVENUE, headers=auth)
            assert json_answer.headers["content-type"] == "application/json"
            assert json_answer.content == first_json.content
