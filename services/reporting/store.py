"""Reporting's SQL: write a batch's rows (domain.fold) into the read models; read the
ingredients of every (period, slice) cell that metrics.py turns into KPIs.

Writes are additive upserts or keyed upserts where the latest (earliest) by event time wins
(see migrations/002_kpis.sql), so they do not depend on arrival order.

Two instances may store batches of the same customer at once (one customer's events can sit
on partitions owned by different instances), so no write reads a row to decide what to write:
every table is written by one statement per batch that is either an insert of new facts or a
commutative upsert, where the new value is computed by PostgreSQL from the row as it is when
the statement locks it (`SET n = t.n + EXCLUDED.n`, `least`/`greatest`, or "replace only if
earlier/later" in the conflict clause). A second transaction touching the same row waits for
the first to end and then applies its own change on top. The statements run in one fixed
order of tables, each taking its rows in key order (ORDER BY, sorted by PostgreSQL, cheaper
than in Python), so two instances lock rows in the same order and cannot deadlock.

One step reads before it writes, under a lock: the customer-base counters (base.py,
migrations/006). A customer's part of them depends on all their purchase days and classes,
so the fold locks the customer's `base_members` row (an upsert, in key order, at its place
in the order of tables), merges what the batch learnt into the inputs kept there and adds
the difference between the new and the old part to `base_days`. A second instance
recounting the same customer waits for the lock and starts from the first one's result.

Reads take the periods as two arrays (starts, exclusive stops) computed by kpi.py, so the
calendar is defined once, and group facts by period and slice. The customer base is read
from its daily counters (a sum per slice of the days before the range, and the range's
rows), whatever the range's length. Tier and segment are looked
up at query time from the class history, so a late tier change re-attributes the facts of
its days and a rebuild gives the same answers. The SQL text only ever contains fragments
chosen from this module (the dimension is an enum), never request input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from services.reporting import base, kpi
from services.reporting.domain import UNKNOWN, Batch, Order, SaleDelta, churn_reason
from services.reporting.metrics import Cell, Dimension, Source, TierValue
from shared.db import Connection, Pool

UNSCORED = "unscored"  # the slice of customers scoring never classed


# --------------------------------------------------------------------------- writes

Row = dict[str, Any]


def _rows(*columns: str) -> str:
    """The column list and `SELECT` of an insert whose rows are the batch's, sent as one
    JSON document ($1) with an object per row; `columns` are "name type". One text parameter
    costs the driver far less than an array per column, whose every element it checks in
    Python; PostgreSQL parses the document in C."""
    names = ", ".join(column.split()[0] for column in columns)
    return f"({names}) SELECT * FROM json_to_recordset($1::text::json) AS u({', '.join(columns)})"


def _document(rows: list[Row]) -> str:
    """The rows as JSON: dates and times as RFC 3339 (the contract's times have offsets in
    whole minutes, which orjson writes exactly), amounts (Decimal) as text."""
    return orjson.dumps(rows, default=str).decode()


async def _insert(conn: Connection, sql: str, rows: list[Row]) -> None:
    if rows:
        await conn.execute(sql, _document(rows))


async def _insert_facts(conn: Connection, table: str, facts: Iterable[Any], *columns: str) -> None:
    """New facts, one row per event, rows already stored skipped: each column ("name type")
    is the fact's attribute of that name."""
    names = [column.split()[0] for column in columns]
    await _insert(
        conn,
        f"INSERT INTO {table} {_rows(*columns)} ON CONFLICT DO NOTHING",
        [{name: getattr(fact, name) for name in names} for fact in facts],
    )


async def write(conn: Connection, batch: Batch) -> None:
    """Add one batch's rows to the read models (in the runtime's transaction)."""
    await _write_sales(conn, batch)
    await _write_customers(conn, batch)
    await _write_classes(conn, batch)
    await _write_base(conn, batch)
    await _write_activity(conn, batch)
    await _write_complaints(conn, batch)
    await _write_sla(conn, batch)
    # New facts, one row per event: an insert, nothing to merge.
    await _insert_facts(
        conn,
        "crisis_alerts",
        batch.alerts,
        "event_id text",
        "detected_at timestamptz",
        "day date",
        "dimension text",
        "value text",
        "window_start timestamptz",
        "window_end timestamptz",
        "count int",
        "baseline float8",
        "score float8",
    )
    await _insert_facts(
        conn,
        "marketing_spend",
        batch.spend,
        "event_id text",
        "day date",
        "channel text",
        "campaign text",
        "amount numeric",
    )


# An order that is all of one category with no items ('unknown', share 1) stores NULLs: the
# refund attribution reads them as exactly that (_read_sales), and most orders are so.
_UNCATEGORISED = ((UNKNOWN,), (Decimal(1),))


def _order_row(customer: str, order_id: str, o: Order) -> Row:
    plain = (o.categories, o.shares) == _UNCATEGORISED
    return {
        "customer_id": customer,
        "order_id": order_id,
        "completed_at": o.completed_at,
        "event_id": o.event_id,
        "channel": o.channel,
        "categories": None if plain else o.categories,
        "shares": None if plain else o.shares,
    }


async def _write_sales(conn: Connection, batch: Batch) -> None:
    # Additive: commutative upserts (the row's own counts plus the batch's).
    nothing = SaleDelta()
    await _insert(
        conn,
        "INSERT INTO sales "
        + _rows(
            "day date",
            "customer_id text",
            "channel text",
            "orders int",
            "revenue numeric",
            "uncategorised_orders int",
            "uncategorised_revenue numeric",
        )
        + " ORDER BY 1, 2, 3 ON CONFLICT (day, customer_id, channel) DO UPDATE SET"
        " orders = sales.orders + EXCLUDED.orders, revenue = sales.revenue + EXCLUDED.revenue,"
        " uncategorised_orders = sales.uncategorised_orders + EXCLUDED.uncategorised_orders,"
        " uncategorised_revenue = sales.uncategorised_revenue + EXCLUDED.uncategorised_revenue",
        [
            {
                "day": day,
                "customer_id": customer,
                "channel": channel,
                "orders": d.orders,
                "revenue": d.revenue,
                "uncategorised_orders": u.orders,
                "uncategorised_revenue": u.revenue,
            }
            for (day, customer, channel), d in batch.sales.items()
            for u in (batch.uncategorised.get((day, customer, channel), nothing),)
        ],
    )
    await _insert(
        conn,
        "INSERT INTO item_category_sales "
        + _rows("day date", "customer_id text", "category text", "orders int", "revenue numeric")
        + " ORDER BY 1, 2, 3 ON CONFLICT (day, customer_id, category) DO UPDATE SET"
        " orders = item_category_sales.orders + EXCLUDED.orders,"
        " revenue = item_category_sales.revenue + EXCLUDED.revenue",
        [
            {
                "day": day,
                "customer_id": customer,
                "category": category,
                "orders": d.orders,
                "revenue": d.revenue,
            }
            for (day, customer, category), d in batch.item_category_sales.items()
        ],
    )
    # Keyed: a month with a purchase is a fact, written once.
    await _insert(
        conn,
        "INSERT INTO customer_months "
        + _rows("customer_id text", "month date")
        + " ORDER BY 1, 2 ON CONFLICT DO NOTHING",
        [{"customer_id": c, "month": month} for c, month in batch.customer_months],
    )
    # Keyed, earliest completion wins: decided in the conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO orders "
        + _rows(
            "customer_id text",
            "order_id text",
            "completed_at timestamptz",
            "event_id text",
            "channel text",
            "categories text[]",
            "shares numeric[]",
        )
        + " ORDER BY 1, 2 ON CONFLICT (customer_id, order_id) DO UPDATE SET"
        " completed_at = EXCLUDED.completed_at, event_id = EXCLUDED.event_id,"
        " channel = EXCLUDED.channel, categories = EXCLUDED.categories, shares = EXCLUDED.shares"
        " WHERE (EXCLUDED.completed_at, EXCLUDED.event_id)"
        " < (orders.completed_at, orders.event_id)",
        [_order_row(c, order_id, o) for (c, order_id), o in batch.orders.items()],
    )
    await _insert_facts(
        conn,
        "refunds",
        batch.refunds,
        "event_id text",
        "customer_id text",
        "order_id text",
        "day date",
        "time timestamptz",
        "amount numeric",
        "reason text",
    )


def _beats(columns: Sequence[str], table: str, op: str) -> str:
    """Whether the batch's value of `columns` (compared as a row) is `op` the stored row's,
    or the stored row has none; false when the batch has none."""
    new = ", ".join(f"EXCLUDED.{c}" for c in columns)
    old = ", ".join(f"{table}.{c}" for c in columns)
    return f"coalesce(({new}) {op} ({old}), EXCLUDED.{columns[0]} IS NOT NULL)"


def _take_if(condition: str, table: str, *columns: str) -> str:
    return ", ".join(
        f"{c} = CASE WHEN {condition} THEN EXCLUDED.{c} ELSE {table}.{c} END" for c in columns
    )


def _latest(field: str) -> str:
    return _beats((f"{field}_at", f"{field}_by"), "c", ">")


_LATEST_FIELDS = ("acquisition_channel", "churn_reason")

# One row per customer with every field the batch sets, merged in the conflict clause with
# the row as locked (least first purchase, latest value per field). A row the batch does not
# change is not rewritten (most purchases are by customers already known).
_WRITE_CUSTOMERS = (
    "INSERT INTO customers AS c "
    + _rows(
        "customer_id text",
        "first_purchase_day date",
        *(c for f in _LATEST_FIELDS for c in (f"{f} text", f"{f}_at timestamptz", f"{f}_by text")),
    )
    + " ORDER BY 1 ON CONFLICT (customer_id) DO UPDATE SET"
    " first_purchase_day = least(c.first_purchase_day, EXCLUDED.first_purchase_day), "
    + ", ".join(_take_if(_latest(f), "c", f, f"{f}_at", f"{f}_by") for f in _LATEST_FIELDS)
    + f" WHERE {_beats(('first_purchase_day',), 'c', '<')}"
    + "".join(f" OR {_latest(f)}" for f in _LATEST_FIELDS)
)


def _customer_row(batch: Batch, customer: str) -> Row:
    """The fields the batch sets (a field left out is NULL: nothing to merge)."""
    row: Row = {"customer_id": customer, "first_purchase_day": batch.first_purchase.get(customer)}
    for field, values in (
        ("acquisition_channel", batch.acquisition_channel),
        ("churn_reason", batch.churn_reason),
    ):
        if (latest := values.get(customer)) is not None:
            row |= {field: latest.value, f"{field}_at": latest.at, f"{field}_by": latest.event_id}
    return row


async def _write_customers(conn: Connection, batch: Batch) -> None:
    customers = (
        batch.first_purchase.keys() | batch.acquisition_channel.keys() | batch.churn_reason.keys()
    )
    await _insert(conn, _WRITE_CUSTOMERS, [_customer_row(batch, c) for c in customers])


async def _write_classes(conn: Connection, batch: Batch) -> None:
    # Keyed, latest wins: decided in the conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO customer_classes "
        + _rows(
            "customer_id text",
            "kind text",
            "day date",
            "as_of timestamptz",
            "event_id text",
            "value text",
        )
        + " ORDER BY 1, 2, 3 ON CONFLICT (customer_id, kind, day) DO UPDATE SET"
        " as_of = EXCLUDED.as_of, event_id = EXCLUDED.event_id, value = EXCLUDED.value"
        " WHERE (EXCLUDED.as_of, EXCLUDED.event_id)"
        " > (customer_classes.as_of, customer_classes.event_id)",
        [
            {
                "customer_id": customer,
                "kind": kind,
                "day": day,
                "as_of": r.as_of,
                "event_id": r.event_id,
                "value": r.value,
            }
            for (customer, kind, day), r in batch.classes.items()
        ],
    )
    await _insert(
        conn,
        "INSERT INTO tier_summaries "
        + _rows(
            "tier text",
            "day date",
            "as_of timestamptz",
            "customers int",
            "customer_equity numeric",
            "average_clv numeric",
        )
        + " ORDER BY 1, 2 ON CONFLICT (tier, day) DO UPDATE SET"
        " as_of = EXCLUDED.as_of, customers = EXCLUDED.customers,"
        " customer_equity = EXCLUDED.customer_equity, average_clv = EXCLUDED.average_clv"
        " WHERE EXCLUDED.as_of >= tier_summaries.as_of",
        [
            {
                "tier": tier,
                "day": day,
                "as_of": r.as_of,
                "customers": r.customers,
                "customer_equity": r.customer_equity,
                "average_clv": r.average_clv,
            }
            for (tier, day), r in batch.tier_summaries.items()
        ],
    )


# --------------------------------------------------------------------------- customer base

_LOCK_MEMBERS = (
    "INSERT INTO base_members AS m (customer_id) SELECT unnest($1::text[]) ORDER BY 1"
    " ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id"
    " RETURNING customer_id, state::text"
)
# Read after the members are locked, by a statement of its own: its snapshot has whatever
# store.converge_base committed before (it may have changed the window meanwhile).
_WINDOW = "SELECT window_days FROM base_window"
_WRITE_COUNTERS = (
    "INSERT INTO base_days AS b "
    + _rows(
        "window_days int", "dim text", "slice text", "day date", *(f"{c} int" for c in base.COLUMNS)
    )
    + " ORDER BY 1, 2, 4, 3 ON CONFLICT (window_days, dim, day, slice) DO UPDATE SET "
    + ", ".join(f"{c} = b.{c} + EXCLUDED.{c}" for c in base.COLUMNS)
    + " RETURNING ctid, "
    + " AND ".join(f"{c} = 0" for c in base.COLUMNS)
    + " AS empty"
)
# An upsert of rows that exist (the lock made them): found through the key's index
# whatever the planner's statistics say, where an UPDATE .. FROM might scan the table.
_UPDATE_MEMBERS = (
    "INSERT INTO base_members AS m "
    + _rows("customer_id text", "window_days int", "state jsonb")
    + " ORDER BY 1 ON CONFLICT (customer_id) DO UPDATE"
    " SET window_days = EXCLUDED.window_days, state = EXCLUDED.state"
)


def _base_customers(batch: Batch) -> set[str]:
    """Customers whose part of the base counters the batch may change."""
    return (
        {customer for _, customer, _ in batch.sales}
        | {customer for customer, _, _ in batch.classes}
        | batch.acquisition_channel.keys()
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """A time as whole microseconds since 1970 (exact; compared as numbers)."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass
class Learnt:
    """What one batch tells the base counters about its customers."""

    days: dict[str, set[int]] = dataclass_field(default_factory=dict)
    classes: dict[tuple[str, str], list[base.ClassChange]] = dataclass_field(default_factory=dict)
    channels: dict[str, base.ChannelSet] = dataclass_field(default_factory=dict)


def _learnt(batch: Batch) -> Learnt:
    found = Learnt()
    for day, customer, _ in batch.sales:
        found.days.setdefault(customer, set()).add(day.toordinal())
    for (customer, kind, day), r in batch.classes.items():
        change = (day.toordinal(), _micros(r.as_of), r.event_id, r.value)
        found.classes.setdefault((customer, kind), []).append(change)
    for customer, latest in batch.acquisition_channel.items():
        found.channels[customer] = (_micros(latest.at), latest.event_id, latest.value)
    return found


async def _write_base(conn: Connection, batch: Batch) -> None:
    learnt = _learnt(batch)
    customers = learnt.days.keys() | {c for c, _ in learnt.classes} | learnt.channels.keys()
    if customers:
        await recount_members(conn, sorted(customers), learnt)


async def recount_members(conn: Connection, customers: list[str], learnt: Learnt) -> None:
    """Lock the members (in key order, so two instances cannot deadlock), merge what the
    batch learnt into their inputs, and write the difference between their new and old
    parts of the counters (counted with the window in force now)."""
    old = {
        r["customer_id"]: base.Member.from_json(orjson.loads(r["state"])) if r["state"] else None
        for r in await conn.fetch(_LOCK_MEMBERS, customers)
    }
    window = await conn.fetchval(_WINDOW) or base.DEFAULT_WINDOW
    new: dict[str, base.Member] = {}
    for customer in customers:
        before = old[customer] or base.Member(None, ())
        new[customer] = base.Member(
            window,
            tuple(sorted(set(before.days) | learnt.days.get(customer, set()))),
            base.merge_classes(before.tier, learnt.classes.get((customer, "tier"), ())),
            base.merge_classes(before.segment, learnt.classes.get((customer, "segment"), ())),
            base.latest_channel(before.channel, learnt.channels.get(customer)),
        )
    await _write_counters(conn, base.difference((old[c], new[c]) for c in customers))
    await conn.execute(
        _UPDATE_MEMBERS,
        _document(
            [
                {"customer_id": c, "window_days": m.window, "state": m.to_json()}
                for c, m in new.items()
                if m != old[c]
            ]
        ),
    )


async def _write_counters(conn: Connection, counts: base.Counts) -> None:
    if not counts:
        return
    rows = [
        {"window_days": w, "dim": dim, "slice": slice_, "day": date.fromordinal(day)}
        | dict(zip(base.COLUMNS, values, strict=True))
        for (w, dim, slice_, day), values in counts.items()
    ]
    written = await conn.fetch(_WRITE_COUNTERS, _document(rows))
    empty = [r["ctid"] for r in written if r["empty"]]
    if empty:  # a row back to all zeros: gone, so the tables do not depend on the history
        await conn.execute("DELETE FROM base_days WHERE ctid = ANY($1::tid[])", empty)


async def _write_activity(conn: Connection, batch: Batch) -> None:
    # Additive: commutative upserts.
    await _insert(
        conn,
        "INSERT INTO interactions "
        + _rows("day date", "customer_id text", "channel text", "interactions int", "negative int")
        + " ORDER BY 1, 2, 3 ON CONFLICT (day, customer_id, channel) DO UPDATE SET"
        " interactions = interactions.interactions + EXCLUDED.interactions,"
        " negative = interactions.negative + EXCLUDED.negative",
        [
            {
                "day": day,
                "customer_id": customer,
                "channel": channel,
                "interactions": n,
                "negative": negative,
            }
            for (day, customer, channel), (n, negative) in batch.interactions.items()
        ],
    )
    await _insert(
        conn,
        "INSERT INTO interaction_kinds "
        + _rows(
            "day date",
            "customer_id text",
            "channel text",
            "handled_by text",
            "mode text",
            "interactions int",
        )
        + " ORDER BY 1, 2, 3, 4, 5"
        " ON CONFLICT (day, customer_id, channel, handled_by, mode) DO UPDATE SET"
        " interactions = interaction_kinds.interactions + EXCLUDED.interactions",
        [
            {
                "day": day,
                "customer_id": customer,
                "channel": channel,
                "handled_by": handled_by,
                "mode": mode,
                "interactions": n,
            }
            for (day, customer, channel, handled_by, mode), n in batch.interaction_kinds.items()
        ],
    )
    await _insert(
        conn,
        "INSERT INTO survey_answers "
        + _rows(
            "day date",
            "customer_id text",
            "kind text",
            "channel text",
            "score int",
            "responses int",
        )
        + " ORDER BY 1, 2, 3, 4, 5"
        " ON CONFLICT (day, customer_id, kind, channel, score) DO UPDATE SET"
        " responses = survey_answers.responses + EXCLUDED.responses",
        [
            {
                "day": day,
                "customer_id": customer,
                "kind": kind,
                "channel": channel,
                "score": score,
                "responses": n,
            }
            for (day, customer, kind, channel, score), n in batch.surveys.items()
        ],
    )


_OPENING = (
    "customer_id",
    "opened_at",
    "opened_by",
    "opened_day",
    "channel",
    "category",
    "priority",
)
_EARLIER_OPENING = _beats(("opened_at", "opened_by"), "k", "<")
_MARKS = ("last_resolved_at", "last_reopened_at")

# One row per complaint the batch mentions, merged in the conflict clause with the row as
# locked: the earliest opening's fields, the latest resolution and reopening. A row the
# batch does not change is not rewritten.
_WRITE_COMPLAINTS = (
    "INSERT INTO complaints AS k "
    + _rows(
        "complaint_id text",
        "customer_id text",
        "opened_at timestamptz",
        "opened_by text",
        "opened_day date",
        "channel text",
        "category text",
        "priority text",
        "last_resolved_at timestamptz",
        "last_reopened_at timestamptz",
    )
    + f" ORDER BY 1 ON CONFLICT (complaint_id) DO UPDATE SET"
    f" {_take_if(_EARLIER_OPENING, 'k', *_OPENING)}, "
    + ", ".join(f"{m} = greatest(k.{m}, EXCLUDED.{m})" for m in _MARKS)
    + f" WHERE {_EARLIER_OPENING}"
    + "".join(f" OR {_beats((m,), 'k', '>')}" for m in _MARKS)
)


def _complaint_row(batch: Batch, complaint_id: str) -> Row:
    row: Row = {
        "complaint_id": complaint_id,
        "customer_id": batch.complaint_customers[complaint_id],
    }
    if (o := batch.openings.get(complaint_id)) is not None:
        row |= {
            "customer_id": o.customer_id,
            "opened_at": o.at,
            "opened_by": o.event_id,
            "opened_day": o.day,
            "channel": o.channel,
            "category": o.category,
            "priority": o.priority,
        }
    if (resolved := batch.resolved.get(complaint_id)) is not None:
        row["last_resolved_at"] = resolved.at
    if (reopened := batch.reopened.get(complaint_id)) is not None:
        row["last_reopened_at"] = reopened.at
    return row


async def _write_complaints(conn: Connection, batch: Batch) -> None:
    await _insert(
        conn,
        _WRITE_COMPLAINTS,
        [_complaint_row(batch, cid) for cid in batch.complaint_customers],
    )
    # New facts, one row per event.
    await _insert_facts(
        conn,
        "complaint_resolutions",
        batch.resolutions,
        "event_id text",
        "complaint_id text",
        "customer_id text",
        "day date",
    )
    await _insert_facts(
        conn,
        "complaint_feedback",
        batch.feedback,
        "event_id text",
        "complaint_id text",
        "customer_id text",
        "day date",
        "score int",
    )


async def _write_sla(conn: Connection, batch: Batch) -> None:
    # Keyed: the latest stop of a clock, the earliest breach of a cycle, decided in the
    # conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO sla_clocks "
        + _rows(
            "complaint_id text",
            "metric text",
            "cycle int",
            "customer_id text",
            "stopped_at timestamptz",
            "event_id text",
            "day date",
            "outcome text",
            "elapsed_seconds float8",
            "target_seconds float8",
            "tier text",
            "category text",
            "channel text",
        )
        + " ORDER BY 1, 2, 3 ON CONFLICT (complaint_id, metric, cycle) DO UPDATE SET"
        " customer_id = EXCLUDED.customer_id, stopped_at = EXCLUDED.stopped_at,"
        " event_id = EXCLUDED.event_id, day = EXCLUDED.day, outcome = EXCLUDED.outcome,"
        " elapsed_seconds = EXCLUDED.elapsed_seconds, target_seconds = EXCLUDED.target_seconds,"
        " tier = EXCLUDED.tier, category = EXCLUDED.category, channel = EXCLUDED.channel"
        " WHERE (EXCLUDED.stopped_at, EXCLUDED.event_id)"
        " > (sla_clocks.stopped_at, sla_clocks.event_id)",
        [
            {
                "complaint_id": complaint_id,
                "metric": metric,
                "cycle": cycle,
                "customer_id": c.customer_id,
                "stopped_at": c.at,
                "event_id": c.event_id,
                "day": c.day,
                "outcome": c.outcome,
                "elapsed_seconds": c.elapsed_seconds,
                "target_seconds": c.target_seconds,
                "tier": c.tier,
                "category": c.category,
                "channel": c.channel,
            }
            for (complaint_id, metric, cycle), c in batch.clocks.items()
        ],
    )
    await _insert(
        conn,
        "INSERT INTO sla_breaches "
        + _rows(
            "complaint_id text",
            "metric text",
            "cycle int",
            "customer_id text",
            "breached_at timestamptz",
            "event_id text",
            "day date",
            "tier text",
            "category text",
            "channel text",
        )
        + " ORDER BY 1, 2, 3 ON CONFLICT (complaint_id, metric, cycle) DO UPDATE SET"
        " customer_id = EXCLUDED.customer_id, breached_at = EXCLUDED.breached_at,"
        " event_id = EXCLUDED.event_id, day = EXCLUDED.day, tier = EXCLUDED.tier,"
        " category = EXCLUDED.category, channel = EXCLUDED.channel"
        " WHERE (EXCLUDED.breached_at, EXCLUDED.event_id)"
        " < (sla_breaches.breached_at, sla_breaches.event_id)",
        [
            {
                "complaint_id": complaint_id,
                "metric": metric,
                "cycle": cycle,
                "customer_id": b.customer_id,
                "breached_at": b.at,
                "event_id": b.event_id,
                "day": b.day,
                "tier": b.tier,
                "category": b.category,
                "channel": b.channel,
            }
            for (complaint_id, metric, cycle), b in batch.breaches.items()
        ],
    )


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Periods:
    starts: list[date]
    stops: list[date]  # exclusive
    granularity: kpi.Granularity | None = None  # None: not known to be whole calendar periods

    @classmethod
    def of(
        cls,
        starts: Iterable[date],
        granularity: kpi.Granularity,
        last: Mapping[date, date] | None = None,
    ) -> Periods:
        """Whole periods from their starts; `last` ends some of them early (inclusive)."""
        ordered = sorted(set(starts))
        stops = [kpi.next_period_start(s, granularity) for s in ordered]
        if last:
            stops = [
                min(stop, last[s] + timedelta(days=1)) if s in last else stop
                for s, stop in zip(ordered, stops, strict=True)
            ]
        return cls(ordered, stops, kpi.Granularity(granularity))


_PERIODS = """periods AS (SELECT * FROM unnest($1::date[], $2::date[]) AS p(start, stop)),
    period_days AS (
        SELECT p.start, p.stop, d::date AS day
        FROM periods p, generate_series(p.start, p.stop - 1, interval '1 day') AS d
    )"""


def _spans(kind: Dimension) -> str:
    """The class history as validity spans: the class of a day is the latest change of that
    day or before; before the first change, the first class (a customer is classed by the
    first re-score after their first events)."""
    return f"""spans AS (
        SELECT customer_id, value,
               CASE WHEN lag(day) OVER w IS NULL THEN '-infinity'::date ELSE day END
                   AS valid_from,
               coalesce(lead(day) OVER w, 'infinity'::date) AS valid_to
        FROM customer_classes WHERE kind = '{kind.value}'
        WINDOW w AS (PARTITION BY customer_id ORDER BY day)
    )"""


@dataclass(frozen=True)
class _Slicing:
    cte: str | None  # the spans CTE, when slicing by a class
    join: str
    expr: str


def _slicing(
    by: Dimension | None,
    *,
    customer: str,
    day: str,
    channel: str = "NULL",
    category: str = "NULL",
    tier: str | None = None,
) -> _Slicing:
    """How a query slices its facts: the slice expression, and the class spans it joins
    (on the customer and day given) when slicing by tier or segment."""
    if by is None:
        return _Slicing(None, "", "''")
    if by in (Dimension.TIER, Dimension.SEGMENT):
        own = f"{tier}, " if tier is not None and by is Dimension.TIER else ""
        return _Slicing(
            _spans(by),
            f"LEFT JOIN spans s ON s.customer_id = {customer}"
            f" AND {day} >= s.valid_from AND {day} < s.valid_to",
            f"coalesce({own}s.value, '{UNSCORED}')",
        )
    return _Slicing(None, "", channel if by is Dimension.CHANNEL else category)


def _with(*ctes: str | None) -> str:
    return "WITH " + ",\n".join([_PERIODS, *(c for c in ctes if c)])


Cells = dict[tuple[date, str], Cell]
Args = tuple[list[date], list[date]]


def _cell(cells: Cells, start: date, slice_: str) -> Cell:
    found = cells.get((start, slice_))
    if found is None:  # not setdefault: a Cell is dozens of objects to build
        found = cells[start, slice_] = Cell()
    return found


# The read model's version (services/reporting/memo.py): the state of every partition the
# fold applied (an applied batch moves its offsets in its own transaction, and a broker that
# lost its log changes the fingerprint) and of the base counters (their convergence to a
# window is the one write outside the fold).
_VERSION = """
SELECT (SELECT md5(coalesce(string_agg(
            concat_ws(':', consumer, topic, partition, next_offset, encode(fingerprint, 'hex')),
            ',' ORDER BY consumer, topic, partition), ''))
        FROM consumer_offsets)
    || (SELECT coalesce(string_agg(concat_ws(':', window_days, ready), ','), '')
        FROM base_window)"""


async def read_model_version(pool: Pool | Connection) -> str:
    """What changes whenever what the KPI reads answer can change (but today's date)."""
    version: str = await pool.fetchval(_VERSION)
    return version


async def read_cells(
    pool: Pool | Connection,
    periods: Periods,
    by: Dimension | None,
    sources: set[Source],
    *,
    today: date,
    churn_after_days: int,
    churn_reasons: bool = False,
    repeat_window_days: int = kpi.REPEAT_WINDOW_DAYS,
) -> Cells:
    """The ingredients of every (period start, slice) with data; slice '' when not sliced.

    `today` (local) ends the customer-base counts of the current period; `churn_after_days`
    is the inactivity window after which a customer is lost; `repeat_window_days` the
    shortest window of the repeat purchase rate (kpi.repeat_window)."""
    cells: Cells = {}
    args: Args = (periods.starts, periods.stops)
    if Source.SALES in sources:
        await _read_sales(pool, cells, args, by)
    if Source.REPEAT in sources:
        await _read_repeat(pool, cells, args, by, repeat_window_days)
    if Source.BASE in sources:
        counted = await _read_base_counters(pool, cells, periods, by, today, churn_after_days)
        await _read_base(
            pool, cells, args, by, today, churn_after_days, churn_reasons, counts=not counted
        )
    if Source.MARKETING in sources:
        await _read_marketing(pool, cells, args, by)
    if Source.VALUE in sources:
        await _read_value(pool, cells, args, by)
    if Source.SURVEYS in sources:
        await _read_surveys(pool, cells, args, by)
    if Source.COMPLAINTS in sources:
        await _read_complaints(pool, cells, args, by)
    if Source.SLA in sources:
        await _read_sla(pool, cells, args, by)
    if Source.CRISIS in sources:
        await _read_crisis(pool, cells, args, by)
    if Source.INTERACTIONS in sources:
        await _read_interactions(pool, cells, args, by)
    return cells


# The rows of the category_sales view without its grouping (migrations/003): the sums per
# customer below group them anyway, and the planner pushes the day range into both parts.
_CATEGORY_FACTS = (
    "(SELECT day, customer_id, category, orders, revenue FROM item_category_sales"
    f" UNION ALL SELECT day, customer_id, '{UNKNOWN}', uncategorised_orders,"
    " uncategorised_revenue FROM sales WHERE uncategorised_orders > 0) AS category_facts"
)


async def _read_sales(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Revenue net of refunds, orders, and exact distinct buyers and new buyers.

    Refunds count on their own day, in the channel and categories of their order (split by
    the order's shares), found at query time so that the order may arrive after them."""
    if by is Dimension.CATEGORY:
        table, refund_dim, refund_amount = _CATEGORY_FACTS, "x.dim", "round(r.amount * x.share, 6)"
        split = (
            "CROSS JOIN LATERAL unnest(coalesce(o.categories, ARRAY['unknown']::text[]),"
            " coalesce(o.shares, ARRAY[1]::numeric[])) AS x(dim, share)"
        )
        dim = "category"
    else:
        table, refund_dim, refund_amount = "sales", f"coalesce(o.channel, '{UNKNOWN}')", "r.amount"
        split, dim = "", "channel"
    sl = _slicing(by, customer="f.customer_id", day="f.day", channel="f.dim", category="f.dim")
    facts = f"""facts AS (
        SELECT day, customer_id, {dim} AS dim, orders, revenue FROM {table}
        WHERE day >= $1[1] AND day < $2[array_length($2, 1)]
        UNION ALL
        SELECT r.day, r.customer_id, {refund_dim}, 0, -{refund_amount}
        FROM refunds r
        LEFT JOIN orders o ON o.customer_id = r.customer_id AND o.order_id = r.order_id
        {split}
        WHERE r.day >= $1[1] AND r.day < $2[array_length($2, 1)]
    )"""
    per_customer = f"""per_customer AS (
        SELECT p.start, {sl.expr} AS slice, f.customer_id,
               sum(f.orders) AS orders, sum(f.revenue) AS revenue
        FROM facts f JOIN period_days p ON p.day = f.day
        {sl.join}
        GROUP BY 1, 2, 3
    )"""
    rows = await pool.fetch(
        _with(sl.cte, facts, per_customer)
        + """
        SELECT pc.start, pc.slice, sum(pc.revenue) AS revenue, sum(pc.orders)::int AS orders,
               count(*) FILTER (WHERE pc.orders >= 1)::int AS buyers,
               count(*) FILTER (WHERE pc.orders >= 1 AND c.first_purchase_day >= pc.start)::int
                   AS new_buyers
        FROM per_customer pc LEFT JOIN customers c ON c.customer_id = pc.customer_id
        GROUP BY 1, 2""",
        *args,
    )
    for r in rows:
        sales = _cell(cells, r["start"], r["slice"]).sales
        sales.revenue, sales.orders = r["revenue"], r["orders"]
        sales.buyers, sales.new_buyers = r["buyers"], r["new_buyers"]


async def _read_repeat(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None, days: int
) -> None:
    """Buyers and repeat buyers (2+ orders) of each period's repeat window (kpi.repeat_window:
    the period, or the `days` days up to its last day when shorter), sliced as sales are.
    Orders only: a refund takes money back, not the purchase."""
    starts, stops = args
    since = [
        kpi.repeat_window(start, stop, days) for start, stop in zip(starts, stops, strict=True)
    ]
    table, dim = (_CATEGORY_FACTS, "category") if by is Dimension.CATEGORY else ("sales", "channel")
    sl = _slicing(by, customer="f.customer_id", day="f.day", channel="f.dim", category="f.dim")
    periods = (
        "periods AS (SELECT * FROM unnest($1::date[], $2::date[], $3::date[])"
        " AS p(start, stop, since)),"
        " repeat_days AS (SELECT p.start, d::date AS day FROM periods p,"
        " generate_series(p.since, p.stop - 1, interval '1 day') AS d)"
    )
    facts = f"""facts AS (
        SELECT day, customer_id, {dim} AS dim, orders FROM {table}
        WHERE day >= (SELECT min(since) FROM periods) AND day < $2[array_length($2, 1)]
    )"""
    per_customer = f"""per_customer AS (
        SELECT p.start, {sl.expr} AS slice, f.customer_id, sum(f.orders) AS orders
        FROM facts f JOIN repeat_days p ON p.day = f.day
        {sl.join}
        GROUP BY 1, 2, 3
    )"""
    ctes = ",\n".join(c for c in (periods, sl.cte, facts, per_customer) if c)
    rows = await pool.fetch(
        f"""WITH {ctes}
        SELECT start, slice, count(*) FILTER (WHERE orders >= 1)::int AS buyers,
               count(*) FILTER (WHERE orders >= $4)::int AS repeat_buyers
        FROM per_customer GROUP BY 1, 2""",
        starts,
        stops,
        since,
        kpi.REPEAT_MIN_ORDERS,
    )
    for r in rows:
        repeat = _cell(cells, r["start"], r["slice"]).repeat
        repeat.buyers, repeat.repeat_buyers = r["buyers"], r["repeat_buyers"]


# A customer is active on day d when they bought on a day of (d - W, d] (W = the inactivity
# window, CHURN_AFTER_DAYS), and lost on day p + W after a purchase day p not
# followed by another within W days (nothing is cancelled in a shop).
# Per period [start, last] (last = today for the current period):
#   at_start: active on start - 1;   at_end: active on last;   active: on any day of it;
#   new: first purchase ever in it;  lost: at_start and lost on a day of it;
#   won_back: bought in it, had bought before it, but was not active at its start.
_BASE = """
    bounded AS (
        SELECT start, least(stop - 1, $3::date) AS last FROM periods WHERE start <= $3::date
    ),
    days AS (
        SELECT b.customer_id, b.day FROM daily_buyers b
        WHERE b.day >= (SELECT min(start) FROM bounded) - $4::int
          AND b.day <= (SELECT max(last) FROM bounded)
    ),
    losses AS (
        SELECT customer_id, day + $4::int AS lost_day
        FROM (SELECT customer_id, day,
                     lead(day) OVER (PARTITION BY customer_id ORDER BY day) AS next
              FROM days) AS d
        WHERE next IS NULL OR next > day + $4::int
    ),
    members AS (
        SELECT DISTINCT p.start, 'at_start' AS kind, d.customer_id
        FROM bounded p JOIN days d ON d.day >= p.start - $4::int AND d.day < p.start
        UNION ALL
        SELECT DISTINCT p.start, 'at_end', d.customer_id
        FROM bounded p JOIN days d ON d.day > p.last - $4::int AND d.day <= p.last
        UNION ALL
        SELECT DISTINCT p.start, 'active', d.customer_id
        FROM bounded p JOIN days d ON d.day > p.start - $4::int AND d.day <= p.last
        UNION ALL
        SELECT p.start, 'new', c.customer_id
        FROM bounded p JOIN customers c
          ON c.first_purchase_day >= p.start AND c.first_purchase_day <= p.last
        UNION ALL
        SELECT DISTINCT p.start, 'won_back', d.customer_id
        FROM bounded p JOIN days d ON d.day >= p.start AND d.day <= p.last
        JOIN customers c ON c.customer_id = d.customer_id AND c.first_purchase_day < p.start
        WHERE NOT EXISTS (
            SELECT 1 FROM days b WHERE b.customer_id = d.customer_id
              AND b.day >= p.start - $4::int AND b.day < p.start
        )
    ),
    lost AS (
        SELECT m.start, m.customer_id, min(l.lost_day) AS lost_day
        FROM members m JOIN bounded p ON p.start = m.start
        JOIN losses l ON l.customer_id = m.customer_id
                     AND l.lost_day >= p.start AND l.lost_day <= p.last
        WHERE m.kind = 'at_start'
        GROUP BY 1, 2
    ),
    facts AS (
        SELECT start, kind, customer_id, NULL::date AS lost_day FROM members
        UNION ALL
        SELECT start, 'lost', customer_id, lost_day FROM lost
    )"""


async def _read_base(
    pool: Pool | Connection,
    cells: Cells,
    args: Args,
    by: Dimension | None,
    today: date,
    window: int,
    reasons: bool,
    *,
    counts: bool = True,
) -> None:
    """Customers at start and end, new, active and lost (when `counts`), by the class each
    had on the period's first day or their acquisition channel; with the reasons of the lost,
    computed from the purchases at read time. Reads take the counts from the counters kept
    by the fold (`_read_base_counters`) and come here for them only when those count with
    another window or the periods are not whole calendar periods."""
    sl = _slicing(
        by,
        customer="f.customer_id",
        day="f.start",
        channel=f"coalesce(c.acquisition_channel, '{UNKNOWN}')",
    )
    head = _with(sl.cte, _BASE)
    source = f"FROM facts f LEFT JOIN customers c ON c.customer_id = f.customer_id {sl.join}"
    for r in (
        await pool.fetch(
            f"{head} SELECT f.start, {sl.expr} AS slice, f.kind,"
            f" count(DISTINCT f.customer_id)::int AS n {source} GROUP BY 1, 2, 3",
            *args,
            today,
            window,
        )
        if counts
        else ()
    ):
        setattr(_cell(cells, r["start"], r["slice"]).base, r["kind"], r["n"])
    if not reasons:
        return
    for r in await pool.fetch(
        f"""{head} SELECT f.start, {sl.expr} AS slice, c.churn_reason,
            (SELECT k.category FROM complaints k
             WHERE k.customer_id = f.customer_id AND k.opened_day <= f.lost_day
             ORDER BY k.opened_at DESC, k.complaint_id DESC LIMIT 1) AS complaint_category,
            (SELECT r.reason FROM refunds r
             WHERE r.customer_id = f.customer_id AND r.reason IS NOT NULL
               AND r.day <= f.lost_day
             ORDER BY r.time DESC, r.event_id DESC LIMIT 1) AS refund_reason
        {source} WHERE f.kind = 'lost'""",
        *args,
        today,
        window,
    ):
        reason = churn_reason(r["churn_reason"], r["complaint_category"], r["refund_reason"])
        _cell(cells, r["start"], r["slice"]).base.reasons[reason] += 1


_SUMS = ", ".join(f"sum({c})::int AS {c}" for c in base.COLUMNS)
# The counters of the days first ($3) .. last ($4), and their sums over the days before,
# per slice ($5: or all slices as one, '').
_BASE_COUNTERS = f"""
    SELECT CASE WHEN $5 THEN slice ELSE '' END AS slice, NULL::date AS day, {_SUMS}
    FROM base_days WHERE window_days = $1 AND dim = $2 AND day < $3 GROUP BY 1
    UNION ALL
    SELECT CASE WHEN $5 THEN slice ELSE '' END, day, {_SUMS}
    FROM base_days WHERE window_days = $1 AND dim = $2 AND day >= $3 AND day <= $4
    GROUP BY 1, 2"""


def _whole_periods(periods: Periods, today: date) -> list[tuple[date, date]] | None:
    """(first, last) of each period begun by `today`, last at most today; None unless every
    period starts on its calendar period's first day and ends within it."""
    g = periods.granularity
    if g is None:
        return None
    found = []
    for start, stop in zip(periods.starts, periods.stops, strict=True):
        if kpi.period_start(start, g) != start or stop > kpi.next_period_start(start, g):
            return None
        if start <= today:
            found.append((start, min(stop - timedelta(days=1), today)))
    return found


async def _read_base_counters(
    pool: Pool | Connection,
    cells: Cells,
    periods: Periods,
    by: Dimension | None,
    today: date,
    window: int,
) -> bool:
    """The customer-base counts of every period and slice from the fold's daily counters
    (base.py): the rows of the days of the periods, and one sum per slice of the days before.
    False when they cannot answer: they count with another inactivity window (or not every
    customer yet), or the periods are not whole calendar periods."""
    bounded = _whole_periods(periods, today)
    ready = await pool.fetchval("SELECT ready AND window_days = $1 FROM base_window", window)
    if bounded is None or not ready or periods.granularity is None:
        return False
    if not bounded:
        return True
    first = min(s for s, _ in bounded) - timedelta(days=1)
    last = max(last for _, last in bounded)
    dimension = by.value if by is not None else "channel"  # channels partition the customers
    before: dict[str, list[int]] = {}
    rows: dict[tuple[str, int], list[int]] = {}
    for r in await pool.fetch(_BASE_COUNTERS, window, dimension, first, last, by is not None):
        values = [r[c] for c in base.COLUMNS]
        if r["day"] is None:
            before[r["slice"]] = values
        else:
            rows[(r["slice"], r["day"].toordinal())] = values
    found = base.period_counts(
        before,
        rows,
        [(s.toordinal(), last.toordinal()) for s, last in bounded],
        periods.granularity.value,
        first.toordinal(),
    )
    for (start, slice_), counts in found.items():
        into = _cell(cells, date.fromordinal(start), slice_).base
        into.at_start, into.at_end, into.new = counts.at_start, counts.at_end, counts.new
        into.won_back, into.active, into.lost = counts.won_back, counts.active, counts.lost
    return True


async def converge_base(pool: Pool, window: int, chunk: int = 1000) -> bool:
    """Make the base counters count every customer with the inactivity window `window`:
    set it as the fold's, recount each member counted otherwise (or not yet: the purchases
    folded before migration 006), then mark the counters ready. Concurrent folds lock the
    same members, so either order gives the same counters. One instance at a time (a
    session advisory lock per schema); False when another holds it."""
    async with pool.acquire() as conn:
        lock = "hashtext(current_schema() || ':base_counters')"
        if not await conn.fetchval(f"SELECT pg_try_advisory_lock({lock})"):
            return False
        try:
            async with conn.transaction():
                row = await conn.fetchrow("SELECT window_days, ready FROM base_window FOR UPDATE")
                if row is not None and row["window_days"] == window and row["ready"]:
                    return True
                await conn.execute("UPDATE base_window SET window_days = $1, ready = false", window)
            after = ""
            while ids := await conn.fetch(
                "SELECT customer_id FROM base_members WHERE customer_id > $1"
                " AND window_days IS DISTINCT FROM $2 ORDER BY customer_id LIMIT $3",
                after,
                window,
                chunk,
            ):
                async with conn.transaction():
                    await recount_members(conn, [r["customer_id"] for r in ids], Learnt())
                after = ids[-1]["customer_id"]
            await conn.execute(
                "UPDATE base_window SET ready = true WHERE window_days = $1 AND NOT EXISTS"
                " (SELECT FROM base_members WHERE window_days IS DISTINCT FROM $1)",
                window,
            )
            return True
        finally:
            await conn.execute(f"SELECT pg_advisory_unlock({lock})")


async def _read_marketing(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    channel = "m.channel" if by is Dimension.CHANNEL else "''"
    for r in await pool.fetch(
        f"{_with()} SELECT p.start, {channel} AS slice, sum(m.amount) AS spend"
        " FROM marketing_spend m JOIN period_days p ON p.day = m.day"
        " GROUP BY 1, 2",
        *args,
    ):
        _cell(cells, r["start"], r["slice"]).marketing.spend = r["spend"]


async def _read_value(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Each period's last re-score: the tier summaries that share its latest as_of (a tier
    left empty by that re-score has none and drops out)."""
    rows = await pool.fetch(
        _with(
            """latest AS (
                SELECT p.start, max(t.as_of) AS as_of
                FROM period_days p JOIN tier_summaries t ON t.day = p.day
                GROUP BY 1
            )"""
        )
        + """
        SELECT l.start, t.tier, t.customers, t.customer_equity, t.average_clv
        FROM latest l JOIN periods p ON p.start = l.start
        JOIN tier_summaries t ON t.as_of = l.as_of AND t.day >= p.start AND t.day < p.stop
        ORDER BY 1, 2""",
        *args,
    )
    for r in rows:
        slice_ = r["tier"] if by is Dimension.TIER else ""
        _cell(cells, r["start"], slice_).value.tiers.append(
            TierValue(r["tier"], r["customers"], r["customer_equity"], r["average_clv"])
        )


async def _read_surveys(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    sl = _slicing(by, customer="a.customer_id", day="a.day", channel="a.channel")
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice, a.kind, a.score, sum(a.responses)::int AS n
        FROM survey_answers a JOIN period_days p ON p.day = a.day
        {sl.join} GROUP BY 1, 2, 3, 4""",
        *args,
    ):
        surveys = _cell(cells, r["start"], r["slice"]).surveys
        (surveys.nps if r["kind"] == "nps" else surveys.csat)[r["score"]] += r["n"]


_RESOLVED_NOW = (
    "k.last_resolved_at IS NOT NULL"
    " AND (k.last_reopened_at IS NULL OR k.last_resolved_at > k.last_reopened_at)"
)


async def _read_complaints(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Opened (and of those, resolved now), resolved, and feedback answers per period."""
    channel, category = f"coalesce(k.channel, '{UNKNOWN}')", f"coalesce(k.category, '{UNKNOWN}')"
    opened = _slicing(
        by, customer="k.customer_id", day="k.opened_day", channel=channel, category=category
    )
    for r in await pool.fetch(
        f"""{_with(opened.cte)}
        SELECT p.start, {opened.expr} AS slice, count(*)::int AS opened,
               count(*) FILTER (WHERE {_RESOLVED_NOW})::int AS opened_resolved
        FROM complaints k JOIN period_days p ON p.day = k.opened_day
        {opened.join} GROUP BY 1, 2""",
        *args,
    ):
        found = _cell(cells, r["start"], r["slice"]).complaints
        found.opened, found.opened_resolved = r["opened"], r["opened_resolved"]
    for table, column in (("complaint_resolutions", "resolved"), ("complaint_feedback", "score")):
        sl = _slicing(by, customer="e.customer_id", day="e.day", channel=channel, category=category)
        counted = "count(DISTINCT e.complaint_id)::int" if column == "resolved" else "count(*)::int"
        group = "e.score" if column == "score" else "0"
        for r in await pool.fetch(
            f"""{_with(sl.cte)}
            SELECT p.start, {sl.expr} AS slice, {group} AS score, {counted} AS n
            FROM {table} e JOIN period_days p ON p.day = e.day
            LEFT JOIN complaints k ON k.complaint_id = e.complaint_id
            {sl.join} GROUP BY 1, 2, 3""",
            *args,
        ):
            found = _cell(cells, r["start"], r["slice"]).complaints
            if column == "resolved":
                found.resolved = r["n"]
            else:
                found.feedback[r["score"]] += r["n"]


# Each clock's verdict for SLA compliance (domain.sla_verdicts, the same rule): a clock with
# a breach is breached on its breach's day, stopped or not, with the attributes the breach
# carried (the stop's where it carried none); a clock without one counts its latest stop on
# the stop's day. One row per clock: the stop of a breached clock is not a second verdict.
_VERDICTS = """verdicts AS (
        SELECT b.complaint_id, b.metric, b.customer_id, b.day, 'breached' AS outcome,
               coalesce(b.tier, c.tier) AS tier, coalesce(b.category, c.category) AS category,
               coalesce(b.channel, c.channel) AS channel
        FROM sla_breaches b LEFT JOIN sla_clocks c USING (complaint_id, metric, cycle)
        UNION ALL
        SELECT c.complaint_id, c.metric, c.customer_id, c.day, c.outcome, c.tier, c.category,
               c.channel
        FROM sla_clocks c
        WHERE NOT EXISTS (
            SELECT FROM sla_breaches b
            WHERE (b.complaint_id, b.metric, b.cycle) = (c.complaint_id, c.metric, c.cycle)
        )
    )"""


async def _read_sla(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Clock verdicts (met or breached, `_VERDICTS`), business seconds of the clocks stopped
    in the period (by stop day) and breaches (by breach day). Tier is the one the complaints
    service recorded on the event when it did."""
    sl = _slicing(
        by,
        customer="e.customer_id",
        day="e.day",
        channel=f"coalesce(e.channel, k.channel, '{UNKNOWN}')",
        category=f"coalesce(e.category, k.category, '{UNKNOWN}')",
        tier="e.tier",
    )
    source = f"""period_days p ON p.day = e.day
        LEFT JOIN complaints k ON k.complaint_id = e.complaint_id {sl.join}"""
    for r in await pool.fetch(
        f"""{_with(sl.cte, _VERDICTS)}
        SELECT p.start, {sl.expr} AS slice, e.metric, e.outcome, count(*)::int AS n
        FROM verdicts e JOIN {source} GROUP BY 1, 2, 3, 4""",
        *args,
    ):
        sla = _cell(cells, r["start"], r["slice"]).sla
        (sla.met if r["outcome"] == "met" else sla.breached)[r["metric"]] += r["n"]
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice, e.metric, e.elapsed_seconds
        FROM sla_clocks e JOIN {source}
        ORDER BY e.complaint_id, e.metric, e.cycle""",
        *args,
    ):
        sla = _cell(cells, r["start"], r["slice"]).sla
        sla.elapsed.setdefault(r["metric"], []).append(r["elapsed_seconds"])
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice, count(*)::int AS n
        FROM sla_breaches e JOIN {source} GROUP BY 1, 2""",
        *args,
    ):
        _cell(cells, r["start"], r["slice"]).sla.breaches = r["n"]


async def _read_crisis(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Alerts raised per period; sliced by channel or category, those raised on that
    dimension, by the value that spiked."""
    value = "a.value" if by in (Dimension.CHANNEL, Dimension.CATEGORY) else "''"
    for r in await pool.fetch(
        f"""{_with()}
        SELECT p.start, {value} AS slice, count(*)::int AS alerts
        FROM crisis_alerts a JOIN period_days p ON p.day = a.day
        WHERE $3::text IS NULL OR a.dimension = $3::text GROUP BY 1, 2""",
        *args,
        by.value if by is not None else None,
    ):
        _cell(cells, r["start"], r["slice"]).crisis.alerts = r["alerts"]


async def _read_interactions(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    sl = _slicing(by, customer="i.customer_id", day="i.day", channel="i.channel")
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice, sum(i.interactions)::int AS n,
               count(DISTINCT i.customer_id)::int AS customers, sum(i.negative)::int AS negative
        FROM interactions i JOIN period_days p ON p.day = i.day
        {sl.join} GROUP BY 1, 2""",
        *args,
    ):
        found = _cell(cells, r["start"], r["slice"]).interactions
        found.interactions, found.customers = r["n"], r["customers"]
        found.negative = r["negative"]
    await _read_contact_kinds(pool, cells, args, by)


async def _read_contact_kinds(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Interactions by who handled them (human, bot) and how (synchronous, asynchronous),
    from `interaction_kinds` (migrations/005), sliced as interactions are."""
    sl = _slicing(by, customer="i.customer_id", day="i.day", channel="i.channel")
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice,
               sum(i.interactions) FILTER (WHERE i.handled_by = 'human')::int AS human,
               sum(i.interactions) FILTER (WHERE i.handled_by = 'bot')::int AS bot,
               sum(i.interactions) FILTER (WHERE i.mode = 'synchronous')::int AS synchronous,
               sum(i.interactions) FILTER (WHERE i.mode = 'asynchronous')::int AS asynchronous
        FROM interaction_kinds i JOIN period_days p ON p.day = i.day
        {sl.join} GROUP BY 1, 2""",
        *args,
    ):
        kinds = _cell(cells, r["start"], r["slice"]).interactions
        kinds.by_human, kinds.by_bot = r["human"] or 0, r["bot"] or 0
        kinds.synchronous, kinds.asynchronous = r["synchronous"] or 0, r["asynchronous"] or 0


# --------------------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class CohortCounts:
    sizes: dict[date, int]  # cohort month -> customers whose first purchase is in it
    active: dict[tuple[date, date], int]  # (cohort month, month) -> of those, buyers in it


async def cohort_counts(pool: Pool | Connection, first: date, last: date) -> CohortCounts:
    """The cohorts whose first purchase month is first..last (first days of months), their
    sizes, and for every month from the cohort's own on, how many of each bought in it
    (`customers` and `customer_months`, both kept by the fold). A customer's cohort is read
    at query time from their first purchase, so a late earlier purchase moves them to their
    true cohort."""
    cohorts = """cohorts AS (
        SELECT customer_id, date_trunc('month', first_purchase_day)::date AS cohort
        FROM customers
        WHERE first_purchase_day >= $1::date
          AND first_purchase_day < ($2::date + interval '1 month')::date
    )"""
    # One statement, so one snapshot: a cohort never has more buyers than customers.
    rows = await pool.fetch(
        f"""WITH {cohorts}
        SELECT cohort, NULL::date AS month, count(*)::int AS n FROM cohorts GROUP BY 1
        UNION ALL
        SELECT c.cohort, m.month, count(*)::int
        FROM cohorts c JOIN customer_months m
          ON m.customer_id = c.customer_id AND m.month >= c.cohort
        GROUP BY 1, 2""",
        first,
        last,
    )
    sizes = {r["cohort"]: r["n"] for r in rows if r["month"] is None}
    active = {(r["cohort"], r["month"]): r["n"] for r in rows if r["month"] is not None}
    return CohortCounts(sizes, active)


# --------------------------------------------------------------------------- alerts, daily


async def crisis_alerts(
    pool: Pool, *, open_since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Crisis alerts, newest first. With `open_since`: the alerts still open (window ended
    at or after it), the latest one per (dimension, value)."""
    if open_since is None:
        rows = await pool.fetch(
            "SELECT * FROM crisis_alerts ORDER BY detected_at DESC, event_id DESC LIMIT $1", limit
        )
    else:
        rows = await pool.fetch(
            """SELECT * FROM (
                   SELECT DISTINCT ON (dimension, value) * FROM crisis_alerts
                   WHERE window_end >= $1
                   ORDER BY dimension, value, detected_at DESC, event_id DESC
               ) AS latest ORDER BY detected_at DESC, event_id DESC LIMIT $2""",
            open_since,
            limit,
        )
    return [dict(r) for r in rows]


async def daily_kpis(pool: Pool, first: date, last: date) -> list[dict[str, Any]]:
    """One row per day in [first, last], days without sales included as zeros: revenue net
    of refunds (as the daily_sales view), orders and buyers, summed over those days only."""
    rows = await pool.fetch(
        """
        WITH s AS (
            SELECT day, sum(revenue) AS revenue, sum(orders)::int AS orders,
                   count(DISTINCT customer_id) AS buyers
            FROM sales WHERE day BETWEEN $1::date AND $2::date GROUP BY day
        ), r AS (
            SELECT day, sum(amount) AS refunded
            FROM refunds WHERE day BETWEEN $1::date AND $2::date GROUP BY day
        )
        SELECT d::date AS day,
               coalesce(s.revenue, 0) - coalesce(r.refunded, 0) AS revenue,
               coalesce(s.orders, 0) AS orders,
               coalesce(s.buyers, 0) AS buyers
        FROM generate_series($1::date, $2::date, interval '1 day') AS d
        LEFT JOIN s ON s.day = d::date
        LEFT JOIN r ON r.day = d::date
        ORDER BY d
        """,
        first,
        last,
    )
    return [dict(r) for r in rows]
