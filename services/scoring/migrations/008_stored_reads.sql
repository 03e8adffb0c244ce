-- Reads served from stored rows (issue 16, items 1-2).
--
-- customer_scores is the current row of every buyer: the last re-score's, or the fold's
-- (source 'live') for a customer whose facts were applied since, scored then against the
-- last re-score's population. Beside the scores it keeps what explains them, so a read is
-- one indexed lookup: the instant it scores (scored_as_of), the model, the first purchase,
-- and the customer's statistics (`stats`, store.STORED_STATS order; the two that move with
-- the clock, days since the first and the last purchase, follow from scored_as_of and the
-- first and last purchase). applied_at: when the fold stored it (a re-score does not
-- replace a row the fold stored after the re-score loaded its population).
ALTER TABLE customer_scores
    ADD COLUMN scored_as_of       timestamptz,
    ADD COLUMN source             text NOT NULL DEFAULT 're-score',
    ADD COLUMN applied_at         timestamptz,
    ADD COLUMN model_version      int,
    ADD COLUMN first_purchase_at  timestamptz,
    ADD COLUMN stats              float8[];

-- Each re-score's snapshot, compactly: a customer's row is written in a run when a value
-- differs from the customer's previous row (the model's figures compared and kept rounded,
-- stored.MODEL_FIGURES, so the clock's drift does not rewrite everyone every run); `present`
-- false: the customer left the population (no purchase counts any more). The snapshot of
-- run N is, per customer, the latest row with run_id <= N.
CREATE TABLE score_history (
    customer_id         text NOT NULL,
    run_id              int  NOT NULL,
    present             boolean NOT NULL,
    recency_score       smallint,
    frequency_score     smallint,
    monetary_score      smallint,
    rfm_code            text,
    segment             text,
    tier                text,
    value_class         text,
    lifecycle           text,
    p_alive             double precision,
    expected_purchases  double precision,
    expected_spend      double precision,
    predicted_clv       double precision,
    simple_clv          double precision,
    churn_risk          double precision,
    churn_level         text,
    net_spent           numeric,
    orders              int,
    first_purchase_at   timestamptz,
    last_purchase_at    timestamptz,
    stats               float8[],
    PRIMARY KEY (customer_id, run_id)
);

-- The run in force at an instant: the latest that saw a buyer up to it.
CREATE INDEX score_runs_as_of ON score_runs (as_of DESC, run_id DESC) WHERE customers > 0;
