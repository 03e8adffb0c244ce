"""`crm`: the operators' command line.

    crm topics                         topics, partitions and log ends
    crm lag                            each service's consumer lag per topic
    crm replay-deadletter [--dry-run]  re-publish dead letters that are valid now
    crm import purchases FILE.csv --map amount=Total --map subject=CustomerID ...
    crm keys create --name NAME --scope SCOPE [--scope ...] [--rate-limit N]
                    [--expires-in DAYS | --expires-at TIME]
    crm keys revoke KEY_ID | crm keys list
    crm rebuild scoring|complaints|reporting [--max-lag N]
    crm demo [--customers N] [--seed N] [--until DATE] [--url URL] [--api-key KEY]

Reads KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL like the services; with neither set, it uses
the settings of the dev stack `make run` keeps running (CRM_DATA_DIR/stack.env). `import`
goes through the same validation as POST /v1/events into ingest's event store (the relay
publishes it); event ids come from the rows, so running an import twice stores nothing
twice.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from shared import db, kafka
from shared.cloudevents_binding import decode_record, is_binding_header
from shared.events import (
    SCOPES,
    SOURCE_TOPICS,
    FieldError,
    InvalidEvent,
    Topic,
    ValidationContext,
    validate_event,
)
from shared.outbox import append_events, open_event_store
from shared.service import validation_context
from shared.settings import CommonSettings
from tooling import demo_post, devstack, keys, rebuild, registry

CONSUMING_SERVICES = registry.FOLDING
IMPORT_BATCH = 1000

# What each import kind builds: the event type, the column that makes the id unique, and the
# data fields it reads (the envelope's time and subject come from the `time` and `subject`
# columns of the mapping).
IMPORTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "purchases": (
        "crm.purchase.completed",
        "order_id",
        ("order_id", "amount", "currency", "reporting_amount", "channel"),
    ),
    "customers": (
        "crm.customer.registered",
        "subject",
        (
            "name",
            "kind",
            "email",
            "phone",
            "segment",
            "acquisition_channel",
            "occupation",
            "industry",
        ),
    ),
    "complaints": (
        "crm.complaint.opened",
        "complaint_id",
        ("complaint_id", "channel", "category", "priority", "product", "description"),
    ),
}


# ---- topics and lag -----------------------------------------------------------------------


async def _log_ends(settings: CommonSettings, topics: list[str]) -> dict[tuple[str, int], int]:
    client = kafka.consumer(settings, None)
    await client.start()
    try:
        existing = await client.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            if t in existing
            for p in sorted(client.partitions_for_topic(t) or ())
        ]
        if not tps:
            return {}
        # Seek where ListOffsets says the log ends (Tansu answers short of it) so the fetch
        # carries at most a batch, and read the true end from the fetch's high watermark.
        nearly = await client.end_offsets(tps)
    finally:
        await client.stop()
    return await kafka.log_ends(settings, {(tp.topic, tp.partition): o for tp, o in nearly.items()})


async def topics(settings: CommonSettings) -> None:
    ends = await _log_ends(settings, list(kafka.ALL_TOPICS))
    print(f"{'topic':<20} {'partitions':>10} {'events':>12}")
    for topic in kafka.ALL_TOPICS:
        parts = {p: e for (t, p), e in ends.items() if t == topic}
        print(f"{topic:<20} {len(parts):>10} {sum(parts.values()):>12}")


async def lag(settings: CommonSettings) -> None:
    ends = await _log_ends(settings, list(kafka.ALL_TOPICS))
    print(f"{'consumer':<12} {'topic':<20} {'applied up to':>14} {'log end':>10} {'lag':>8}")
    for service in CONSUMING_SERVICES:
        pool = await db.create_pool(settings.database_url, service)
        try:
            rows = await pool.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1",
                service,
            )
        except Exception as error:  # the service has not created its schema yet
            print(f"{service:<12} (no offsets: {type(error).__name__})")
            continue
        finally:
            await pool.close()
        per_topic: dict[str, list[int]] = {}
        for r in rows:
            end = ends.get((r["topic"], r["partition"]), r["next_offset"])
            per_topic.setdefault(r["topic"], [0, 0])
            per_topic[r["topic"]][0] += r["next_offset"]
            per_topic[r["topic"]][1] += end
        for topic, (applied, end) in sorted(per_topic.items()):
            print(f"{service:<12} {topic:<20} {applied:>14} {end:>10} {max(end - applied, 0):>8}")


# ---- dead letters -------------------------------------------------------------------------


async def replay_deadletter(settings: CommonSettings, dry_run: bool) -> None:
    """Re-publish each dead letter that validates now (a fix of the contract or of a
    producer's data) to its source topic; consumers drop ids they applied already."""
    context = validation_context(settings)
    erased = await _erasures(settings)
    client = kafka.consumer(settings, None)
    producer = kafka.producer(settings)
    await client.start()
    await producer.start()
    counts: Counter[str] = Counter()
    try:
        tps = [
            TopicPartition(Topic.DEADLETTER, p)
            for p in sorted(client.partitions_for_topic(Topic.DEADLETTER) or ())
        ]
        if not tps:
            print("no dead letters")
            return
        client.assign(tps)
        await client.seek_to_beginning(*tps)
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            batches = await client.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    counts[await _replay(record, context, producer, dry_run, erased)] += 1
            for tp in tps:
                highwater = client.highwater(tp)
                if highwater is not None and await client.position(tp) >= highwater:
                    done.add(tp)
            if not batches and all(client.highwater(tp) is not None for tp in tps):
                done.update(tp for tp in tps if client.highwater(tp) == 0)
        await producer.flush()
    finally:
        await client.stop()
        await producer.stop()
    print(", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "no dead letters")


async def _erasures(settings: CommonSettings) -> dict[str, datetime]:
    """Customers erased, and when (the event store's record)."""
    pool = await open_event_store(settings.database_url)
    try:
        if await pool.fetchval("SELECT to_regclass('erasures')") is None:
            return {}  # ingest never ran here: nobody was erased
        rows = await pool.fetch("SELECT customer_id, erased_at FROM erasures")
    finally:
        await pool.close()
    return {r["customer_id"]: r["erased_at"] for r in rows}


async def _replay(
    record: Any,
    context: ValidationContext,
    producer: Any,
    dry_run: bool,
    erased: dict[str, datetime],
) -> str:
    headers = dict(record.headers)
    source = headers.get("crm-source-topic", b"").decode()
    if source not in {t.value for t in SOURCE_TOPICS}:
        return "skipped (no source topic)"
    # Either content mode: a binary-mode record's attributes are in its binding headers.
    binding = [(name, value) for name, value in record.headers if is_binding_header(name)]
    try:
        event = decode_record(record.value, binding, context)
    except InvalidEvent:
        return "still invalid"
    if event.subject in erased and event.time <= erased[event.subject]:
        # Its personal data must not travel again: the dead letter holds the original bytes.
        return "skipped (customer erased)"
    if not dry_run:
        await producer.send(source, value=record.value, key=record.key, headers=binding)
    return "would re-publish" if dry_run else "re-published"


# ---- import -------------------------------------------------------------------------------


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # optional: only for parquet files
        except ImportError:
            sys.exit("reading parquet needs pyarrow: pip install pyarrow")
        for batch in pq.ParquetFile(path).iter_batches():
            yield from (
                {k: "" if v is None else str(v) for k, v in row.items()}
                for row in batch.to_pylist()
            )
        return
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from csv.DictReader(handle)


def build_event(kind: str, row: dict[str, str], mapping: dict[str, str]) -> dict[str, Any]:
    """One row as a raw CloudEvent (validated afterwards like any other)."""
    type_name, id_field, fields = IMPORTS[kind]

    def get(name: str) -> str:
        return row.get(mapping.get(name, name), "").strip()

    data = {f: get(f) for f in fields if get(f)}
    if kind == "purchases" and "currency" not in data:
        data["currency"] = mapping.get("=currency", "USD")
    identity = get(id_field) or get("subject")
    return {
        "specversion": "1.0",
        "id": f"import:{kind}:{identity}",
        "source": "crm/import",
        "type": type_name,
        "time": get("time"),
        "subject": get("subject"),
        "data": data,
    }


async def import_file(
    settings: CommonSettings, kind: str, path: Path, mapping: dict[str, str]
) -> None:
    context = validation_context(settings)
    pool = await open_event_store(settings.database_url)
    totals: Counter[str] = Counter()
    rejected: list[tuple[int, list[FieldError]]] = []
    started = time.perf_counter()
    batch = []
    try:
        for line, row in enumerate(_rows(path), start=2):
            try:
                batch.append(validate_event(build_event(kind, row, mapping), context))
            except InvalidEvent as error:
                rejected.append((line, error.errors))
            if len(batch) == IMPORT_BATCH:
                await _store(pool, batch, totals)
                batch = []
                _progress(totals, len(rejected), started)
        await _store(pool, batch, totals)
    finally:
        await pool.close()
    _progress(totals, len(rejected), started)
    print(file=sys.stderr)
    print(
        f"stored {totals['accepted']}, already there {totals['duplicates']}, "
        f"conflicting ids {totals['conflicts']}, rejected {len(rejected)}"
    )
    for line, errors in rejected[:20]:
        print(f"  line {line}: " + "; ".join(f"{e.field}: {e.message}" for e in errors))
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20} more")


async def _store(pool: db.Pool, events: list[Any], totals: Counter[str]) -> None:
    if not events:
        return
    async with pool.acquire() as conn, conn.transaction():
        result = await append_events(conn, events)
    totals["accepted"] += len(result.accepted)
    totals["duplicates"] += len(result.duplicates)
    totals["conflicts"] += len(result.conflicts)


def _progress(totals: Counter[str], rejected: int, started: float) -> None:
    done = sum(totals.values()) + rejected
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(
        f"\r{done:>10,} rows  {rate:>9,.0f} rows/s  rejected {rejected:,}",
        end="",
        file=sys.stderr,
        flush=True,
    )


# ---- API keys (events in ingest's event store; the relay publishes them) --------------------


def _require_signing_secret(settings: CommonSettings) -> None:
    if settings.key_signing_secret is None:
        sys.exit(
            "KEY_SIGNING_SECRET is not set: every service refuses key events without a valid "
            "signature; set the services' secret here too"
        )


async def keys_create(
    settings: CommonSettings,
    name: str,
    scopes: list[str],
    rate_limit: float | None,
    expires_at: datetime | None = None,
) -> str:
    _require_signing_secret(settings)
    pool = await open_event_store(settings.database_url)
    try:
        async with pool.acquire() as conn, conn.transaction():
            key_id, token = await keys.issue_key(
                conn,
                name,
                scopes,
                rate_limit,
                secret=settings.key_signing_secret,
                expires_at=expires_at,
            )
    finally:
        await pool.close()
    print(f"key {key_id} ({name}: {', '.join(sorted(set(scopes)))})", file=sys.stderr)
    if expires_at is not None:
        print(f"it expires at {expires_at.isoformat(timespec='seconds')}", file=sys.stderr)
    print("the token is shown this once; services accept it within seconds:", file=sys.stderr)
    print(token)
    return token


async def keys_revoke(settings: CommonSettings, key_id: str, reason: str | None) -> None:
    _require_signing_secret(settings)
    pool = await open_event_store(settings.database_url)
    try:
        async with pool.acquire() as conn, conn.transaction():
            found = await keys.revoke_key(conn, key_id, reason, secret=settings.key_signing_secret)
    finally:
        await pool.close()
    if not found:
        sys.exit(f"no key {key_id} was issued")
    print(f"key {key_id} revoked; services refuse it within seconds")


async def keys_list(settings: CommonSettings) -> None:
    pool = await open_event_store(settings.database_url)
    try:
        async with pool.acquire() as conn:
            issued = await keys.list_keys(conn)
    finally:
        await pool.close()
    print(
        f"{'key id':<17} {'name':<24} {'scopes':<44} {'issued':<17} {'expires':<17} "
        f"{'last used':<17} revoked"
    )
    for key in issued:
        print(
            f"{key['key_id']:<17} {key.get('name', '?'):<24} "
            f"{','.join(key.get('scopes', [])):<44} "
            f"{_minute(key.get('issued_at'), '?'):<17} "
            f"{_minute(key.get('expires_at'), 'never'):<17} "
            f"{_minute(key.get('last_used_at'), '-'):<17} "
            f"{_minute(key['revoked_at'], '-')}"
        )


def _minute(at: datetime | None, otherwise: str) -> str:
    """A time in the list, in UTC to the minute."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at is not None else otherwise


def _expiry(args: argparse.Namespace) -> datetime | None:
    """The expiry `--expires-in DAYS` or `--expires-at TIME` asks for (None: never)."""
    if args.expires_in is not None:
        if not args.expires_in > 0:
            sys.exit("--expires-in must be a positive number of days")
        return datetime.now(UTC) + timedelta(days=args.expires_in)
    if args.expires_at is None:
        return None
    try:
        at = datetime.fromisoformat(args.expires_at)
    except ValueError:
        sys.exit(f"--expires-at {args.expires_at!r} is not an ISO 8601 time")
    if at.tzinfo is None:
        sys.exit("--expires-at needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
    if at <= datetime.now(UTC):
        sys.exit("--expires-at is in the past: the key would never work")
    return at


# ---- rebuild -------------------------------------------------------------------------------


def _show_rebuild(progress: rebuild.Progress) -> None:
    share = progress.read / progress.end if progress.end else 0.0
    bar = "#" * int(share * 30)
    print(
        f"\r[{bar:<30}] {progress.read:>12,} of {progress.end:,} records "
        f"{progress.rate:>9,.0f}/s  {progress.partitions} partitions",
        end="",
        file=sys.stderr,
        flush=True,
    )


async def rebuild_service(settings: CommonSettings, service: str, max_lag: int) -> None:
    started = time.perf_counter()
    try:
        reached = await rebuild.rebuild(
            service, settings, max_lag=max_lag, on_progress=_show_rebuild
        )
    except rebuild.RebuildError as error:
        sys.exit(str(error))
    print(file=sys.stderr)
    print(
        f"{service} rebuilt from {reached.read:,} records in "
        f"{time.perf_counter() - started:.1f} s and swapped in; the previous read models are "
        f"in schema {service}_previous until the next rebuild"
    )


# ---- entry point --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="crm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("topics", help="topics, partitions and log ends")
    commands.add_parser("lag", help="consumer lag of each service")
    replay = commands.add_parser("replay-deadletter", help="re-publish valid dead letters")
    replay.add_argument("--dry-run", action="store_true")
    imports = commands.add_parser("import", help="import history from CSV or parquet")
    imports.add_argument("kind", choices=sorted(IMPORTS))
    imports.add_argument("file", type=Path)
    imports.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="column of a field (default: the field's own name); "
        "--map =currency=EUR sets a constant currency",
    )
    key_parser = commands.add_parser("keys", help="issue, revoke and list API keys")
    key_commands = key_parser.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="issue a key; prints its token once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope", action="append", required=True, choices=SCOPES, help="repeat for several"
    )
    create.add_argument(
        "--rate-limit", type=float, default=None, help="events per second to ingest"
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in", type=float, default=None, metavar="DAYS", help="expire after DAYS days"
    )
    expiry.add_argument(
        "--expires-at", default=None, metavar="TIME", help="expire at an ISO 8601 time with offset"
    )
    revoke = key_commands.add_parser("revoke", help="revoke a key everywhere")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", default=None)
    key_commands.add_parser("list", help="every key issued (no secrets)")
    rebuilds = commands.add_parser(
        "rebuild", help="rebuild a service's read models from its topics, then swap them in"
    )
    rebuilds.add_argument("service", choices=registry.NAMES)
    rebuilds.add_argument(
        "--max-lag",
        type=int,
        default=500,
        help="swap once the rebuild is this close to the log ends (the live consumers "
        "apply the rest)",
    )
    _demo_parser(commands)
    return root


def _demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="load a synthetic two-year history (BG/NBD purchases, Gamma-Gamma spend) "
        "through ingest's API",
    )
    demo.add_argument("--customers", type=_positive, default=3000, help="default 3000")
    demo.add_argument("--seed", type=int, default=1, help="same seed, same history (default 1)")
    demo.add_argument(
        "--until",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="the history ends at midnight UTC starting this day (default: today)",
    )
    demo.add_argument(
        "--url", default=None, help="ingest (default CRM_INGEST_URL, else the dev stack's)"
    )
    demo.add_argument(
        "--api-key",
        default=None,
        help="a key with events:write (default CRM_API_KEY, else the dev stack's admin key)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# What each command connects to: (PostgreSQL, the broker).
NEEDS = {
    "topics": (False, True),
    "lag": (True, True),
    "replay-deadletter": (True, True),
    "import": (True, False),
    "keys": (True, False),
    "rebuild": (True, True),
    "demo": (False, False),  # only ingest's HTTP API
}
CONNECT_TIMEOUT = 10.0
# Errors that mean a connection failed (or broke) rather than a bug: one line, no traceback.
DATABASE_CONNECTION_ERRORS = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


class Unreachable(Exception):
    """A database or broker `crm` cannot connect to; the message is the one line to show."""


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings, stack_env = _settings()
    except ValidationError as error:  # its text would quote the values, secrets included
        sys.exit("crm: " + "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in error.errors()))
    database, broker = NEEDS[args.command]
    try:
        asyncio.run(_reach(settings, stack_env, database=database, broker=broker))
        _run(args, settings)
    except Unreachable as error:
        sys.exit(str(error))
    except KafkaConnectionError as error:  # the broker went away while the command ran
        sys.exit(_broker_unreachable(settings, stack_env, error))
    except DATABASE_CONNECTION_ERRORS as error:  # so did PostgreSQL
        sys.exit(_database_unreachable(settings, stack_env, error))


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable a settings error is about."""
    return "_".join(str(part) for part in location).upper()


def _settings() -> tuple[CommonSettings, Path | None]:
    """The environment's settings; with neither DATABASE_URL nor KAFKA_BOOTSTRAP_SERVERS set,
    the running dev stack's (and the stack.env file they came from), where there is one."""
    if os.environ.get("DATABASE_URL") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return CommonSettings(), None
    stack_env = devstack.data_dir() / devstack.STACK_ENV
    try:
        stack = devstack.read_stack_env(stack_env)
    except FileNotFoundError:
        return CommonSettings(), None
    print(f"crm: using the dev stack's settings from {stack_env}", file=sys.stderr)
    given: dict[str, Any] = {
        name.lower(): value
        for name, value in stack.items()
        if name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KEY_SIGNING_SECRET")
        and not os.environ.get(name)  # a secret set in this shell still wins
    }
    return CommonSettings(**given), stack_env


async def _reach(
    settings: CommonSettings, stack_env: Path | None, *, database: bool, broker: bool
) -> None:
    """Connect once to what the command needs, so a failure names the one it could not reach
    before the command has done anything."""
    if database:
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=CONNECT_TIMEOUT)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as error:
            raise Unreachable(_database_unreachable(settings, stack_env, error)) from error
        await conn.close()
    if broker:
        client = kafka.admin(settings)
        library_log = logging.getLogger("aiokafka")
        level = library_log.level
        library_log.setLevel(logging.CRITICAL)  # its warning would be a second line
        try:
            await client.start()
        except KafkaConnectionError as error:
            raise Unreachable(_broker_unreachable(settings, stack_env, error)) from error
        finally:
            await client.close()
            library_log.setLevel(level)


def _database_unreachable(
    settings: CommonSettings, stack_env: Path | None, error: BaseException
) -> str:
    url = devstack.without_password(settings.database_url)
    hint = _where_to_point(stack_env, "DATABASE_URL", "postgresql://USER:PASSWORD@HOST:5432/DB")
    return f"crm: cannot reach PostgreSQL at {url}: {_reason(settings, error)}; {hint}"


def _broker_unreachable(
    settings: CommonSettings, stack_env: Path | None, error: BaseException
) -> str:
    hint = _where_to_point(stack_env, "KAFKA_BOOTSTRAP_SERVERS", "HOST:9092")
    return (
        f"crm: cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}: "
        f"{_reason(settings, error)}; {hint}"
    )


def _where_to_point(stack_env: Path | None, variable: str, example: str) -> str:
    if stack_env is not None:
        return (
            f"these are the dev stack's settings from {stack_env}: is `make run` still up? "
            f"Or set {variable} (e.g. {example})"
        )
    return f"set {variable} (e.g. {example}), or start the dev stack with `make run`"


def _reason(settings: CommonSettings, error: BaseException) -> str:
    """What went wrong, without a password the error text may quote."""
    if isinstance(error, KafkaConnectionError):
        return "no broker answered there"  # its text only lists the addresses it tried
    reason = " ".join(str(error).split()) or type(error).__name__
    for secret in (settings.database_url, _password(settings.database_url)):
        if secret:
            reason = reason.replace(secret, "***")
    return reason


def _password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


def _run(args: argparse.Namespace, settings: CommonSettings) -> None:
    if args.command == "topics":
        asyncio.run(topics(settings))
    elif args.command == "lag":
        asyncio.run(lag(settings))
    elif args.command == "replay-deadletter":
        asyncio.run(replay_deadletter(settings, args.dry_run))
    elif args.command == "import":
        mapping = dict(
            item.split("=", 1)
            if not item.startswith("=")
            else ("=" + item[1:].split("=", 1)[0], item[1:].split("=", 1)[1])
            for item in args.map
        )
        asyncio.run(import_file(settings, args.kind, args.file, mapping))
    elif args.command == "keys" and args.keys_command == "create":
        expires_at = _expiry(args)
        asyncio.run(keys_create(settings, args.name, args.scope, args.rate_limit, expires_at))
    elif args.command == "keys" and args.keys_command == "revoke":
        asyncio.run(keys_revoke(settings, args.key_id, args.reason))
    elif args.command == "keys":
        asyncio.run(keys_list(settings))
    elif args.command == "rebuild":
        asyncio.run(rebuild_service(settings, args.service, args.max_lag))
    elif args.command == "demo":
        try:
            demo_post.run(args.customers, args.seed, args.until, args.url, args.api_key)
        except demo_post.DemoError as error:
            sys.exit(str(error))


if __name__ == "__main__":
    main()
