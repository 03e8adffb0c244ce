"""The client raises every error answer as ProblemError carrying the problem detail, and
makes one of an answer that is not a problem (a proxy's error page)."""

from __future__ import annotations

import httpx
import pytest
from crm_client import CrmClient, ProblemError


def _client(answer: httpx.Response) -> CrmClient:
    return CrmClient("key", transport=httpx.MockTransport(lambda _: answer))


async def test_a_problem_detail_becomes_the_exception_s_members() -> None:
    body = {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "this key is over its rate",
        "errors": [{"field": "id", "message": "m", "index": 3, "id": "e-3"}],
    }
    answer = httpx.Response(429, json=body, headers={"Retry-After": "7"})
    async with _client(answer) as crm:
        with pytest.raises(ProblemError) as raised:
            await crm.post_events([{"id": "e-3"}])
    error = raised.value
    assert (error.type, error.title, error.status, error.detail) == (
        "about:blank",
        "Too Many Requests",
        429,
        "this key is over its rate",
    )
    assert [(e.field, e.message, e.index, e.id) for e in error.errors] == [("id", "m", 3, "e-3")]
    assert error.retry_after == 7


async def test_an_answer_that_is_no_problem_detail_still_raises_with_its_status() -> None:
    async with _client(httpx.Response(502, text="<html>bad gateway</html>")) as crm:
        with pytest.raises(ProblemError) as raised:
            await crm.get_rfm("c-1")
    assert (raised.value.status, raised.value.title) == (502, "Bad Gateway")
    assert raised.value.detail == "<html>bad gateway</html>"
    assert raised.value.errors == []
    assert raised.value.retry_after is None


async def test_path_parameters_are_one_segment_each() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": "no"})

    async with CrmClient("key", transport=httpx.MockTransport(answer)) as crm:
        with pytest.raises(ProblemError):
            await crm.get_complaint("a/b c")
    assert seen == ["/v1/complaints/a%2Fb%20c"]
