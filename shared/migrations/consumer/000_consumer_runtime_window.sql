-- Bounded dedupe state (see shared/consumer.py). A relay numbers the events of its log
-- (`crm-seq`) and publishes them in order, so per (partition, log) a consumer keeps:
-- `high`, the largest number it applied (a record above it is new without a look-up), and
-- `mark`, at or below which every record was applied. Between the two, the numbers applied in
-- the last DEDUPE_WINDOW_SECONDS are kept as one row per batch; older rows are folded into the
-- mark. Rows grow with the window, marks with partitions and logs, nothing with history.
DROP TABLE applied_events;
CREATE TABLE applied_events (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    log         text        NOT NULL,
    low         bigint      NOT NULL,
    high        bigint      NOT NULL,
    seqs        bigint[]    NOT NULL,  -- the numbers this batch applied, ascending
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, log, high)
);
CREATE INDEX applied_events_expiry ON applied_events (consumer, applied_at);

CREATE TABLE log_marks (
    consumer   text   NOT NULL,
    topic      text   NOT NULL,
    partition  int    NOT NULL,
    log        text   NOT NULL,
    mark       bigint NOT NULL DEFAULT 0,
    high       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, topic, partition, log)
);
