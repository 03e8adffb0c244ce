"""Scoring's SQL, and only SQL: the history a batch adds, RFM and the population derived from
it, the scores and models of the re-score, the API's queries. projection.py runs a batch."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import asyncpg
import numpy as np

from services.scoring import stored
from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.domain import History, PurchaseSummary
from services.scoring.population import Models, Population, Reference, Scores, SimpleClvBase
from shared.db import Connection, Pool, insert_unnest, unnest

SCHEMA = "scoring"  # the schema this service owns (ServiceSpec, and the re-score's connection)

# ---- write side: what a batch adds (projection.py runs the flow) ---------------------------

# Advisory-lock namespace of the customer stripes (the two-int form keeps it apart from the
# one-bigint locks of migrations and the re-score).
CUSTOMER_LOCKS = zlib.crc32(b"scoring:customer") - 2**31


async def lock_stripes(conn: Connection, stripes: Sequence[int], exclusive: Sequence[bool]) -> None:
    """Transaction-level advisory locks on customer stripes, in the order given (ascending:
    every instance takes them in the same order, so two cannot deadlock), in one statement.
    `exclusive[i]`: an exclusive lock on stripes[i], else a shared one."""
    await conn.execute(
        "SELECT CASE WHEN x THEN pg_advisory_xact_lock($1, k)"
        " ELSE pg_advisory_xact_lock_shared($1, k) END"
        " FROM unnest($2::int[], $3::bool[]) WITH ORDINALITY AS u(k, x, n) ORDER BY n",
        CUSTOMER_LOCKS,
        stripes,
        exclusive,
    )


# Namespace of the scoring stripes the fold takes to score customers (projection.py step 5).
SCORING_LOCKS = zlib.crc32(b"scoring:score") - 2**31


async def lock_scoring_stripes(conn: Connection, stripes: Sequence[int]) -> None:
    """Exclusive transaction-level advisory locks on scoring stripes, in the order given
    (ascending, so two instances cannot deadlock)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int[]) WITH ORDINALITY AS u(k, n)"
        " ORDER BY n",
        SCORING_LOCKS,
        stripes,
    )


async def erase_personal_data(conn: Connection, erased: dict[str, datetime]) -> None:
    """The profile and an interaction's free-text topic are personal data: an erasure deletes
    them up to its instant; purchases, counts and the interactions' labels stay."""
    await conn.execute(
        "DELETE FROM customer_events c USING unnest($1::text[], $2::timestamptz[]) "
        "AS e(customer_id, erased_at) WHERE c.customer_id = e.customer_id "
        "AND c.time <= e.erased_at",
        list(erased),
        list(erased.values()),
    )
    await conn.execute(
        "UPDATE interactions i SET topic = NULL "
        "FROM unnest($1::text[], $2::timestamptz[]) AS e(customer_id, erased_at) "
        "WHERE i.customer_id = e.customer_id AND i.time <= e.erased_at "
        "AND i.topic IS NOT NULL",
        list(erased),
        list(erased.values()),
    )


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # in the order of domain.History's rows
    types: tuple[str, ...]
    copy: bool = True  # False: a column's codec is text-only (jsonb), so COPY cannot take it

    def insert_new(self) -> str:
        """INSERT ... unnest that skips rows already stored."""
        columns = (f"{c} {t}" for c, t in zip(self.columns, self.types, strict=True))
        return insert_unnest(self.name, *columns)


_HISTORY_TABLES = {
    "purchases": _Table(
        "purchases",
        ("customer_id", "source", "event_id", "order_id", "time", "day", "amount", "is_refund"),
        ("text", "text", "text", "text", "timestamptz", "date", "numeric", "bool"),
    ),
    "interactions": _Table(
        "interactions",
        ("customer_id", "source", "event_id", "time", "channel", "direction", "sentiment", "topic"),
        ("text", "text", "text", "timestamptz", "text", "text", "text", "text"),
    ),
    "complaints": _Table(
        "complaints",
        ("customer_id", "source", "event_id", "complaint_id", "time", "category"),
        ("text", "text", "text", "text", "timestamptz", "text"),
    ),
    "surveys": _Table(
        "surveys",
        ("customer_id", "source", "event_id", "time", "kind", "score", "survey_id", "channel"),
        ("text", "text", "text", "timestamptz", "text", "smallint", "text", "text"),
    ),
    "profile_events": _Table(
        "customer_events",
        ("customer_id", "source", "event_id", "time", "type", "body"),
        ("text", "text", "text", "timestamptz", "text", "jsonb"),
        copy=False,
    ),
}


async def insert_history(conn: Connection, history: History) -> None:
    """One COPY (or INSERT ... unnest) per table that gains rows."""
    for attribute, table in _HISTORY_TABLES.items():
        rows: list[tuple[Any, ...]] = getattr(history, attribute)
        if rows:
            await _insert_new(conn, table, rows)


async def _insert_new(conn: Connection, table: _Table, rows: list[tuple[Any, ...]]) -> None:
    """COPY, in a savepoint: it costs the server about half of what an INSERT ... ON CONFLICT
    does. The runtime hands over new events only, but should a row be stored already (the
    same event again) the COPY fails on the key, and the rows go in by an INSERT that skips
    the stored ones."""
    if table.copy:
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(table.name, records=rows, columns=table.columns)
            return
        except asyncpg.UniqueViolationError:
            pass
    await conn.execute(table.insert_new(), *zip(*rows, strict=True))


# ---- read side: RFM and the population ----------------------------------------------------

# Every customer's purchase statistics as of $1 (an instant) whose local day is $2; $3 is the
# trend window in days; $4 restricts to some customers (NULL: everyone); $5: orders of value 0
# count as purchases. The one derivation of RFM: GET /rfm and the scores both read `buyers`.
# A purchase is an order, once: the same order_id from the same source under another event id
# counts once (its first event; an id is unique within its source, as an event's is); the
# refunds of the order_id (up to $1, from any source: a payment system may send them) net out
# of its value; an order refunded in full
# is no purchase (no recency, frequency, first purchase), nor one of value 0 unless $5. Money
# spent (net_spent) is every order's amount and every refund, whether the order counts or not.
_BUYERS = """
placed AS (
    SELECT DISTINCT ON (customer_id, source, order_id) customer_id, order_id, time, day, amount
    FROM purchases
    WHERE NOT is_refund AND time <= $1
      AND ($4::text[] IS NULL OR customer_id = ANY($4::text[]))
    ORDER BY customer_id, source, order_id, time, event_id
), refunded AS (
    SELECT customer_id, order_id, sum(amount) AS amount
    FROM purchases
    WHERE is_refund AND time <= $1 AND ($4::text[] IS NULL OR customer_id = ANY($4::text[]))
    GROUP BY customer_id, order_id
), spent AS (
    SELECT customer_id, sum(amount) AS amount FROM (
        SELECT customer_id, amount FROM placed UNION ALL SELECT customer_id, amount FROM refunded
    ) money GROUP BY customer_id
), counted AS (
    SELECT p.customer_id, p.day, p.time, p.amount + coalesce(r.amount, 0) AS net
    FROM placed p LEFT JOIN refunded r USING (customer_id, order_id)
    WHERE p.amount + coalesce(r.amount, 0) > 0 OR ($5::bool AND p.amount = 0)
), daily AS (
    SELECT customer_id, day, sum(net) AS bought, count(*) AS orders,
           min(time) AS first_at, max(time) AS last_at
    FROM counted GROUP BY customer_id, day
), buyers AS (
    SELECT d.customer_id,
           min(day) AS first_day,
           max(day) AS last_day,
           count(*) AS purchase_days,
           sum(orders) AS orders,
           min(s.amount) AS net_spent,
           sum(bought) AS bought,
           min(first_at) AS first_at,
           max(last_at) AS last_at,
           count(*) FILTER (WHERE day > $2::date - $3::int) AS recent_days,
           count(*) FILTER (WHERE day <= $2::date - $3::int
                              AND day > $2::date - 2 * $3::int) AS previous_days,
           coalesce(sum(bought) FILTER (WHERE day > $2::date - $3::int), 0) AS recent_spend,
           coalesce(sum(bought) FILTER (WHERE day <= $2::date - $3::int
                                         AND day > $2::date - 2 * $3::int), 0) AS previous_spend
    FROM daily d JOIN spent s ON s.customer_id = d.customer_id
    GROUP BY d.customer_id
)"""


def _for_customers(query: str) -> str:
    """`query` (a _BUYERS one) for the customers of $4 only, written so that every plan reads
    their rows by the key: PostgreSQL may settle on one generic plan for a prepared
    statement, and for `$4 IS NULL OR customer_id = ANY($4)` that plan scans whole tables."""
    return query.replace(
        "$4::text[] IS NULL OR customer_id = ANY($4::text[])", "customer_id = ANY($4::text[])"
    )


_RFM = f"""
WITH {_BUYERS}
SELECT customer_id, first_at AS first_purchase_at, last_at AS last_purchase_at,
       orders::int AS purchase_count, net_spent AS total_spent
FROM buyers
"""
_RFM_OF_ONE = _for_customers(_RFM)


async def load_rfm(
    conn: Connection | Pool,
    customer_id: str,
    as_of: datetime,
    zone: tzinfo,
    window_days: int,
    *,
    count_zero_value: bool = False,
) -> PurchaseSummary | None:
    """One customer's RFM facts as of `as_of`, as the scores see them; None if no purchase."""
    local_day: date = as_of.astimezone(zone).date()
    row = await conn.fetchrow(
        _RFM_OF_ONE, as_of, local_day, window_days, [customer_id], count_zero_value
    )
    return PurchaseSummary(**dict(row)) if row else None


# The population: every buyer's statistics (arguments as for _BUYERS), with interactions,
# complaints and the strategic value the customer events give (0 when none does).
_POPULATION = f"""
WITH {_BUYERS}, talks AS (
    SELECT customer_id, count(*) AS total,
           count(*) FILTER (WHERE time > $1 - make_interval(days => $3::int)) AS recent,
           count(*) FILTER (WHERE time <= $1 - make_interval(days => $3::int)
                              AND time > $1 - make_interval(days => 2 * $3::int)) AS previous
    FROM interactions
    WHERE time <= $1 AND ($4::text[] IS NULL OR customer_id = ANY($4::text[]))
    GROUP BY customer_id
), complaints_made AS (
    SELECT customer_id, count(*) AS total FROM complaints
    WHERE time <= $1 AND ($4::text[] IS NULL OR customer_id = ANY($4::text[]))
    GROUP BY customer_id
), strategic AS (
    -- The customer attribute strategic_value of the latest profile event that sets it.
    SELECT DISTINCT ON (customer_id) customer_id,
           (body->'data'->>'strategic_value')::float8 AS value
    FROM customer_events
    WHERE body->'data' ? 'strategic_value' AND time <= $1
      AND ($4::text[] IS NULL OR customer_id = ANY($4::text[]))
    ORDER BY customer_id, time DESC, source DESC, event_id DESC
)
SELECT b.customer_id,
       extract(epoch FROM $1 - b.last_at) / 86400 AS days_since_last,
       ($2::date - b.first_day)::float8 AS days_since_first,
       b.orders::float8, b.net_spent::float8, b.purchase_days::float8,
       (b.last_day - b.first_day)::float8 AS span_days,
       CASE WHEN b.purchase_days > 1
            THEN ((b.bought - f.bought) / (b.purchase_days - 1))::float8 ELSE 0 END
           AS repeat_spend,
       b.recent_days::float8, b.previous_days::float8,
       b.recent_spend::float8, b.previous_spend::float8,
       coalesce(t.recent, 0)::float8, coalesce(t.previous, 0)::float8,
       coalesce(t.total, 0)::float8, coalesce(c.total, 0)::float8,
       coalesce(v.value, 0)::float8,
       extract(epoch FROM b.first_at)::float8 AS first_purchase_epoch,
       extract(epoch FROM b.last_at)::float8 AS last_purchase_epoch,
       b.net_spent AS net_spent_exact
FROM buyers b
JOIN daily f ON f.customer_id = b.customer_id AND f.day = b.first_day
LEFT JOIN talks t ON t.customer_id = b.customer_id
LEFT JOIN complaints_made c ON c.customer_id = b.customer_id
LEFT JOIN strategic v ON v.customer_id = b.customer_id
ORDER BY b.customer_id
"""
_POPULATION_OF_SOME = _for_customers(_POPULATION)

# The population's columns: the days since the last and first purchase, then the statistics a
# stored row keeps, in their order (stored.STORED_STATS: one list of them).
POPULATION_FIELDS = ["days_since_last", "days_since_first", *stored.STORED_STATS]


async def load_population(
    conn: Connection | Pool,
    as_of: datetime,
    zone: tzinfo,
    window_days: int,
    customers: list[str] | None = None,
    *,
    count_zero_value: bool = False,
) -> Population:
    """Every customer who bought up to `as_of` (or just `customers`), with their statistics."""
    local_day: date = as_of.astimezone(zone).date()
    query = _POPULATION if customers is None else _POPULATION_OF_SOME
    rows = await conn.fetch(query, as_of, local_day, window_days, customers, count_zero_value)
    if len(rows) < POPULATION_IN_THREAD:
        return _population_of(rows, as_of)
    return await asyncio.to_thread(_population_of, rows, as_of)  # the loop keeps serving


POPULATION_IN_THREAD = 1000  # rows from which the arrays are built in a thread


def _population_of(rows: list[asyncpg.Record], as_of: datetime) -> Population:
    ids = np.array([r[0] for r in rows], dtype=object)
    values = (
        np.array([tuple(r)[1:-1] for r in rows], dtype=np.float64)
        if rows
        else np.zeros((0, len(POPULATION_FIELDS) + 2))
    )
    columns = {name: values[:, i].copy() for i, name in enumerate(POPULATION_FIELDS)}
    return Population(
        as_of=as_of,
        customer_id=ids,
        first_purchase_epoch=values[:, len(POPULATION_FIELDS)].copy(),
        last_purchase_epoch=values[:, len(POPULATION_FIELDS) + 1].copy(),
        net_spent_exact=np.array([r[-1] for r in rows], dtype=object),
        **columns,
    )


# Each customer's purchase days after the local day $6 (the calibration period's last) up
# to $1 (arguments of _BUYERS otherwise): the holdout purchases a model validation compares
# with its prediction, counted as the population counts them (orders once, net of refunds).
_HOLDOUT = f"""
WITH {_BUYERS}
SELECT customer_id, count(*) AS days FROM daily WHERE day > $6::date GROUP BY customer_id
"""


async def holdout_purchase_days(
    conn: Connection | Pool,
    calibration_day: date,
    holdout_end: datetime,
    zone: tzinfo,
    *,
    count_zero_value: bool = False,
) -> dict[str, int]:
    """Purchase days per customer after `calibration_day` up to `holdout_end`."""
    local_day: date = holdout_end.astimezone(zone).date()
    rows = await conn.fetch(
        _HOLDOUT, holdout_end, local_day, 1, None, count_zero_value, calibration_day
    )
    return {r["customer_id"]: int(r["days"]) for r in rows}


async def first_purchase_day(conn: Connection | Pool) -> date | None:
    """The calendar day of the base's first purchase (None: no purchase yet)."""
    day: date | None = await conn.fetchval("SELECT min(day) FROM purchases WHERE NOT is_refund")
    return day


async def database_clock(conn: Connection | Pool) -> datetime:
    """The database's time now (the clock fact rows' applied_at are stamped with)."""
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


async def latest_models(conn: Connection | Pool) -> Models | None:
    row = await conn.fetchrow("SELECT * FROM clv_models ORDER BY version DESC LIMIT 1")
    return models_of(row) if row else None


def models_of(row: Any) -> Models:
    bgnbd = BgNbdParams(row["r"], row["alpha"], row["a"], row["b"]) if row["r"] else None
    gamma = GammaGammaParams(row["p"], row["q"], row["gamma"]) if row["p"] else None
    return Models(row["version"], row["time_unit"], bgnbd, gamma)


async def save_models(conn: Connection | Pool, record: dict[str, Any]) -> Models:
    columns = ", ".join(record)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(record)))
    row = await conn.fetchrow(
        f"INSERT INTO clv_models ({columns}) VALUES ({placeholders}) RETURNING *",
        *record.values(),
    )
    return models_of(row)


async def model_rows(conn: Connection | Pool, limit: int = 1) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM clv_models ORDER BY version DESC LIMIT $1", limit)
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class MoneyTerms:
    """What a run's money figures mean: currency, predictive CLV horizon and weekly discount
    rate, margin share."""

    currency: str
    horizon_weeks: int
    discount_rate_per_week: float
    margin: float


async def save_run(
    conn: Connection,
    as_of: datetime,
    models: Models | None,
    reference: Reference,
    seconds: float,
    loaded_at: datetime | None = None,
    terms: MoneyTerms | None = None,
) -> int:
    """`loaded_at`: when the run loaded its population (facts applied after are not in it)."""
    run_id: int = await conn.fetchval(
        "INSERT INTO score_runs (as_of, model_version, customers, recency, frequency, monetary,"
        " mvc_threshold, seconds, simple_order_value, simple_weekly_rate, simple_lifespan_weeks,"
        " simple_lifespan_measured, loaded_at, currency, horizon_weeks, discount_rate_per_week,"
        " margin)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        " RETURNING run_id",
        as_of,
        models.version if models else None,
        reference.size,
        reference.recency.tobytes(),
        reference.frequency.tobytes(),
        reference.monetary.tobytes(),
        reference.mvc_threshold,
        seconds,
        *(
            (simple.order_value, simple.weekly_rate, simple.lifespan_weeks, simple.measured)
            if (simple := reference.simple)
            else (None, None, None, None)
        ),
        loaded_at,
        *(
            (terms.currency, terms.horizon_weeks, terms.discount_rate_per_week, terms.margin)
            if terms
            else (None, None, None, None)
        ),
    )
    return run_id


async def latest_terms(conn: Connection | Pool) -> MoneyTerms | None:
    """The money terms of the latest re-score (None: no run, or one stored before them)."""
    row = await conn.fetchrow(
        "SELECT currency, horizon_weeks, discount_rate_per_week, margin FROM score_runs"
        " ORDER BY run_id DESC LIMIT 1"
    )
    if row is None or row["currency"] is None:
        return None
    return MoneyTerms(**dict(row))


async def latest_reference(conn: Connection | Pool) -> tuple[int, datetime, Reference] | None:
    row = await conn.fetchrow("SELECT * FROM score_runs ORDER BY run_id DESC LIMIT 1")
    return (row["run_id"], row["as_of"], reference_of(row)) if row else None


async def run_reference(conn: Connection | Pool, run_id: int) -> Reference:
    return reference_of(await conn.fetchrow("SELECT * FROM score_runs WHERE run_id = $1", run_id))


def reference_of(row: Any) -> Reference:
    """The population a score_runs row measured."""
    return Reference(
        recency=np.frombuffer(row["recency"], dtype=np.float64),
        frequency=np.frombuffer(row["frequency"], dtype=np.float64),
        monetary=np.frombuffer(row["monetary"], dtype=np.float64),
        mvc_threshold=row["mvc_threshold"],
        simple=None
        if row["simple_order_value"] is None
        else SimpleClvBase(
            order_value=row["simple_order_value"],
            weekly_rate=row["simple_weekly_rate"],
            lifespan_weeks=row["simple_lifespan_weeks"],
            measured=row["simple_lifespan_measured"],
        ),
    )


async def scoring_basis(conn: Connection) -> tuple[int | None, int | None]:
    """The latest re-score that saw a buyer (None: none yet) and the latest model version."""
    row = await conn.fetchrow(
        "SELECT (SELECT run_id FROM score_runs WHERE customers > 0"
        " ORDER BY run_id DESC LIMIT 1) AS run_id, (SELECT max(version) FROM clv_models) AS version"
    )
    assert row is not None
    return row["run_id"], row["version"]


async def previous_classes(conn: Connection) -> dict[str, tuple[str, str, str]]:
    """(segment, tier, churn level) of every customer in the previous re-score's snapshot
    (its history; before a history was kept, the snapshot table)."""
    rows = await conn.fetch(
        "SELECT customer_id, segment, tier, churn_level FROM ("
        " SELECT DISTINCT ON (customer_id) * FROM score_history"
        " ORDER BY customer_id, run_id DESC) latest WHERE present"
    )
    if not rows and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM score_history)"):
        rows = await conn.fetch(
            "SELECT customer_id, segment, tier, churn_level FROM customer_scores"
        )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


# A stored row's columns as stored.row_columns gives them: the unnest's types, and the
# table columns they fill (the statistics become one array).
_SCORE_TYPES = {
    "recency_score": "smallint",
    "frequency_score": "smallint",
    "monetary_score": "smallint",
    "segment": "text",
    "tier": "text",
    "value_class": "text",
    "lifecycle": "text",
    "p_alive": "float8",
    "expected_purchases": "float8",
    "expected_spend": "float8",
    "predicted_clv": "float8",
    "simple_clv": "float8",
    "churn_risk": "float8",
    "churn_level": "text",
}
_ROW_TYPES = {
    "customer_id": "text",
    **{name: _SCORE_TYPES[name] for name in stored.SCORE_FIELDS},
    "rfm_code": "text",
    "net_spent": "numeric",
    "orders": "int",
    "last_purchase_at": "timestamptz",
    "first_purchase_at": "timestamptz",
    **{f"stat_{i}": "float8" for i in range(len(stored.STORED_STATS))},
}
_ROW_FIELDS = [*list(_ROW_TYPES)[: -len(stored.STORED_STATS)], "stats"]
_STATS_ARRAY = "ARRAY[" + ", ".join(f"u.stat_{i}" for i in range(len(stored.STORED_STATS))) + "]"


def _unnest_rows(first_parameter: int) -> str:
    """SELECT of the stored rows passed as arrays from $first_parameter on (_ROW_FIELDS)."""
    arrays = unnest(*_ROW_TYPES.values(), first=first_parameter)
    plain = ", ".join(f"u.{c}" for c in list(_ROW_TYPES)[: -len(stored.STORED_STATS)])
    return f"SELECT {plain}, {_STATS_ARRAY} FROM {arrays} AS u({', '.join(_ROW_TYPES)})"


SCORES_PER_STATEMENT = 5000  # rows: each statement's encoding holds the event loop briefly

# A fold may score a customer while a re-score runs: the re-score does not replace a row the
# fold stored after (or just before: a transaction commits after it starts, and folding
# transactions last well under this) the re-score loaded its population.
COMMIT_MARGIN = timedelta(minutes=5)

_SET_ROW = ", ".join(
    f"{c} = EXCLUDED.{c}"
    for c in [
        *_ROW_FIELDS[1:],
        "run_id",
        "scored_as_of",
        "source",
        "model_version",
        "applied_at",
    ]
)


async def save_scores(
    conn: Connection,
    run_id: int,
    scores: Scores,
    population: Population,
    previous: dict[str, tuple[str, str, str]],
    *,
    model_version: int | None,
    loaded_at: datetime,
) -> None:
    """A re-score's rows: staged, then added to the run history where they changed (and a
    departure for each customer of `previous`, the last snapshot, no longer in it), then made
    the current rows, but for those the fold stored since the population was loaded."""
    columns = await asyncio.to_thread(stored.row_columns, scores, population)
    await conn.execute(
        "CREATE TEMP TABLE run_rows ON COMMIT DROP AS"
        f" SELECT {', '.join(_ROW_FIELDS)} FROM customer_scores WITH NO DATA"
    )
    statement = f"INSERT INTO run_rows ({', '.join(_ROW_FIELDS)}) {_unnest_rows(1)}"
    for start in range(0, scores.customer_id.size, SCORES_PER_STATEMENT):
        end = start + SCORES_PER_STATEMENT
        await conn.execute(statement, *(column[start:end] for column in columns.values()))
    await conn.execute("ANALYZE run_rows")
    await conn.execute(_HISTORY_CHANGED, run_id)
    kept = set(columns["customer_id"])
    departed = [customer for customer in previous if customer not in kept]
    await conn.execute(
        "INSERT INTO score_history (customer_id, run_id, present)"
        " SELECT unnest($1::text[]), $2, false",
        departed,
        run_id,
    )
    # Every current row locked first, in customer order as the fold locks its rows: the
    # updates and deletes below then wait for no fold that could wait for them.
    await conn.execute("SELECT 1 FROM customer_scores ORDER BY customer_id FOR UPDATE")
    await conn.execute(
        f"INSERT INTO customer_scores ({', '.join(_ROW_FIELDS)}, run_id, scored_as_of, source,"
        " model_version, applied_at)"
        f" SELECT {', '.join(_ROW_FIELDS)}, $1, $2, 're-score', $3, NULL FROM run_rows"
        " ORDER BY customer_id"
        f" ON CONFLICT (customer_id) DO UPDATE SET {_SET_ROW}"
        " WHERE customer_scores.source <> 'live' OR customer_scores.applied_at < $4",
        run_id,
        population.as_of,
        model_version,
        loaded_at - COMMIT_MARGIN,
    )
    await conn.execute(
        "DELETE FROM customer_scores c WHERE NOT EXISTS"
        " (SELECT 1 FROM run_rows n WHERE n.customer_id = c.customer_id)"
        " AND (c.source <> 'live' OR c.applied_at < $1)",
        loaded_at - COMMIT_MARGIN,
    )


def _rounded(column: str) -> str:
    """SQL: a run_rows model figure as the run history keeps it (stored.MODEL_FIGURES)."""
    value = f"n.{column}::numeric"
    if column in stored.PROBABILITIES:
        return f"round({value}, {stored.PROBABILITY_DECIMALS})::float8"
    digits = stored.SIGNIFICANT_DIGITS - 1
    return (
        f"CASE WHEN n.{column} IS NULL OR n.{column} = 0"
        f" OR n.{column} IN ('Infinity', '-Infinity') THEN n.{column}"
        f" ELSE round({value}, {digits} - floor(log(abs({value})))::int)::float8 END"
    )


# simple_clv is not kept: it moves with every run's population averages (the base's
# lifespan, order value and rate), so a snapshot read derives it (stored.simple_clv_of).
_HISTORY_COLUMNS = [c for c in _ROW_FIELDS if c not in ("customer_id", "simple_clv")]
_HISTORY_VALUES = [_rounded(c) if c in stored.MODEL_FIGURES else f"n.{c}" for c in _HISTORY_COLUMNS]

# The run's rows that differ from the customer's latest history row (or have none, or
# follow a departure).
_FRESH = ", ".join(f"{v} AS {c}" for v, c in zip(_HISTORY_VALUES, _HISTORY_COLUMNS, strict=True))
_HISTORY_CHANGED = f"""
WITH fresh AS (
    SELECT n.customer_id, {_FRESH}
    FROM run_rows n
)
INSERT INTO score_history (customer_id, run_id, present, {", ".join(_HISTORY_COLUMNS)})
SELECT f.customer_id, $1, true, {", ".join(f"f.{c}" for c in _HISTORY_COLUMNS)}
FROM fresh f
LEFT JOIN LATERAL (
    SELECT * FROM score_history h WHERE h.customer_id = f.customer_id
    ORDER BY h.run_id DESC LIMIT 1
) p ON true
WHERE p.customer_id IS NULL OR NOT p.present
   OR ({", ".join(f"f.{c}" for c in _HISTORY_COLUMNS)})
      IS DISTINCT FROM ({", ".join(f"p.{c}" for c in _HISTORY_COLUMNS)})
"""


async def save_live_scores(
    conn: Connection,
    run_id: int,
    model_version: int | None,
    scores: Scores,
    population: Population,
    departed: list[str],
) -> None:
    """The fold's rows (source 'live'): customers whose facts it applied, scored against
    run `run_id`'s population as of population.as_of; `departed` no longer have a purchase
    that counts. In customer order, as a re-score writes, so the two cannot deadlock."""
    columns = stored.row_columns(scores, population)
    await conn.execute(
        f"INSERT INTO customer_scores ({', '.join(_ROW_FIELDS)}, run_id, scored_as_of, source,"
        f" model_version, applied_at) SELECT *, $1::int, $2::timestamptz, 'live', $3::int,"
        f" now() FROM ({_unnest_rows(4)}) r ORDER BY 1"
        f" ON CONFLICT (customer_id) DO UPDATE SET {_SET_ROW}",
        run_id,
        population.as_of,
        model_version,
        *columns.values(),
    )
    if departed:
        await conn.execute(
            "DELETE FROM customer_scores WHERE customer_id = ANY($1::text[])", departed
        )


# The run in force at $2 (the latest that saw a buyer, as of $2 or before) and the
# customer's row in its snapshot (the latest history row up to it); no row: no run yet.
_SNAPSHOT = """
WITH run AS (
    SELECT * FROM score_runs WHERE customers > 0 AND as_of <= $2
    ORDER BY as_of DESC, run_id DESC LIMIT 1
)
SELECT h.*, r.run_id, r.as_of AS run_as_of, r.customers AS reference_customers,
       r.mvc_threshold, r.simple_lifespan_weeks, r.simple_lifespan_measured,
       r.simple_order_value, r.simple_weekly_rate,
       r.currency, r.horizon_weeks, r.discount_rate_per_week, r.margin,
       r.model_version, m.time_unit
FROM run r
LEFT JOIN LATERAL (
    SELECT * FROM score_history h WHERE h.customer_id = $1 AND h.run_id <= r.run_id
    ORDER BY h.run_id DESC LIMIT 1
) h ON true
LEFT JOIN clv_models m ON m.version = r.model_version
"""


async def snapshot_score(pool: Pool, customer_id: str, instant: datetime) -> dict[str, Any] | None:
    """The run in force at `instant` and the customer's row in its snapshot (`present` not
    true: not a buyer in it); None: no re-score that saw a buyer up to `instant`."""
    row = await pool.fetchrow(_SNAPSHOT, customer_id, instant)
    return dict(row) if row else None


# ---- read side: the API's queries ---------------------------------------------------------

# One customer's current row, with what its run measured (one indexed read).
_RUN_COLUMNS = {
    "run_as_of": "r.as_of",
    "reference_customers": "r.customers",
    "mvc_threshold": "r.mvc_threshold",
    "simple_lifespan_weeks": "r.simple_lifespan_weeks",
    "simple_lifespan_measured": "r.simple_lifespan_measured",
    "currency": "r.currency",
    "horizon_weeks": "r.horizon_weeks",
    "discount_rate_per_week": "r.discount_rate_per_week",
    "margin": "r.margin",
    "time_unit": "m.time_unit",
}
_CURRENT_COLUMNS = (
    *_ROW_FIELDS,
    "run_id",
    "scored_as_of",
    "source",
    "model_version",
    *_RUN_COLUMNS,
)
_CURRENT = f"""
SELECT {", ".join(f"s.{c}" for c in _CURRENT_COLUMNS if c not in _RUN_COLUMNS)},
       {", ".join(f"{v} AS {c}" for c, v in _RUN_COLUMNS.items())}
FROM customer_scores s
JOIN score_runs r ON r.run_id = s.run_id
LEFT JOIN clv_models m ON m.version = s.model_version
WHERE s.customer_id = $1 AND s.stats IS NOT NULL
"""


async def current_score(pool: Pool, customer_id: str) -> dict[str, Any] | None:
    """The customer's current row (None: none, or one stored before rows kept statistics)."""
    row = await pool.fetchrow(_CURRENT, customer_id)
    return dict(row) if row else None


# The latest of each kind in the customer view: the columns (as named in the answer), the
# table, and the row each becomes (read within the customer's rows of the table's key).
_LATEST = {
    "latest_purchases": (
        ("event_id", "order_id", "time", "amount", "is_refund"),
        "ROW(event_id, order_id, time, amount, is_refund) FROM purchases",
    ),
    "latest_interactions": (
        ("event_id", "time", "channel", "direction", "sentiment", "topic"),
        "ROW(event_id, time, channel, direction, sentiment, topic) FROM interactions",
    ),
    "latest_complaints": (
        ("complaint_id", "opened_at", "category"),
        "ROW(complaint_id, time, category) FROM complaints",
    ),
    "latest_surveys": (
        ("kind", "score", "answered_at", "survey_id", "channel"),
        "ROW(kind, score, time, survey_id, channel) FROM surveys",
    ),
}

# The customer's survey answers of each kind: how many, the latest, and the shares the
# satisfaction KPIs read (NPS: 9-10 promoters, 0-6 detractors; CSAT: 4-5 satisfied).
_SURVEY_COLUMNS = (
    "kind",
    "responses",
    "latest_score",
    "latest_at",
    "average_score",
    "promoters",
    "detractors",
    "satisfied",
)
_SURVEY_SUMMARY = """
SELECT ROW(kind, count(*),
       (array_agg(score ORDER BY time DESC, source DESC, event_id DESC))[1],
       max(time), avg(score)::float8,
       count(*) FILTER (WHERE kind = 'nps' AND score >= 9),
       count(*) FILTER (WHERE kind = 'nps' AND score <= 6),
       count(*) FILTER (WHERE kind = 'csat' AND score >= 4))
FROM surveys WHERE customer_id = $1 GROUP BY kind
"""

_COUNTS = {
    "purchases": "purchases WHERE customer_id = $1 AND NOT is_refund",
    "refunds": "purchases WHERE customer_id = $1 AND is_refund",
    "interactions": "interactions WHERE customer_id = $1",
    "complaints": "complaints WHERE customer_id = $1",
    "surveys": "surveys WHERE customer_id = $1",
}

# Everything the customer view shows, in one statement: counts, profile events, the latest
# of each kind, the survey summary and the current scores row (its columns; NULL: none).
_VIEW = f"""
SELECT {", ".join(f"(SELECT count(*) FROM {where}) AS {name}" for name, where in _COUNTS.items())},
       ARRAY(SELECT body FROM customer_events WHERE customer_id = $1 ORDER BY time)
           AS profile_events,
       {
    ", ".join(
        f"ARRAY(SELECT {rows} WHERE customer_id = $1 ORDER BY time DESC LIMIT $2) AS {name}"
        for name, (_, rows) in _LATEST.items()
    )
},
       ARRAY({_SURVEY_SUMMARY}) AS survey_summary,
       current.*
FROM (SELECT 1) one LEFT JOIN LATERAL ({_CURRENT}) current ON true
"""


async def customer_view(pool: Pool, customer_id: str, latest: int) -> dict[str, Any] | None:
    """Profile events, the customer's current scores row (as current_score reads it), counts
    and the latest of each kind; None if unknown. One statement."""
    row = await pool.fetchrow(_VIEW, customer_id, latest)
    assert row is not None
    counts = {name: row[name] for name in _COUNTS}
    if not any(counts.values()) and not row["profile_events"]:
        return None
    view: dict[str, Any] = {
        "profile_events": list(row["profile_events"]),
        "scores": {k: row[k] for k in _CURRENT_COLUMNS} if row["run_as_of"] else None,
        "counts": counts,
        "survey_summary": {
            found[0]: dict(zip(_SURVEY_COLUMNS, found, strict=True))
            for found in row["survey_summary"]
        },
    }
    for name, (columns, _) in _LATEST.items():
        view[name] = [dict(zip(columns, found, strict=True)) for found in row[name]]
    return view


# Columns of a row that a campaign list does not show (the statistics behind explanations,
# the fold's bookkeeping).
_UNLISTED = ("sort_key", "stats", "applied_at")

_SORTS = {
    "clv": "coalesce(predicted_clv, '-Infinity'::float8)",
    "churn_risk": "churn_risk",
    "monetary": "net_spent::float8",
    "recency": "extract(epoch FROM last_purchase_at)",
}


async def list_customers(
    pool: Pool,
    *,
    segment: str | None,
    tier: str | None,
    lifecycle: str | None,
    min_churn_risk: float | None,
    sort: str,
    limit: int,
    after: tuple[float, str] | None,
) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
    """A page of customer_scores, highest sort key first; keyset pagination on (key, id)."""
    key = _SORTS[sort]
    rows = await pool.fetch(
        f"""
        SELECT *, {key} AS sort_key FROM customer_scores
        WHERE ($1::text IS NULL OR segment = $1) AND ($2::text IS NULL OR tier = $2)
          AND ($3::text IS NULL OR lifecycle = $3) AND ($4::float8 IS NULL OR churn_risk >= $4)
          AND ($5::float8 IS NULL OR ({key}, customer_id) < ($5::float8, $6::text))
        ORDER BY {key} DESC, customer_id DESC
        LIMIT $7
        """,
        segment,
        tier,
        lifecycle,
        min_churn_risk,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    items = [{k: v for k, v in dict(r).items() if k not in _UNLISTED} for r in rows]
    last = (float(rows[-1]["sort_key"]), rows[-1]["customer_id"]) if rows else None
    return items, last


async def segment_stats(pool: Pool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for column, name in (("segment", "segments"), ("tier", "tiers")):
        rows = await pool.fetch(
            f"SELECT {column} AS label, count(*) AS customers, sum(net_spent)::float8 AS revenue,"
            f" avg(predicted_clv) AS average_clv FROM customer_scores GROUP BY {column}"
            f" ORDER BY {column}"
        )
        result[name] = {
            r["label"]: {k: r[k] for k in ("customers", "revenue", "average_clv")} for r in rows
        }
    return result


# The latest MAN assessment of each lead (customer), its class code ("M+a+N": upper case =
# has it), and whether the customer ever placed an order; $1: class codes to keep (NULL:
# all), $2: the cursor (the last customer id of the previous page), $3: page size.
_LEADS = """
WITH latest AS (
    SELECT DISTINCT ON (customer_id) customer_id, time, body->'data' AS data
    FROM customer_events WHERE type = 'crm.lead.assessed'
    ORDER BY customer_id, time DESC, source DESC, event_id DESC
), classed AS (
    SELECT customer_id, time AS assessed_at,
           (data->>'money')::bool AS money, (data->>'authority')::bool AS authority,
           (data->>'need')::bool AS need, data->>'assessed_by' AS assessed_by,
           concat_ws('+', CASE WHEN (data->>'money')::bool THEN 'M' ELSE 'm' END,
                          CASE WHEN (data->>'authority')::bool THEN 'A' ELSE 'a' END,
                          CASE WHEN (data->>'need')::bool THEN 'N' ELSE 'n' END) AS code
    FROM latest
)
SELECT c.*, {bought} AS has_bought
FROM classed c
WHERE ($1::text[] IS NULL OR c.code = ANY($1::text[]))
  AND ($2::text IS NULL OR c.customer_id > $2)
ORDER BY c.customer_id
LIMIT $3
"""


def _bought(customer: str, count_zero_value: str) -> str:
    """SQL: whether `customer` has a purchase that counts (an order whose refunds leave some
    of it, or of value 0 where `count_zero_value`), as _BUYERS counts them; read within the
    customer's rows of the purchases key."""
    return f"""EXISTS (
    SELECT 1 FROM purchases o
    WHERE o.customer_id = {customer} AND NOT o.is_refund
      AND (o.amount + coalesce((SELECT sum(r.amount) FROM purchases r
                                WHERE r.customer_id = o.customer_id AND r.is_refund
                                  AND r.order_id = o.order_id), 0) > 0
           OR ({count_zero_value} AND o.amount = 0)))"""


async def list_leads(
    pool: Pool, codes: list[str] | None, after: str | None, limit: int, *, count_zero_value: bool
) -> list[dict[str, Any]]:
    """A page of leads by customer id, their latest assessment in one of `codes` (None: any),
    and whether they have bought (a purchase that counts)."""
    query = _LEADS.replace("{bought}", _bought("c.customer_id", "$4::bool"))
    return [dict(r) for r in await pool.fetch(query, codes, after, limit, count_zero_value)]


# Prospects: customers the customer events know (registered, updated, assessed as a lead)
# with no purchase that counts; $1 the cursor (last customer id), $2 page size.
_PROSPECTS = """
WITH known AS (
    SELECT DISTINCT customer_id FROM customer_events
    WHERE $1::text IS NULL OR customer_id > $1
)
SELECT k.customer_id,
       (SELECT min(time) FROM customer_events e
        WHERE e.customer_id = k.customer_id AND e.type = 'crm.customer.registered')
           AS registered_at
FROM known k
WHERE NOT {bought}
ORDER BY k.customer_id
LIMIT $2
"""


async def list_prospects(
    pool: Pool, after: str | None, limit: int, *, count_zero_value: bool
) -> list[dict[str, Any]]:
    """A page of prospects by customer id."""
    query = _PROSPECTS.replace("{bought}", _bought("k.customer_id", "$3::bool"))
    return [dict(r) for r in await pool.fetch(query, after, limit, count_zero_value)]
