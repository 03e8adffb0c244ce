"""The Python client (clients/python/crm_client) on the running stack: the e2e tests use it
where a caller of the API would, so it cannot rot."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from crm_client import CrmClient, ProblemError
from crm_client.operations import Service

from tests.e2e.conftest import Stack
from tests.helpers import TEST_TOKEN

T = TypeVar("T")
SERVICES: tuple[Service, ...] = ("ingest", "scoring", "complaints", "reporting")


def crm_client(stack: Stack, timeout: float = 30) -> CrmClient:
    """A client of the stack's four services, with the test admin key."""
    urls: dict[Service, str] = {name: stack.url(name) for name in SERVICES}
    return CrmClient(TEST_TOKEN, urls=urls, timeout=timeout)


async def found(read: Awaitable[T]) -> T | None:
    """The answer, or None while the service does not know it yet (404)."""
    try:
        return await read
    except ProblemError as error:
        if error.status == 404:
            return None
        raise
