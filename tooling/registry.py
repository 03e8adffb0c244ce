"""The one registry of the services, which the dev stack, `crm` and rebuilds read: each
service's name (also its schema and its package under services/), the port `make run` gives it,
and whether it folds read models from the topics (what a rebuild can fold again)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from shared.service import ServiceSpec


@dataclass(frozen=True)
class Service:
    name: str
    port: int  # `make run`'s; <NAME>_PORT overrides it
    folds_topics: bool  # read models folded from the topics, which a rebuild can fold again

    def spec(self) -> ServiceSpec:
        """The service's declaration (SPEC of services/<name>/main.py), imported when asked:
        `crm` starts without importing every service."""
        spec: ServiceSpec = importlib.import_module(f"services.{self.name}.main").SPEC
        return spec


REGISTRY: tuple[Service, ...] = (
    Service("ingest", 8001, folds_topics=False),  # its read model is the event store itself
    Service("scoring", 8002, folds_topics=True),
    Service("complaints", 8003, folds_topics=True),
    Service("reporting", 8004, folds_topics=True),
)
NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY)
FOLDING: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.folds_topics)


def service(name: str) -> Service:
    """The registered service called `name`; LookupError for another name."""
    for found in REGISTRY:
        if found.name == name:
            return found
    raise LookupError(f"no service {name!r}; one of {', '.join(NAMES)}")
