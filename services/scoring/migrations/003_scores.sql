-- Fitted lifetime-value models; the latest is used for scoring.
CREATE TABLE clv_models (
    version          serial PRIMARY KEY,
    fitted_at        timestamptz NOT NULL DEFAULT now(),
    observation_end  timestamptz NOT NULL,
    time_unit        text        NOT NULL,
    customers        int         NOT NULL,
    fit_seconds      double precision NOT NULL,
    r double precision, alpha double precision, a double precision, b double precision,
    bgnbd_log_likelihood double precision, bgnbd_method text,
    p double precision, q double precision, gamma double precision,
    gamma_gamma_log_likelihood double precision, gamma_gamma_customers int
);

-- Each re-score: when, with which model, and the reference population (sorted R, F, M
-- values as float64 arrays) that a single customer is scored against until the next one.
CREATE TABLE score_runs (
    run_id         serial PRIMARY KEY,
    as_of          timestamptz NOT NULL,
    model_version  int REFERENCES clv_models (version),
    customers      int   NOT NULL,
    recency        bytea NOT NULL,
    frequency      bytea NOT NULL,
    monetary       bytea NOT NULL,
    mvc_threshold  double precision NOT NULL,
    seconds        double precision NOT NULL
);

-- The latest re-score of every customer who bought: campaign lists read this table.
CREATE TABLE customer_scores (
    customer_id         text PRIMARY KEY,
    run_id              int  NOT NULL,
    recency_score       smallint NOT NULL,
    frequency_score     smallint NOT NULL,
    monetary_score      smallint NOT NULL,
    rfm_code            text NOT NULL,
    segment             text NOT NULL,
    tier                text NOT NULL,
    value_class         text NOT NULL,
    lifecycle           text NOT NULL,
    p_alive             double precision,
    expected_purchases  double precision,
    expected_spend      double precision,
    predicted_clv       double precision,
    simple_clv          double precision NOT NULL,
    churn_risk          double precision NOT NULL,
    churn_level         text NOT NULL,
    net_spent           numeric NOT NULL,
    orders              int NOT NULL,
    last_purchase_at    timestamptz
);
CREATE INDEX customer_scores_segment ON customer_scores (segment);
CREATE INDEX customer_scores_tier ON customer_scores (tier);
CREATE INDEX customer_scores_clv ON customer_scores (predicted_clv DESC NULLS LAST, customer_id);
CREATE INDEX customer_scores_churn ON customer_scores (churn_risk DESC, customer_id);
