-- Reporting's KPI read models, folded from the topics by `ReportingProjection` (store.py).
--
-- Replaces the skeleton's two tables of 001 and resets the projection's stored offsets and
-- applied ids, so that the consumer re-reads every topic from its start and folds the new
-- tables from the whole history (the same rebuild any reset gives).
DROP TABLE daily_sales;
DROP TABLE daily_buyers;
DELETE FROM consumer_offsets WHERE consumer = 'reporting';
DELETE FROM applied_events WHERE consumer = 'reporting';
--
-- Every table is either additive (a batch adds its deltas: the runtime hands each event id
-- over once, so a redelivery adds nothing) or keyed (one row per fact, latest or earliest
-- wins by the event's own time, never by arrival). Both are independent of the order in
-- which events arrive, so a late event corrects its own past bucket and a rebuild from the
-- start of the topics gives the same rows. Days are local dates in TIMEZONE.
--
-- Distinct counts (buyers, active customers, interacting customers) are exact: the tables
-- keep one row per (day, customer[, dimension]), and a window's count is a
-- count(DISTINCT customer_id) over its days at query time, never a sum of daily counts.

-- Purchases: one row per day, customer and purchase channel (additive; gross amounts).
CREATE TABLE sales (
    day          date    NOT NULL,
    customer_id  text    NOT NULL,
    channel      text    NOT NULL,
    orders       int     NOT NULL,
    revenue      numeric NOT NULL,
    PRIMARY KEY (day, customer_id, channel)
);
CREATE INDEX sales_customer ON sales (customer_id, day);

-- The same purchases split by line-item category (additive). An order with items in two
-- categories counts as an order of each; its amount is split by line totals (domain.py).
CREATE TABLE category_sales (
    day          date    NOT NULL,
    customer_id  text    NOT NULL,
    category     text    NOT NULL,
    orders       int     NOT NULL,
    revenue      numeric NOT NULL,
    PRIMARY KEY (day, customer_id, category)
);

-- One row per buyer and day: exact distinct buyers per window, and the activity that
-- defines active and lost customers (keyed).
CREATE TABLE daily_buyers (
    day          date NOT NULL,
    customer_id  text NOT NULL,
    PRIMARY KEY (day, customer_id)
);
CREATE INDEX daily_buyers_customer ON daily_buyers (customer_id, day);

-- Orders, for attributing a refund to its order's channel and categories at query time
-- (keyed: the first completion of an order id wins).
CREATE TABLE orders (
    customer_id  text    NOT NULL,
    order_id     text    NOT NULL,
    completed_at timestamptz NOT NULL,
    event_id     text    NOT NULL,
    channel      text    NOT NULL,
    categories   text[]  NOT NULL,
    shares       numeric[] NOT NULL,  -- fraction of the order's amount per category
    PRIMARY KEY (customer_id, order_id)
);

-- Refunds (keyed by event): revenue is net of them on the refund's day.
CREATE TABLE refunds (
    event_id     text    PRIMARY KEY,
    customer_id  text    NOT NULL,
    order_id     text    NOT NULL,
    day          date    NOT NULL,
    time         timestamptz NOT NULL,
    amount       numeric NOT NULL,
    reason       text
);
CREATE INDEX refunds_day ON refunds (day);
CREATE INDEX refunds_customer ON refunds (customer_id, time);

-- Net revenue and orders per day (the skeleton's daily fold, kept as a view of the above).
CREATE VIEW daily_sales AS
SELECT day, sum(revenue) AS revenue, sum(orders)::int AS orders
FROM (
    SELECT day, revenue, orders FROM sales
    UNION ALL
    SELECT day, -amount, 0 FROM refunds
) AS moves
GROUP BY day;

-- Customers: first purchase (least wins) and the profile fields reports slice by (latest
-- event time wins, per field).
CREATE TABLE customers (
    customer_id             text PRIMARY KEY,
    first_purchase_day      date,
    acquisition_channel     text,
    acquisition_channel_at  timestamptz,
    acquisition_channel_by  text,  -- event id: breaks ties of time
    churn_reason            text,
    churn_reason_at         timestamptz,
    churn_reason_by         text
);
CREATE INDEX customers_first_purchase ON customers (first_purchase_day);

-- Tier and segment history from scoring's derived events: the latest change of each local
-- day (keyed). A fact is attributed to the class in force on its day (store.py).
CREATE TABLE customer_classes (
    customer_id  text NOT NULL,
    kind         text NOT NULL,  -- 'tier' or 'segment'
    day          date NOT NULL,
    as_of        timestamptz NOT NULL,
    event_id     text NOT NULL,
    value        text NOT NULL,
    PRIMARY KEY (customer_id, kind, day)
);

-- Customers and lifetime value per tier: the latest re-score of each local day (keyed).
CREATE TABLE tier_summaries (
    tier             text    NOT NULL,
    day              date    NOT NULL,
    as_of            timestamptz NOT NULL,
    customers        int     NOT NULL,
    customer_equity  numeric NOT NULL,
    average_clv      numeric,
    PRIMARY KEY (tier, day)
);

-- Interactions per day, customer and channel (additive).
CREATE TABLE interactions (
    day           date NOT NULL,
    customer_id   text NOT NULL,
    channel       text NOT NULL,
    interactions  int  NOT NULL,
    negative      int  NOT NULL,
    PRIMARY KEY (day, customer_id, channel)
);

-- Survey answers per day, customer, kind ('nps' or 'csat'), channel and score (additive).
CREATE TABLE survey_answers (
    day          date NOT NULL,
    customer_id  text NOT NULL,
    kind         text NOT NULL,
    channel      text NOT NULL,
    score        int  NOT NULL,
    responses    int  NOT NULL,
    PRIMARY KEY (day, customer_id, kind, channel, score)
);

-- Complaints (keyed by complaint id): the opening's fields (earliest opening wins) and the
-- latest resolution and reopening (greatest wins), whatever order they arrive in.
CREATE TABLE complaints (
    complaint_id      text PRIMARY KEY,
    customer_id       text NOT NULL,
    opened_at         timestamptz,
    opened_by         text,  -- event id: breaks ties of time
    opened_day        date,
    channel           text,
    category          text,
    priority          text,
    last_resolved_at  timestamptz,
    last_reopened_at  timestamptz
);
CREATE INDEX complaints_opened ON complaints (opened_day);
CREATE INDEX complaints_customer ON complaints (customer_id, opened_at);

-- Every resolution (keyed by event): complaints resolved per window, counted distinct.
CREATE TABLE complaint_resolutions (
    event_id      text PRIMARY KEY,
    complaint_id  text NOT NULL,
    customer_id   text NOT NULL,
    day           date NOT NULL
);
CREATE INDEX complaint_resolutions_day ON complaint_resolutions (day);

-- Answers to the follow-up question of handling step 7 (keyed by event).
CREATE TABLE complaint_feedback (
    event_id      text PRIMARY KEY,
    complaint_id  text NOT NULL,
    customer_id   text NOT NULL,
    day           date NOT NULL,
    score         int  NOT NULL
);
CREATE INDEX complaint_feedback_day ON complaint_feedback (day);

-- SLA clocks that stopped: the latest stop of each (complaint, metric, cycle) counts (a
-- reopen can stop a clock again). Durations are business seconds.
CREATE TABLE sla_clocks (
    complaint_id     text NOT NULL,
    metric           text NOT NULL,
    cycle            int  NOT NULL,
    customer_id      text NOT NULL,
    stopped_at       timestamptz NOT NULL,
    event_id         text NOT NULL,
    day              date NOT NULL,
    outcome          text NOT NULL,  -- 'met' or 'breached'
    elapsed_seconds  double precision NOT NULL,
    target_seconds   double precision NOT NULL,
    tier             text,
    category         text,
    channel          text,
    PRIMARY KEY (complaint_id, metric, cycle)
);
CREATE INDEX sla_clocks_day ON sla_clocks (day);

-- SLA breaches: one per clock cycle, at the instant it happened (earliest wins).
CREATE TABLE sla_breaches (
    complaint_id  text NOT NULL,
    metric        text NOT NULL,
    cycle         int  NOT NULL,
    customer_id   text NOT NULL,
    breached_at   timestamptz NOT NULL,
    event_id      text NOT NULL,
    day           date NOT NULL,
    tier          text,
    category      text,
    channel       text,
    PRIMARY KEY (complaint_id, metric, cycle)
);
CREATE INDEX sla_breaches_day ON sla_breaches (day);

-- Crisis alerts from complaints' detector (keyed by event).
CREATE TABLE crisis_alerts (
    event_id      text PRIMARY KEY,
    detected_at   timestamptz NOT NULL,
    day           date NOT NULL,
    dimension     text NOT NULL,
    value         text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    count         int  NOT NULL,
    baseline      double precision NOT NULL,
    score         double precision NOT NULL
);
CREATE INDEX crisis_alerts_day ON crisis_alerts (day);
CREATE INDEX crisis_alerts_window_end ON crisis_alerts (window_end);

-- Marketing spend spread evenly over the days of its period (keyed by event and day).
CREATE TABLE marketing_spend (
    event_id  text    NOT NULL,
    day       date    NOT NULL,
    channel   text    NOT NULL,
    campaign  text,
    amount    numeric NOT NULL,
    PRIMARY KEY (event_id, day)
);
CREATE INDEX marketing_spend_day ON marketing_spend (day);
