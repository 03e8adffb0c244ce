"""Property-based fuzzing of every HTTP API from its own OpenAPI document (schemathesis).

Each operation gets a bounded, seeded, deterministic run (examples, coverage and fuzzing
phases; positive and negative data) against the running service (tests/fuzz/conftest.py).
The rule: no 5xx; every status and body as documented; invalid input rejected; and every
4xx says why (`detail`, plus `errors` of field and message).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.conftest import SERVICES, Server
from tests.helpers import TEST_TOKEN

pytestmark = [
    pytest.mark.integration,
    # Schemathesis' strategies use `random` (seeded by Hypothesis, so still deterministic).
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

MAX_EXAMPLES = 25
SEED = 20261123
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        # The admin token; negative cases drop it and must get 401.
        "auth": {"openapi": {"apiKey": {"bearer": TEST_TOKEN}}},
    }
)
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def _schema(name: str) -> Any:
    factory, settings_type = SERVICES[name]
    document = factory(settings_type()).openapi()  # building an app does no I/O
    return schemathesis.openapi.from_dict(document, config=CONFIG)


def error_has_a_reason(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx says why: {"detail": non-empty text, "errors": [{"field", "message"}, ...]}."""
    if not 400 <= response.status_code < 500:
        return
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {response.text[:200]}"
    assert isinstance(body.get("detail"), str), f"no detail: {body}"
    assert body["detail"], f"empty detail: {body}"
    assert isinstance(body.get("errors"), list), f"no errors list: {body}"
    for item in body["errors"]:
        assert isinstance(item.get("field"), str), item
        assert isinstance(item.get("message"), str), item


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_has_a_reason,
]


def _run(case: schemathesis.Case, server: Server) -> None:
    response = case.call(base_url=server.url)
    # Readiness answers 503 (documented) whenever it is not ready: that is its job.
    readiness = case.operation.path == "/readyz"
    case.validate_response(
        response, checks=[c for c in CHECKS if not (readiness and c is not_a_server_error)]
    )


ingest = _schema("ingest")
scoring = _schema("scoring")
complaints = _schema("complaints")
reporting = _schema("reporting")


@ingest.parametrize()
@HYPOTHESIS
def test_ingest_api(case: schemathesis.Case, servers: dict[str, Server]) -> None:
    _run(case, servers["ingest"])


@scoring.parametrize()
@HYPOTHESIS
def test_scoring_api(case: schemathesis.Case, servers: dict[str, Server]) -> None:
    _run(case, servers["scoring"])


@complaints.parametrize()
@HYPOTHESIS
def test_complaints_api(case: schemathesis.Case, servers: dict[str, Server]) -> None:
    _run(case, servers["complaints"])


@reporting.parametrize()
@HYPOTHESIS
def test_reporting_api(case: schemathesis.Case, servers: dict[str, Server]) -> None:
    _run(case, servers["reporting"])
