"""HTTP pieces every service shares: error format, health, readiness, metrics, latency."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics

log = logging.getLogger(__name__)

# Readiness is a plain function of state the service holds: it cannot await a database or
# broker round trip, so a probe never queues behind the service's load.
ReadinessCheck = Callable[[], dict[str, Any]]


class ErrorItem(BaseModel):
    field: str = Field(examples=["data.amount"])
    message: str = Field(examples=["Input should be greater than or equal to 0"])


class Problem(BaseModel):
    """The members every error response has: a problem detail of RFC 9457 (Problem Details
    for HTTP APIs), served as `application/problem+json`. `type` is `about:blank` (the
    status says what kind of problem it is) and `title` the status's phrase."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["invalid request"])


class ErrorBody(Problem):
    """Every error response has this shape: the problem, and what was wrong with which field
    (an extension member of the problem)."""

    errors: list[ErrorItem] = Field(default_factory=list)


PROBLEM_JSON = "application/problem+json"


# A command's body (agent commands, model fits) is a small JSON object; ingest has its own,
# configurable limit (MAX_BODY_BYTES).
MAX_COMMAND_BODY_BYTES = 256 * 1024
BODY_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": f"Body over {MAX_COMMAND_BODY_BYTES} bytes."}
}


class BoundedBodyRoute(APIRoute):
    """A route that refuses a body over MAX_COMMAND_BODY_BYTES with 413 in the error format,
    before anything reads it whole (a declared length, or the bytes as they stream in)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            too_large = f"body is larger than {MAX_COMMAND_BODY_BYTES} bytes"
            declared = request.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_COMMAND_BODY_BYTES:
                return error_response(413, too_large)
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_COMMAND_BODY_BYTES:
                    return error_response(413, too_large)
            request._body = bytes(body)  # what request.body() returns from now on
            return await handler(request)

        return bounded


def error_response(
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem(status, detail, errors),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An error body (ErrorBody) as a dictionary."""
    return {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }


# Phrases RFC 9110 renamed, which Python before 3.13 still spells the old way.
_RFC9110_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _title(status: int) -> str:
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def invalid(field: str, message: str) -> HTTPException:
    """A 422 that names the field, in the shared error format."""
    return HTTPException(
        422, {"detail": "invalid request", "errors": [{"field": field, "message": message}]}
    )


def encode_cursor(sort_key: float, last_id: str) -> str:
    """An opaque keyset cursor: the sort key and id of a page's last row. The key travels as
    text, so that an infinite key (rows sorted last) survives JSON."""
    return base64.urlsafe_b64encode(orjson.dumps([repr(float(sort_key)), last_id])).decode()


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        value, last_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(value), str(last_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise invalid("query.cursor", "not a cursor this API returned") from None


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    items = [{"field": _location(e["loc"]), "message": e["msg"]} for e in error.errors()]
    return error_response(422, "invalid request", items)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else "error"
    errors: list[dict[str, Any]] = []
    if isinstance(error.detail, dict):
        errors = error.detail.get("errors", [])
    if isinstance(error.detail, dict):
        detail = str(error.detail.get("detail", detail))
    return error_response(error.status_code, detail, errors, getattr(error, "headers", None))


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """The error format."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _document_errors(app)


# Every response: no MIME sniffing, no framing, no referrer leaving with a link.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# What an API response may be kept as. Personal data (customers, complaints) and keys' views
# of it: no cache, shared or private, may keep it. A service serving only aggregates may say
# `private, no-cache` instead: a browser keeps its copy and revalidates it with the ETag.
NO_STORE = "no-store"
REVALIDATE = "private, no-cache"
API_PREFIX = "/v1/"
# An ETag is computed over bodies up to this size; a larger one (a long CSV export) is
# streamed through as it comes, without one.
ETAG_MAX_BODY = 4 * 1024 * 1024


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every response and the service's Cache-Control to those of
    /v1, unless the route set its own (a page's Content-Security-Policy is its own: see the
    reporting dashboard)."""

    def __init__(self, app: ASGIApp, cache_control: str = NO_STORE) -> None:
        self.app = app
        self.cache_control = (b"cache-control", cache_control.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(SECURITY_HEADERS)
        if scope["path"].startswith(API_PREFIX):
            extra.append(self.cache_control)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def entity_tag(body: bytes) -> bytes:
    """A strong validator (RFC 9110 section 8.8.3) of a response body: equal bodies, equal
    tags. BLAKE2b cut to 128 bits: collisions are not a concern for a cache validator."""
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def _matches(if_none_match: bytes, tag: bytes) -> bool:
    """RFC 9110 section 13.1.2: a list of tags or `*`, compared weakly (W/ ignored)."""
    candidates = {t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")}
    return b"*" in candidates or tag in candidates


class EntityTagMiddleware:
    """ETag on every successful GET of /v1, and 304 Not Modified with no body when the
    request's If-None-Match names the current one: a client that polls (the dashboard, a
    front end) re-downloads a read model only when it changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"].startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = dict(scope["headers"]).get(b"if-none-match")
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passing_through = False

        async def buffered(message: Message) -> None:
            nonlocal start, size, passing_through
            if passing_through:
                await send(message)
            elif message["type"] == "http.response.start":
                start = message
                if message["status"] != 200:
                    passing_through = True
                    await send(message)
            elif message["type"] == "http.response.body":
                assert start is not None
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > ETAG_MAX_BODY:  # too big to hold: send what is held, stream the rest
                    passing_through = True
                    await send(start)
                    await send({**message, "body": b"".join(chunks)})
                elif not message.get("more_body", False):
                    await self._finish(start, b"".join(chunks), if_none_match, send)
            else:
                await send(message)

        await self.app(scope, receive, buffered)

    @staticmethod
    async def _finish(start: Message, body: bytes, if_none_match: bytes | None, send: Send) -> None:
        tag = entity_tag(body)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"etag"]
        headers.append((b"etag", tag))
        if if_none_match is not None and _matches(if_none_match, tag):
            # 304 carries the validator and the caching headers, no body (RFC 9110 15.4.5).
            kept = [
                (k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type")
            ]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document show the errors as the handlers above send them: FastAPI's
    own 422 model (`{"detail": [...]}`) becomes ErrorBody, and an operation that reads a
    body also documents 400 (a body that is not UTF-8 text)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        error_body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in error_body.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault("ErrorBody", error_body)
        for path in document.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for response in responses.values():
                    media = response.get("content", {}).get("application/json", {})
                    if media.get("schema", {}).get("$ref") == _FASTAPI_422:
                        media["schema"] = dict(_ERROR_REF)
                if "requestBody" in operation and "400" not in responses:
                    responses["400"] = {
                        "description": "The body cannot be read: not UTF-8 text.",
                        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
                    }
                for status, response in responses.items():
                    content = response.get("content", {})
                    if str(status)[:1] in "45" and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        if _FASTAPI_422 not in json.dumps(document):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def operations_router(readiness: ReadinessCheck) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: database, consumer, partitions, lag, outbox (as last checked)",
        responses={503: {"description": "Not ready: the same body, with `reason`."}},
    )
    async def readyz() -> Response:
        checks = readiness()
        status = 200 if checks.get("ready") else 503
        return JSONResponse(checks, status_code=status)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class LatencyMiddleware:
    """Records each request's latency by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics.HTTP_SECONDS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


# ---- pages: the services' own web pages (reporting's dashboard, scoring's model validation)

STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A page loads its scripts and styles from /static only (configuration goes in a JSON data
# block, which is not script); scripts set element styles through the CSSOM, which style-src
# does not govern. No framing: a page holds a key.
PAGE_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# What a page's JSON configuration block holds, from the request (its app's settings).
PageConfig = Callable[[Request], Mapping[str, object]]
CONFIG_PLACEHOLDER = "{{CONFIG}}"


def page_router(static: Path, pages: dict[str, str], config: PageConfig | None = None) -> APIRouter:
    """Routes serving `pages` (URL path -> file in `static`) under the page security policy,
    and every file of `static` at /static/<name>. Not in the API documents. With `config`,
    each page's {{CONFIG}} (inside a `<script type="application/json">` block) becomes the
    JSON of config(request)."""
    router = APIRouter(include_in_schema=False)
    root = static.resolve()
    # The page carries a key in its address (#key=...): no copy of it anywhere.
    headers = {"Content-Security-Policy": PAGE_SECURITY_POLICY, "Cache-Control": "no-store"}

    def serve_page(name: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def page(request: Request) -> Response:
            if config is None:
                return FileResponse(root / name, media_type=STATIC_TYPES[".html"], headers=headers)
            block = orjson.dumps(config(request)).decode()
            text = (root / name).read_text(encoding="utf-8").replace(CONFIG_PLACEHOLDER, block)
            return HTMLResponse(text, headers=headers)

        return page

    for path, name in pages.items():
        router.add_api_route(path, serve_page(name), methods=["GET"])

    @router.get("/static/{name:path}")
    async def static_file(name: str) -> FileResponse:
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path, media_type=STATIC_TYPES.get(path.suffix))

    return router
