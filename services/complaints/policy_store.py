"""The SLA rules' SQL (table ``sla_rules``, migration 004) and the service's copy of them.

Every complaints instance keeps the book it last read in its settings (``LoadedRules``) and
reads it again when the store's revision moved: the consumer in every batch's own
transaction (a complaint is folded with the rules committed before it), the sweeper and the
read API every SLA_POLICY_REFRESH_SECONDS. Rows are only ever added, so the row count is the
revision. An empty store gets the seed (SLA_POLICY_FILE or the built-in) on the first read.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import orjson

from services.complaints.policies import CalendarRule, PolicyBook, PolicyRule
from services.complaints.resources import ComplaintsResources
from services.complaints.settings import ComplaintsSettings
from services.complaints.sla import Priority, SlaConfig, Targets, tier_or_unknown
from shared.db import Connection, Pool, as_columns, insert_unnest
from shared.service import every

log = logging.getLogger(__name__)

RULES_LOCK = zlib.crc32(b"complaints:sla-rules")  # seeding and changes take turns
# The live schema's table, named in full: `crm rebuild` folds in a shadow schema whose own
# table is empty (the live one is carried over at the swap), and must fold with the rules
# the live service has.
RULES_TABLE = '"complaints".sla_rules'
Rule = CalendarRule | PolicyRule


def _micros(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def rule_row(rule: Rule) -> tuple[str, str, datetime, str]:
    """(kind, name, effective_from, spec) of a rule."""
    spec: dict[str, Any]
    if isinstance(rule, CalendarRule):
        spec = {
            "zone": rule.zone,
            "hours": rule.hours,
            "workdays": list(rule.workdays),
            "country": rule.country,
            "subdivision": rule.subdivision,
            "holidays": [d.isoformat() for d in rule.holidays],
            "working_days": [d.isoformat() for d in rule.working_days],
        }
        return ("calendar", rule.name, rule.effective_from, orjson.dumps(spec).decode())
    spec = {
        "calendar": rule.calendar,
        "rank": rule.rank,
        "priorities": sorted(rule.priorities),
        "tiers": sorted(rule.tiers),
        # Microseconds, exactly what the clocks count.
        "first_response_us": _micros(rule.targets.first_response),
        "next_response_us": _micros(rule.targets.next_response),
        "resolution_us": _micros(rule.targets.resolution),
    }
    return ("policy", rule.name, rule.effective_from, orjson.dumps(spec).decode())


def rule_from_row(kind: str, name: str, effective_from: datetime, spec: str) -> Rule:
    data = orjson.loads(spec)
    if kind == "calendar":
        return CalendarRule(
            name=name,
            zone=data["zone"],
            hours=data["hours"],
            workdays=tuple(data["workdays"]),
            country=data["country"],
            subdivision=data["subdivision"],
            holidays=tuple(map(date.fromisoformat, data["holidays"])),
            working_days=tuple(map(date.fromisoformat, data["working_days"])),
            effective_from=effective_from,
        )
    micros = [data[f"{metric}_us"] for metric in ("first_response", "next_response", "resolution")]
    return PolicyRule(
        name=name,
        calendar=data["calendar"],
        targets=Targets(*(timedelta(microseconds=m) for m in micros)),
        priorities=frozenset(map(Priority, data["priorities"])),
        tiers=frozenset(map(tier_or_unknown, data["tiers"])),
        rank=data["rank"],
        effective_from=effective_from,
    )


async def revision(conn: Connection | Pool) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {RULES_TABLE}")
    return count


async def read_book(conn: Connection | Pool) -> PolicyBook:
    rows = await conn.fetch(f"SELECT kind, name, effective_from, spec FROM {RULES_TABLE}")
    rules = [rule_from_row(r[0], r[1], r[2], r[3]) for r in rows]
    return PolicyBook(
        tuple(r for r in rules if isinstance(r, CalendarRule)),
        tuple(r for r in rules if isinstance(r, PolicyRule)),
    )


async def insert_rules(conn: Connection, rules: Iterable[Rule]) -> None:
    rows = [rule_row(rule) for rule in rules]
    if rows:
        await conn.execute(
            insert_unnest(
                RULES_TABLE, "kind text", "name text", "effective_from timestamptz", "spec jsonb"
            ),
            *as_columns(rows, 4),
        )


async def lock_rules(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", RULES_LOCK)


async def _seed(conn: Connection, settings: ComplaintsSettings) -> None:
    """Write the seed into an empty store (once, whoever comes first)."""
    async with conn.transaction():  # a savepoint inside the caller's transaction
        await lock_rules(conn)
        if await revision(conn) == 0:
            seed = settings.policy_seed()
            await insert_rules(conn, (*seed.calendars, *seed.policies))
            log.info("SLA rules seeded", extra={"file": str(settings.sla_policy_file or "")})


async def refresh(conn: Connection, settings: ComplaintsSettings) -> PolicyBook:
    """The rules in the store, read again only when its revision moved."""
    loaded = settings.loaded_rules
    found = await revision(conn)
    if found == 0:
        await _seed(conn, settings)
        found = await revision(conn)
    if found != loaded.revision or loaded.book is None:
        loaded.book = await read_book(conn)
        loaded.revision = found
    return loaded.book


async def sla_config(conn: Connection, settings: ComplaintsSettings) -> SlaConfig:
    """The SLA configuration with the rules committed so far (for a batch's transaction)."""
    await refresh(conn, settings)
    return settings.sla_config()


async def refresh_now(pool: Pool, settings: ComplaintsSettings) -> PolicyBook:
    async with pool.acquire() as conn, conn.transaction():
        return await refresh(conn, settings)


async def keep_rules_fresh(res: ComplaintsResources) -> None:
    """Background task: read the rules again when another instance changed them."""
    await every(
        res.settings.sla_policy_refresh_seconds,
        "sla_rules_refresh",
        lambda: refresh_now(res.pool, res.settings),
    )
