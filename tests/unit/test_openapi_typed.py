"""Every successful answer of the four services is typed all the way down, so a client
generated from the OpenAPI documents gets named, typed members instead of untyped maps: in
each 2xx response schema, every object has `properties` or a typed `additionalProperties`
(a map of some schema), and every array says what its items are.

The documented exceptions are answers that are themselves documents of another format:
`/readyz` (probe details that vary by service and state) and ingest's JSON Schema and
AsyncAPI documents (`/v1/schemas/{event_type}`, `/v1/asyncapi.json`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
from fastapi import FastAPI

from services.complaints.main import app as complaints_app
from services.ingest.main import app as ingest_app
from services.reporting.main import app as reporting_app
from services.scoring.main import app as scoring_app

FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "ingest": ingest_app,
    "scoring": scoring_app,
    "complaints": complaints_app,
    "reporting": reporting_app,
}
EXCEPTIONS = {
    ("ingest", "/v1/schemas/{event_type}"),
    ("ingest", "/v1/asyncapi.json"),
    *((service, "/readyz") for service in FACTORIES),
}


@cache
def _document(service: str) -> dict[str, Any]:
    document: dict[str, Any] = FACTORIES[service]().openapi()
    return document


def _answers(service: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of every JSON 2xx answer of the service."""
    for path, item in _document(service)["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema is not None:
                    yield f"{method.upper()} {path} {status}", schema


def untyped_members(document: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Where, in `schema`, an object has no typed members or an array no typed items."""
    found: list[str] = []
    seen: set[str] = set()

    def walk(node: dict[str, Any], at: str) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in seen:  # each component once (and no loop on recursive ones)
                seen.add(name)
                walk(document["components"]["schemas"][name], f"{at}<{name}>")
            return
        if not node:
            found.append(f"{at}: any value (no schema)")
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                walk(option, at)
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            extra = node.get("additionalProperties")
            if not node.get("properties") and not isinstance(extra, dict):
                found.append(f"{at}: an object without typed members")
            for name, member in node.get("properties", {}).items():
                walk(member, f"{at}.{name}")
            if isinstance(extra, dict):
                if extra:
                    walk(extra, f"{at}.*")
                else:
                    found.append(f"{at}.*: map of any value")
        if kind == "array":
            walk(node.get("items", {}), f"{at}[]")

    walk(schema, where)
    return found


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_successful_answer_is_typed_all_the_way_down(service: str) -> None:
    document = _document(service)
    found = [
        problem
        for where, schema in _answers(service)
        if (service, where.split()[1]) not in EXCEPTIONS
        for problem in untyped_members(document, schema, where)
    ]
    assert not found, "\n".join(found)


def test_the_walk_finds_an_untyped_member() -> None:
    """The check itself: each shape of untyped member it must catch, and typed ones it must
    let through."""
    document = {
        "components": {
            "schemas": {
                "Loose": {"type": "object", "properties": {"data": {"type": "object"}}},
                "Typed": {"type": "object", "properties": {"n": {"type": "integer"}}},
            }
        }
    }
    cases: dict[str, dict[str, Any]] = {
        "map of anything": {"type": "object", "additionalProperties": True},
        "bare object": {"type": "object"},
        "empty map": {"type": "object", "additionalProperties": {}},
        "untyped items": {"type": "array", "items": {}},
        "nested through $ref": {"$ref": "#/components/schemas/Loose"},
        "nullable bare object": {"anyOf": [{"type": "object"}, {"type": "null"}]},
    }
    for name, schema in cases.items():
        assert untyped_members(document, schema, name), name
    typed: list[dict[str, Any]] = [
        {"$ref": "#/components/schemas/Typed"},
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/Typed"}},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
    ]
    for schema in typed:
        assert not untyped_members(document, schema, "typed"), schema
