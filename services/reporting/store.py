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

Reads take the periods as two arrays (starts, exclusive stops) computed by kpi.py, so the
calendar is defined once, and group facts by period and slice. Tier and segment are looked
up at query time from the class history, so a late tier change re-attributes the facts of
its days and a rebuild gives the same answers. The SQL text only ever contains fragments
chosen from this module (the dimension is an enum), never request input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from services.reporting import kpi
from services.reporting.domain import UNKNOWN, Batch, Order, SaleDelta, churn_reason
from services.reporting.metrics import Cell, Dimension, Source, TierValue
from shared.db import Connection, Pool

UNSCORED = "unscored"  # the slice of customers scoring never classed


# --------------------------------------------------------------------------- writes


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any] | None]:
    """The rows as one array per column. A column of NULLs only (a batch of purchases sets no
    profile field) goes as one NULL: unnest pads it with NULLs, and the driver does not
    encode each element."""
    columns = [[row[i] for row in rows] for i in range(width)]
    return [c if any(v is not None for v in c) else None for c in columns]


async def _insert(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        await conn.execute(sql, *_columns(rows, len(rows[0])))


async def write(conn: Connection, batch: Batch) -> None:
    """Add one batch's rows to the read models (in the runtime's transaction)."""
    await _write_sales(conn, batch)
    await _write_customers(conn, batch)
    await _write_classes(conn, batch)
    await _write_activity(conn, batch)
    await _write_complaints(conn, batch)
    await _write_sla(conn, batch)
    # New facts, one row per event: an insert, nothing to merge.
    await _insert(
        conn,
        "INSERT INTO crisis_alerts (event_id, detected_at, day, dimension, value, window_start,"
        " window_end, count, baseline, score) SELECT * FROM unnest($1::text[],"
        " $2::timestamptz[], $3::date[], $4::text[], $5::text[], $6::timestamptz[],"
        " $7::timestamptz[], $8::int[], $9::float8[], $10::float8[]) ON CONFLICT DO NOTHING",
        [
            (
                a.event_id,
                a.detected_at,
                a.day,
                a.dimension,
                a.value,
                a.window_start,
                a.window_end,
                a.count,
                a.baseline,
                a.score,
            )
            for a in batch.alerts
        ],
    )
    await _insert(
        conn,
        "INSERT INTO marketing_spend (event_id, day, channel, campaign, amount) SELECT * FROM"
        " unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::numeric[])"
        " ON CONFLICT DO NOTHING",
        [(s.event_id, s.day, s.channel, s.campaign, s.amount) for s in batch.spend],
    )


# An order that is all of one category with no items ('unknown', share 1) stores NULLs: the
# refund attribution reads them as exactly that (_read_sales), and most orders are so.
_UNCATEGORISED = ((UNKNOWN,), (Decimal(1),))


def _order_row(customer: str, order_id: str, o: Order) -> tuple[Any, ...]:
    plain = (o.categories, o.shares) == _UNCATEGORISED
    return (
        customer,
        order_id,
        o.completed_at,
        o.event_id,
        o.channel,
        None if plain else chr(31).join(o.categories),  # ragged arrays travel joined
        None if plain else chr(31).join(str(s) for s in o.shares),
    )


async def _write_sales(conn: Connection, batch: Batch) -> None:
    # Additive: commutative upserts (the row's own counts plus the batch's). Amounts travel
    # as text, cast by PostgreSQL: the driver's binary numeric encoding costs the client
    # about four times as much per amount, on the rows every purchase writes.
    nothing = SaleDelta()
    await _insert(
        conn,
        "INSERT INTO sales (day, customer_id, channel, orders, revenue, uncategorised_orders,"
        " uncategorised_revenue) SELECT * FROM unnest($1::date[], $2::text[], $3::text[],"
        " $4::int[], $5::text[]::numeric[], $6::int[], $7::text[]::numeric[])"
        " ORDER BY 1, 2, 3 ON CONFLICT (day, customer_id, channel) DO UPDATE SET"
        " orders = sales.orders + EXCLUDED.orders, revenue = sales.revenue + EXCLUDED.revenue,"
        " uncategorised_orders = sales.uncategorised_orders + EXCLUDED.uncategorised_orders,"
        " uncategorised_revenue = sales.uncategorised_revenue + EXCLUDED.uncategorised_revenue",
        [
            (*key, d.orders, str(d.revenue), u.orders, str(u.revenue))
            for key, d in batch.sales.items()
            for u in (batch.uncategorised.get(key, nothing),)
        ],
    )
    await _insert(
        conn,
        "INSERT INTO item_category_sales (day, customer_id, category, orders, revenue)"
        " SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::int[],"
        " $5::text[]::numeric[]) ORDER BY 1, 2, 3"
        " ON CONFLICT (day, customer_id, category) DO UPDATE SET"
        " orders = item_category_sales.orders + EXCLUDED.orders,"
        " revenue = item_category_sales.revenue + EXCLUDED.revenue",
        [(*key, d.orders, str(d.revenue)) for key, d in batch.item_category_sales.items()],
    )
    # Keyed, earliest completion wins: decided in the conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO orders (customer_id, order_id, completed_at, event_id, channel, categories,"
        " shares) SELECT c, o, t, e, ch, string_to_array(cs, chr(31)),"
        " string_to_array(sh, chr(31))::numeric[] FROM unnest($1::text[], $2::text[],"
        " $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])"
        " AS u(c, o, t, e, ch, cs, sh) ORDER BY c, o"
        " ON CONFLICT (customer_id, order_id) DO UPDATE SET"
        " completed_at = EXCLUDED.completed_at, event_id = EXCLUDED.event_id,"
        " channel = EXCLUDED.channel, categories = EXCLUDED.categories, shares = EXCLUDED.shares"
        " WHERE (EXCLUDED.completed_at, EXCLUDED.event_id)"
        " < (orders.completed_at, orders.event_id)",
        [_order_row(c, order_id, o) for (c, order_id), o in batch.orders.items()],
    )
    await _insert(
        conn,
        "INSERT INTO refunds (event_id, customer_id, order_id, day, time, amount, reason)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[],"
        " $5::timestamptz[], $6::numeric[], $7::text[]) ON CONFLICT DO NOTHING",
        [
            (r.event_id, r.customer_id, r.order_id, r.day, r.time, r.amount, r.reason)
            for r in batch.refunds
        ],
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
    "INSERT INTO customers AS c (customer_id, first_purchase_day,"
    " acquisition_channel, acquisition_channel_at, acquisition_channel_by,"
    " churn_reason, churn_reason_at, churn_reason_by)"
    " SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::timestamptz[], $5::text[],"
    " $6::text[], $7::timestamptz[], $8::text[])"
    " ORDER BY 1 ON CONFLICT (customer_id) DO UPDATE SET"
    " first_purchase_day = least(c.first_purchase_day, EXCLUDED.first_purchase_day), "
    + ", ".join(_take_if(_latest(f), "c", f, f"{f}_at", f"{f}_by") for f in _LATEST_FIELDS)
    + f" WHERE {_beats(('first_purchase_day',), 'c', '<')}"
    + "".join(f" OR {_latest(f)}" for f in _LATEST_FIELDS)
)


async def _write_customers(conn: Connection, batch: Batch) -> None:
    customers = (
        batch.first_purchase.keys() | batch.acquisition_channel.keys() | batch.churn_reason.keys()
    )
    rows = []
    for customer in customers:
        row: list[Any] = [customer, batch.first_purchase.get(customer)]
        for latest in (batch.acquisition_channel.get(customer), batch.churn_reason.get(customer)):
            row += (None,) * 3 if latest is None else (latest.value, latest.at, latest.event_id)
        rows.append(row)
    await _insert(conn, _WRITE_CUSTOMERS, rows)


async def _write_classes(conn: Connection, batch: Batch) -> None:
    # Keyed, latest wins: decided in the conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO customer_classes (customer_id, kind, day, as_of, event_id, value)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::timestamptz[],"
        " $5::text[], $6::text[]) ORDER BY 1, 2, 3"
        " ON CONFLICT (customer_id, kind, day) DO UPDATE SET"
        " as_of = EXCLUDED.as_of, event_id = EXCLUDED.event_id, value = EXCLUDED.value"
        " WHERE (EXCLUDED.as_of, EXCLUDED.event_id)"
        " > (customer_classes.as_of, customer_classes.event_id)",
        [(*key, r.as_of, r.event_id, r.value) for key, r in batch.classes.items()],
    )
    await _insert(
        conn,
        "INSERT INTO tier_summaries (tier, day, as_of, customers, customer_equity, average_clv)"
        " SELECT * FROM unnest($1::text[], $2::date[], $3::timestamptz[], $4::int[],"
        " $5::numeric[], $6::numeric[]) ORDER BY 1, 2 ON CONFLICT (tier, day) DO UPDATE SET"
        " as_of = EXCLUDED.as_of, customers = EXCLUDED.customers,"
        " customer_equity = EXCLUDED.customer_equity, average_clv = EXCLUDED.average_clv"
        " WHERE EXCLUDED.as_of >= tier_summaries.as_of",
        [
            (*key, r.as_of, r.customers, r.customer_equity, r.average_clv)
            for key, r in batch.tier_summaries.items()
        ],
    )


async def _write_activity(conn: Connection, batch: Batch) -> None:
    # Additive: commutative upserts.
    await _insert(
        conn,
        "INSERT INTO interactions (day, customer_id, channel, interactions, negative)"
        " SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::int[], $5::int[])"
        " ORDER BY 1, 2, 3 ON CONFLICT (day, customer_id, channel) DO UPDATE SET"
        " interactions = interactions.interactions + EXCLUDED.interactions,"
        " negative = interactions.negative + EXCLUDED.negative",
        [(*key, n, negative) for key, (n, negative) in batch.interactions.items()],
    )
    await _insert(
        conn,
        "INSERT INTO survey_answers (day, customer_id, kind, channel, score, responses)"
        " SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::int[],"
        " $6::int[]) ORDER BY 1, 2, 3, 4, 5"
        " ON CONFLICT (day, customer_id, kind, channel, score) DO UPDATE SET"
        " responses = survey_answers.responses + EXCLUDED.responses",
        [(*key, n) for key, n in batch.surveys.items()],
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
    "INSERT INTO complaints AS k (complaint_id, customer_id, opened_at, opened_by, opened_day,"
    " channel, category, priority, last_resolved_at, last_reopened_at)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::date[],"
    " $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[]) ORDER BY 1"
    f" ON CONFLICT (complaint_id) DO UPDATE SET {_take_if(_EARLIER_OPENING, 'k', *_OPENING)}, "
    + ", ".join(f"{m} = greatest(k.{m}, EXCLUDED.{m})" for m in _MARKS)
    + f" WHERE {_EARLIER_OPENING}"
    + "".join(f" OR {_beats((m,), 'k', '>')}" for m in _MARKS)
)


def _complaint_row(batch: Batch, complaint_id: str) -> tuple[Any, ...]:
    o = batch.openings.get(complaint_id)
    resolved, reopened = batch.resolved.get(complaint_id), batch.reopened.get(complaint_id)
    opening = (
        (batch.complaint_customers[complaint_id], None, None, None, None, None, None)
        if o is None
        else (o.customer_id, o.at, o.event_id, o.day, o.channel, o.category, o.priority)
    )
    return (
        complaint_id,
        *opening,
        resolved.at if resolved else None,
        reopened.at if reopened else None,
    )


async def _write_complaints(conn: Connection, batch: Batch) -> None:
    await _insert(
        conn,
        _WRITE_COMPLAINTS,
        [_complaint_row(batch, cid) for cid in batch.complaint_customers],
    )
    # New facts, one row per event.
    await _insert(
        conn,
        "INSERT INTO complaint_resolutions (event_id, complaint_id, customer_id, day)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[])"
        " ON CONFLICT DO NOTHING",
        [(r.event_id, r.complaint_id, r.customer_id, r.day) for r in batch.resolutions],
    )
    await _insert(
        conn,
        "INSERT INTO complaint_feedback (event_id, complaint_id, customer_id, day, score)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::int[])"
        " ON CONFLICT DO NOTHING",
        [(f.event_id, f.complaint_id, f.customer_id, f.day, f.score) for f in batch.feedback],
    )


async def _write_sla(conn: Connection, batch: Batch) -> None:
    # Keyed: the latest stop of a clock, the earliest breach of a cycle, decided in the
    # conflict clause against the locked row.
    await _insert(
        conn,
        "INSERT INTO sla_clocks (complaint_id, metric, cycle, customer_id, stopped_at, event_id,"
        " day, outcome, elapsed_seconds, target_seconds, tier, category, channel)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],"
        " $5::timestamptz[], $6::text[], $7::date[], $8::text[], $9::float8[], $10::float8[],"
        " $11::text[], $12::text[], $13::text[])"
        " ORDER BY 1, 2, 3 ON CONFLICT (complaint_id, metric, cycle) DO UPDATE SET"
        " customer_id = EXCLUDED.customer_id, stopped_at = EXCLUDED.stopped_at,"
        " event_id = EXCLUDED.event_id, day = EXCLUDED.day, outcome = EXCLUDED.outcome,"
        " elapsed_seconds = EXCLUDED.elapsed_seconds, target_seconds = EXCLUDED.target_seconds,"
        " tier = EXCLUDED.tier, category = EXCLUDED.category, channel = EXCLUDED.channel"
        " WHERE (EXCLUDED.stopped_at, EXCLUDED.event_id)"
        " > (sla_clocks.stopped_at, sla_clocks.event_id)",
        [
            (
                *key,
                c.customer_id,
                c.at,
                c.event_id,
                c.day,
                c.outcome,
                c.elapsed_seconds,
                c.target_seconds,
                c.tier,
                c.category,
                c.channel,
            )
            for key, c in batch.clocks.items()
        ],
    )
    await _insert(
        conn,
        "INSERT INTO sla_breaches (complaint_id, metric, cycle, customer_id, breached_at,"
        " event_id, day, tier, category, channel) SELECT * FROM unnest($1::text[], $2::text[],"
        " $3::int[], $4::text[], $5::timestamptz[], $6::text[], $7::date[], $8::text[],"
        " $9::text[], $10::text[]) ORDER BY 1, 2, 3"
        " ON CONFLICT (complaint_id, metric, cycle) DO UPDATE SET"
        " customer_id = EXCLUDED.customer_id, breached_at = EXCLUDED.breached_at,"
        " event_id = EXCLUDED.event_id, day = EXCLUDED.day, tier = EXCLUDED.tier,"
        " category = EXCLUDED.category, channel = EXCLUDED.channel"
        " WHERE (EXCLUDED.breached_at, EXCLUDED.event_id)"
        " < (sla_breaches.breached_at, sla_breaches.event_id)",
        [
            (*key, b.customer_id, b.at, b.event_id, b.day, b.tier, b.category, b.channel)
            for key, b in batch.breaches.items()
        ],
    )


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Periods:
    starts: list[date]
    stops: list[date]  # exclusive

    @classmethod
    def of(cls, starts: Iterable[date], granularity: kpi.Granularity) -> Periods:
        ordered = sorted(set(starts))
        return cls(ordered, [kpi.next_period_start(s, granularity) for s in ordered])


_PERIODS = "periods AS (SELECT * FROM unnest($1::date[], $2::date[]) AS p(start, stop))"


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
    return cells.setdefault((start, slice_), Cell())


async def read_cells(
    pool: Pool | Connection,
    periods: Periods,
    by: Dimension | None,
    sources: set[Source],
    *,
    today: date,
    churn_after_days: int,
    churn_reasons: bool = False,
) -> Cells:
    """The ingredients of every (period start, slice) with data; slice '' when not sliced.

    `today` (local) ends the customer-base counts of the current period; `churn_after_days`
    is the inactivity window after which a customer is lost."""
    cells: Cells = {}
    args: Args = (periods.starts, periods.stops)
    if Source.SALES in sources:
        await _read_sales(pool, cells, args, by)
    if Source.BASE in sources:
        await _read_base(pool, cells, args, by, today, churn_after_days, churn_reasons)
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


async def _read_sales(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Revenue net of refunds, orders, and exact distinct buyers, repeat and new buyers.

    Refunds count on their own day, in the channel and categories of their order (split by
    the order's shares), found at query time so that the order may arrive after them."""
    if by is Dimension.CATEGORY:
        table, refund_dim, refund_amount = "category_sales", "x.dim", "round(r.amount * x.share, 6)"
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
        FROM facts f JOIN periods p ON f.day >= p.start AND f.day < p.stop
        {sl.join}
        GROUP BY 1, 2, 3
    )"""
    rows = await pool.fetch(
        _with(sl.cte, facts, per_customer)
        + """
        SELECT pc.start, pc.slice, sum(pc.revenue) AS revenue, sum(pc.orders)::int AS orders,
               count(*) FILTER (WHERE pc.orders >= 1)::int AS buyers,
               count(*) FILTER (WHERE pc.orders >= $3)::int AS repeat_buyers,
               count(*) FILTER (WHERE pc.orders >= 1 AND c.first_purchase_day >= pc.start)::int
                   AS new_buyers
        FROM per_customer pc LEFT JOIN customers c ON c.customer_id = pc.customer_id
        GROUP BY 1, 2""",
        *args,
        kpi.REPEAT_MIN_ORDERS,
    )
    for r in rows:
        sales = _cell(cells, r["start"], r["slice"]).sales
        sales.revenue, sales.orders = r["revenue"], r["orders"]
        sales.buyers, sales.repeat_buyers = r["buyers"], r["repeat_buyers"]
        sales.new_buyers = r["new_buyers"]


# A customer is active on day d when they bought on a day of (d - W, d] (W = the inactivity
# window, REPORTING_CHURN_AFTER_DAYS), and lost on day p + W after a purchase day p not
# followed by another within W days (DOMAIN.md section 7: nothing is cancelled in a shop).
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
) -> None:
    """Customers at start and end, new, active and lost, by the class each had on the
    period's first day or their acquisition channel; with the reasons of the lost."""
    sl = _slicing(
        by,
        customer="f.customer_id",
        day="f.start",
        channel=f"coalesce(c.acquisition_channel, '{UNKNOWN}')",
    )
    head = _with(sl.cte, _BASE)
    source = f"FROM facts f LEFT JOIN customers c ON c.customer_id = f.customer_id {sl.join}"
    for r in await pool.fetch(
        f"{head} SELECT f.start, {sl.expr} AS slice, f.kind,"
        f" count(DISTINCT f.customer_id)::int AS n {source} GROUP BY 1, 2, 3",
        *args,
        today,
        window,
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


async def _read_marketing(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    channel = "m.channel" if by is Dimension.CHANNEL else "''"
    for r in await pool.fetch(
        f"{_with()} SELECT p.start, {channel} AS slice, sum(m.amount) AS spend"
        " FROM marketing_spend m JOIN periods p ON m.day >= p.start AND m.day < p.stop"
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
                FROM periods p JOIN tier_summaries t ON t.day >= p.start AND t.day < p.stop
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
        FROM survey_answers a JOIN periods p ON a.day >= p.start AND a.day < p.stop
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
        FROM complaints k JOIN periods p ON k.opened_day >= p.start AND k.opened_day < p.stop
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
            FROM {table} e JOIN periods p ON e.day >= p.start AND e.day < p.stop
            LEFT JOIN complaints k ON k.complaint_id = e.complaint_id
            {sl.join} GROUP BY 1, 2, 3""",
            *args,
        ):
            found = _cell(cells, r["start"], r["slice"]).complaints
            if column == "resolved":
                found.resolved = r["n"]
            else:
                found.feedback[r["score"]] += r["n"]


async def _read_sla(
    pool: Pool | Connection, cells: Cells, args: Args, by: Dimension | None
) -> None:
    """Stopped clocks (outcome and business seconds, by stop day) and breaches (by breach
    instant). Tier is the one the complaints service recorded on the event when it did."""
    sl = _slicing(
        by,
        customer="e.customer_id",
        day="e.day",
        channel=f"coalesce(e.channel, k.channel, '{UNKNOWN}')",
        category=f"coalesce(e.category, k.category, '{UNKNOWN}')",
        tier="e.tier",
    )
    source = f"""periods p ON e.day >= p.start AND e.day < p.stop
        LEFT JOIN complaints k ON k.complaint_id = e.complaint_id {sl.join}"""
    for r in await pool.fetch(
        f"""{_with(sl.cte)}
        SELECT p.start, {sl.expr} AS slice, e.metric, e.outcome, e.elapsed_seconds
        FROM sla_clocks e JOIN {source}
        ORDER BY e.complaint_id, e.metric, e.cycle""",
        *args,
    ):
        sla = _cell(cells, r["start"], r["slice"]).sla
        (sla.met if r["outcome"] == "met" else sla.breached)[r["metric"]] += 1
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
        FROM crisis_alerts a JOIN periods p ON a.day >= p.start AND a.day < p.stop
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
        FROM interactions i JOIN periods p ON i.day >= p.start AND i.day < p.stop
        {sl.join} GROUP BY 1, 2""",
        *args,
    ):
        found = _cell(cells, r["start"], r["slice"]).interactions
        found.interactions, found.customers = r["n"], r["customers"]
        found.negative = r["negative"]


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
    """One row per day in [first, last], days without sales included as zeros."""
    rows = await pool.fetch(
        """
        SELECT d::date AS day,
               coalesce(s.revenue, 0) AS revenue,
               coalesce(s.orders, 0) AS orders,
               (SELECT count(*) FROM daily_buyers b WHERE b.day = d::date) AS buyers
        FROM generate_series($1::date, $2::date, interval '1 day') AS d
        LEFT JOIN daily_sales s ON s.day = d::date
        ORDER BY d
        """,
        first,
        last,
    )
    return [dict(r) for r in rows]
