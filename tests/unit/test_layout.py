"""The import rules of the layout, read from the source (no I/O beyond reading files):
services never import one another, shared/ never imports a service, and a service's domain
modules (every module that is not an adapter) import no I/O library and no adapter."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
# Adapters talk to the outside (HTTP, SQL, Kafka, schedulers) and wire the service
# (`resources`: what the running service holds, and its routes' typed dependency).
ADAPTER = re.compile(
    r"(api|pages|store|projection|main|__main__|jobs|rescore|resources"
    r"|.+_api|.+_store|.+_flow)"
)
NOT_DOMAIN = {"__init__", "settings"}
IO_MODULES = {
    "asyncpg",
    "aiokafka",
    "fastapi",
    "starlette",
    "httpx",
    "uvicorn",
    *(
        f"shared.{m}"
        for m in (
            "db",
            "kafka",
            "outbox",
            "consumer",
            "service",
            "http",
            "auth",
            "freshness",
            "tracing",
        )
    ),
}


def imports(path: Path) -> set[str]:
    """Every module a file imports (`from a.b import c` counts as a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def under(module: str, packages: set[str]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_a_service_imports_no_other_service(service: Path) -> None:
    others = {f"services.{p.name}" for p in SERVICES if p != service}
    for path in service.glob("*.py"):
        crossing = {m for m in imports(path) if under(m, others)}
        assert not crossing, f"{path.relative_to(ROOT)} imports {sorted(crossing)}"


def test_shared_imports_no_service_and_no_tooling() -> None:
    """shared/ is the library: the services and the tooling stand on it, not it on them."""
    for path in (ROOT / "shared").rglob("*.py"):
        crossing = {m for m in imports(path) if under(m, {"services", "tooling"})}
        assert not crossing, f"{path.relative_to(ROOT)} imports {sorted(crossing)}"


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_a_service_imports_no_tooling(service: Path) -> None:
    for path in service.glob("*.py"):
        crossing = {m for m in imports(path) if under(m, {"tooling"})}
        assert not crossing, f"{path.relative_to(ROOT)} imports {sorted(crossing)}"


def test_the_registry_names_every_service_package() -> None:
    """One registry of services (tooling/registry.py) for the dev stack, `crm` and rebuilds."""
    from tooling.registry import NAMES

    assert sorted(NAMES) == sorted(p.name for p in SERVICES)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_domain_modules_import_no_adapter_and_no_io(service: Path) -> None:
    adapters = {
        f"services.{service.name}.{p.stem}"
        for p in service.glob("*.py")
        if ADAPTER.fullmatch(p.stem)
    }
    domain = [p for p in service.glob("*.py") if not ADAPTER.fullmatch(p.stem)]
    domain = [p for p in domain if p.stem not in NOT_DOMAIN]
    assert domain, f"{service.name} has no domain module"
    for path in domain:
        wrong = {m for m in imports(path) if under(m, IO_MODULES | adapters)}
        assert not wrong, f"{path.relative_to(ROOT)} is domain code but imports {sorted(wrong)}"


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """The checks above see a forbidden import when there is one."""
    sample = tmp_path / "rules.py"
    sample.write_text("import asyncpg\nfrom services.scoring.store import load\n")
    found = imports(sample)
    assert under("asyncpg", found)
    assert under("services.scoring.store", found)
    assert "services.scoring.store.load" in found
