"""Errors are RFC 9457 problem details on every service: `application/problem+json` with
`type`, `title` (the status's phrase, RFC 9110), `status` and `detail`, plus the field
errors; and the OpenAPI documents say so, so generated clients parse them."""

from __future__ import annotations

import pytest

from shared.settings import CommonSettings
from tests.integration.test_auth import PROBES, all_services, bearer, issue, known_everywhere

pytestmark = pytest.mark.integration

# RFC 9110 section 15: the reason phrases.
PHRASES = {401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Content"}


async def test_every_service_answers_errors_as_problem_details(settings: CommonSettings) -> None:
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        for name, client in clients.items():
            refused = await client.get(PROBES[name])
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            body = refused.json()
            assert body["type"] == "about:blank"
            assert body["title"] == PHRASES[401]
            assert body["status"] == 401
            assert body["detail"]
        bad = await clients["reporting"].get(
            "/v1/kpis?metrics=revenue&from=2026-13-01", headers=bearer(token)
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        body = bad.json()
        assert (body["title"], body["status"]) == (PHRASES[422], 422)
        assert any(e["field"] == "query.from" for e in body["errors"]), body
        missing = await clients["scoring"].get("/v1/customers/nobody", headers=bearer(token))
        assert (missing.status_code, missing.json()["title"]) == (404, PHRASES[404])


async def test_the_openapi_documents_declare_errors_as_problem_details(
    settings: CommonSettings,
) -> None:
    async with all_services(settings) as clients:
        for name, client in clients.items():
            document = (await client.get("/openapi.json")).json()
            problem = document["components"]["schemas"]["ErrorBody"]
            assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    for status, response in operation["responses"].items():
                        content = response.get("content", {})
                        if status[0] in "45" and content:
                            assert "application/problem+json" in content, (name, method, path)
                            assert "application/json" not in content, (name, method, path)
