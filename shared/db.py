"""PostgreSQL pool and schema migrations, one schema per service.

Migrations are plain numbered SQL files in `services/<name>/migrations/`. A dozen lines of
code apply them under an advisory lock (so several instances can start at once); a migration
framework would bring an ORM-sized dependency for what is a sorted list of files.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What SQL functions take: a plain connection, or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


# ---- rows sent as arrays: one parameter per column, unnest() turns them back into rows.
# A statement's size and plan stay the same whatever the batch's size (no VALUES list to
# build), and asyncpg encodes each column in one go.


def unnest(*types: str, first: int = 1) -> str:
    """`unnest($1::t1[], $2::t2[], ...)`: the rows of the columns passed as parameters
    `first`, `first` + 1, ..., one array per column."""
    arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types))
    return f"unnest({arrays})"


def insert_unnest(table: str, *columns: str, then: str = "ON CONFLICT DO NOTHING") -> str:
    """`INSERT INTO table (names) SELECT * FROM unnest(...) then`, columns given as "name type"
    in the order of the parameters (`as_columns`)."""
    names = ", ".join(column.split()[0] for column in columns)
    types = (column.split(maxsplit=1)[1] for column in columns)
    return f"INSERT INTO {table} ({names}) SELECT * FROM {unnest(*types)} {then}".rstrip()


def as_columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into the `width` column arrays an unnest takes (empty ones for no rows)."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    if not columns:
        return [[] for _ in range(width)]
    if len(columns) != width:
        raise ValueError(f"rows of {len(columns)} values for {width} columns")
    return columns


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb comes back as text and goes in as text: callers serialise with orjson themselves.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing beyond what asyncpg always does
    (roll back a transaction left open, forget the listeners' callbacks).

    asyncpg's default sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release: a second round trip for each one-row read, a fifth of a lookup's CPU
    (0.49 -> 0.40 ms per RFM lookup, bench/reads_scoring.py --profile). The rule that makes
    it unneeded: whoever takes session state gives it back before releasing the connection
    (session advisory locks are unlocked in `finally`: migrations, the relay's leadership,
    re-score, base convergence, rebuild; the relay's LISTEN is removed in `finally`); row
    locks and the folds' advisory locks are transaction-scoped; nothing SETs a session
    variable (migrations use SET LOCAL); cursors live only inside transactions."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool whose connections see `schema` first: a service's SQL names its tables bare."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=60,
        server_settings={"search_path": f"{schema},public"},
    )
    assert pool is not None
    return pool


async def connect(dsn: str, schema: str, *, command_timeout: float) -> asyncpg.Connection:
    """A connection of its own, set up as the pool's are, for a batch job whose statements
    may run longer than a request's (the pool's command timeout is 60 s): a re-score of a
    million customers reads and writes millions of rows in a statement."""
    conn = await asyncpg.connect(
        dsn,
        command_timeout=command_timeout,
        server_settings={"search_path": f"{schema},public"},
    )
    await _init_connection(conn)
    return conn


def _lock_key(schema: str) -> int:
    return zlib.crc32(f"migrations:{schema}".encode())


CONSUMER_MIGRATIONS = Path(__file__).parent / "migrations" / "consumer"
OUTBOX_MIGRATIONS = Path(__file__).parent / "migrations" / "outbox"


async def migrate(pool: Pool, schema: str, *directories: Path) -> list[str]:
    """Apply the SQL files of `directories` not yet applied to `schema`; return their names.

    Files are applied in order of their names across all directories, so the shared runtime's
    `000_*` tables come before a service's `001_*`.
    """
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["name"]
                for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')
            }
            files = sorted((p for d in directories for p in d.glob("*.sql")), key=lambda p: p.name)
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                    await conn.execute(path.read_text())
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)', path.name
                    )
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    if applied_now:
        log.info("applied migrations", extra={"schema": schema, "migrations": applied_now})
    return applied_now
