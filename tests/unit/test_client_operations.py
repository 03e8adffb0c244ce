"""The Python client (clients/python/crm_client) cannot rot: every operation it calls exists
in the services' OpenAPI documents with its method and path, and every member its answer
models read is one the document declares (required where the client requires it). The
operationIds themselves are the route names, unique per service, so regenerating a
document renames nothing."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from crm_client import OPERATIONS, models
from crm_client.operations import COMMANDS
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.complaints.main import app as complaints_app
from services.ingest.main import app as ingest_app
from services.reporting.main import app as reporting_app
from services.scoring.main import app as scoring_app

# What each operation the client calls answers, as the client reads it.
ANSWERS: dict[str, type[BaseModel]] = {
    "post_events": models.Receipt,
    "get_customer": models.CustomerView,
    "get_rfm": models.Rfm,
    "get_score": models.CustomerScore,
    "list_customers": models.CustomerPage,
    "list_leads": models.LeadPage,
    "get_model": models.ClvModel,
    "fit_model": models.ClvModel,
    "get_complaint": models.Complaint,
    "list_complaints": models.QueuePage,
    "get_step_durations": models.StepDurations,
    "get_alerts": models.AlertPage,
    **{f"complaint_{c}": models.CommandAccepted for c in COMMANDS},
    "get_kpis": models.KpiTable,
    "get_summary": models.Summary,
    "get_daily": models.DailyKpi,  # items of the array it answers
    "get_crisis_alerts": models.CrisisAlertPage,  # reporting's get_alerts
}


@cache
def _app(service: str) -> FastAPI:
    """The service's app, as it serves; building one does no I/O."""
    factories: dict[str, Callable[[], FastAPI]] = {
        "ingest": ingest_app,
        "scoring": scoring_app,
        "complaints": complaints_app,
        "reporting": reporting_app,
    }
    app: FastAPI = factories[service]()  # with its settings' defaults
    return app


def _document(service: str) -> dict[str, Any]:
    return _app(service).openapi()


def _operations(service: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, item in _document(service)["paths"].items()
        for method, op in item.items()
    }


@pytest.mark.parametrize("service", ["ingest", "scoring", "complaints", "reporting"])
def test_operation_ids_are_the_route_names_and_unique(service: str) -> None:
    routes = [r for r in _app(service).routes if isinstance(r, APIRoute)]
    documented = {
        (method, path): op_id for op_id, (method, path, _) in _operations(service).items()
    }
    named = [r.name for r in routes for _ in r.methods or ()]
    assert len(named) == len(set(named)), f"two operations of {service} share a name"
    for route in routes:
        for method in route.methods or ():
            assert documented[(method, route.path_format)] == route.name


def test_every_operation_the_client_calls_is_documented_with_its_method_and_path() -> None:
    assert set(ANSWERS) == set(OPERATIONS), "an operation of the client without its answer"
    for key, operation in OPERATIONS.items():
        found = _operations(operation.service).get(operation.operation_id)
        assert found is not None, f"{key} is not an operation of {operation.service}"
        assert found[:2] == (operation.method, operation.path), key


@pytest.mark.parametrize("key", sorted(ANSWERS))
def test_the_client_s_answer_models_read_only_documented_members(key: str) -> None:
    operation = OPERATIONS[key]
    document = _document(operation.service)
    op = _operations(operation.service)[operation.operation_id][2]
    success = next(r for status, r in op["responses"].items() if status.startswith("2"))
    schema = _resolve(document, success["content"]["application/json"]["schema"])
    if schema.get("type") == "array":
        schema = _resolve(document, schema["items"])
    _check_model(ANSWERS[key], schema, document, key)


def _check_model(
    model: type[BaseModel], schema: dict[str, Any], document: dict[str, Any], where: str
) -> None:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, field in model.model_fields.items():
        member = field.alias or name
        assert member in properties, f"{where}.{member}: not in the document"
        if field.is_required():
            assert member in required, f"{where}.{member}: required by the client only"
        nested = _model_in(field.annotation)
        if nested is not None:
            _check_model(nested, _object_in(document, properties[member]), document, where)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, in a list, as a map's values, or optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, dict, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _object_in(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema a member holds: through $ref, nullable anyOf, array items and a
    map's values."""
    schema = _resolve(document, schema)
    if schema.get("type") == "array":
        return _object_in(document, schema["items"])
    values = schema.get("additionalProperties")
    if not schema.get("properties") and isinstance(values, dict):
        return _object_in(document, values)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found = _object_in(document, option)
        if found.get("properties"):
            return found
    return schema


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema
