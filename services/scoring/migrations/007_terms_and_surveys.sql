-- What a re-score's money figures mean: the reporting currency they are in, the predictive
-- CLV's horizon (weeks) and weekly discount rate, and the margin share applied. The API
-- states them beside every figure of the snapshot (NULL in runs stored before: unknown).
ALTER TABLE score_runs
    ADD COLUMN currency                text,
    ADD COLUMN horizon_weeks           int,
    ADD COLUMN discount_rate_per_week  double precision,
    ADD COLUMN margin                  double precision;

-- Survey answers (NPS 0-10, CSAT 1-5) for the unified customer view. The free-text comment
-- is personal data and not kept here; the score, the survey and the channel are.
CREATE TABLE surveys (
    customer_id  text        NOT NULL,
    time         timestamptz NOT NULL,
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('nps', 'csat')),
    score        smallint    NOT NULL,
    survey_id    text,
    channel      text,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, time, source, event_id)
);
