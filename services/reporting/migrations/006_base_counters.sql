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

-- Purchases folded before this migration: their days, not yet counted.
INSERT INTO base_members (customer_id, window_days, state)
SELECT customer_id, NULL,
       jsonb_build_object('w', NULL, 'days', jsonb_agg(day - DATE '0001-01-01' + 1 ORDER BY day))
FROM (SELECT DISTINCT customer_id, day FROM sales) AS bought
GROUP BY customer_id;

INSERT INTO base_window (window_days, ready)
SELECT 365, NOT EXISTS (SELECT FROM base_members);
