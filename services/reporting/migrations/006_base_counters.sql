-- The customer base (active, at start and end, new, won back, lost) kept by the fold as
-- daily counters, so a KPI read sums a few rows per day instead of scanning every
-- customer's purchases (services/reporting/base.py explains the counters).

-- Each customer's inputs to the counters: purchase days, tier and segment history and
-- acquisition channel as the fold last saw them (`state`, JSON), and the inactivity window
-- W their part of the counters was computed with (NULL: not in the counters yet). The fold
-- locks a customer's row, recomputes their part and writes the difference.
CREATE TABLE base_members (
    customer_id  text PRIMARY KEY,
    window_days  int,
    state        jsonb
);

-- The counters: per inactivity window W, dimension (tier, segment, channel: the total is
-- the sum over channels), slice and local day, one column per counter (base.COLUMNS).
-- Additive; a row whose counters all cancel out is deleted.
CREATE TABLE base_days (
    window_days  int  NOT NULL,
    dim          text NOT NULL,
    slice        text NOT NULL,
    day          date NOT NULL,
    level        int  NOT NULL DEFAULT 0,
    enter        int  NOT NULL DEFAULT 0,
    new          int  NOT NULL DEFAULT 0,
    won          int  NOT NULL DEFAULT 0,
    lost         int  NOT NULL DEFAULT 0,
    level_week   int  NOT NULL DEFAULT 0,
    new_week     int  NOT NULL DEFAULT 0,
    won_week     int  NOT NULL DEFAULT 0,
    lost_week    int  NOT NULL DEFAULT 0,
    join_week    int  NOT NULL DEFAULT 0,
    level_month  int  NOT NULL DEFAULT 0,
    new_month    int  NOT NULL DEFAULT 0,
    won_month    int  NOT NULL DEFAULT 0,
    lost_month   int  NOT NULL DEFAULT 0,
    join_month   int  NOT NULL DEFAULT 0,
    PRIMARY KEY (window_days, dim, day, slice)
);

-- The W the fold counts with, and whether every customer is counted with it (reads use the
-- counters only then; otherwise they compute the base from the purchases, as before). The
-- service sets it to CHURN_AFTER_DAYS and brings every customer over (store.converge_base).
CREATE TABLE base_window (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    window_days  int     NOT NULL,
    ready        boolean NOT NULL
);

-- Customers folded before this migration: their purchase days, classes and acquisition
-- channel (as base.Member keeps them: days as ordinals, 0001-01-01 = 1; times as
-- microseconds since 1970), not yet counted (window_days NULL).
-- backfill:
WITH bought AS (
    SELECT customer_id, jsonb_agg(d ORDER BY d) AS days
    FROM (SELECT DISTINCT customer_id, day - DATE '0001-01-01' + 1 AS d FROM sales) AS s
    GROUP BY customer_id
), classes AS (
    SELECT customer_id, kind,
           jsonb_agg(jsonb_build_array(day - DATE '0001-01-01' + 1,
                                       (extract(epoch FROM as_of) * 1000000)::bigint,
                                       event_id, value) ORDER BY day) AS changes
    FROM customer_classes GROUP BY customer_id, kind
), members AS (
    SELECT customer_id FROM bought
    UNION SELECT customer_id FROM classes
    UNION SELECT customer_id FROM customers WHERE acquisition_channel IS NOT NULL
)
INSERT INTO base_members (customer_id, window_days, state)
SELECT m.customer_id, NULL, jsonb_build_object(
    'w', NULL,
    'days', coalesce(b.days, '[]'::jsonb),
    'tier', coalesce(t.changes, '[]'::jsonb),
    'segment', coalesce(g.changes, '[]'::jsonb),
    'channel', CASE WHEN c.acquisition_channel IS NOT NULL THEN jsonb_build_array(
        (extract(epoch FROM c.acquisition_channel_at) * 1000000)::bigint,
        c.acquisition_channel_by, c.acquisition_channel) END)
FROM members m
LEFT JOIN bought b ON b.customer_id = m.customer_id
LEFT JOIN classes t ON t.customer_id = m.customer_id AND t.kind = 'tier'
LEFT JOIN classes g ON g.customer_id = m.customer_id AND g.kind = 'segment'
LEFT JOIN customers c ON c.customer_id = m.customer_id;
-- :backfill

INSERT INTO base_window (window_days, ready)
SELECT 365, NOT EXISTS (SELECT FROM base_members);
