-- Bounded dedupe state (see shared/consumer.py). Identity is (source, id), as CloudEvents 1.0
-- says. An applied event is remembered for the dedupe window with the log position that
-- published it; expired entries are folded into one mark per (partition, log): every record of
-- that log on that partition numbered at or below the mark was applied.
DROP TABLE applied_events;
CREATE TABLE applied_events (
    consumer    text        NOT NULL,
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    log         text        NOT NULL,
    seq         bigint      NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, event_id)
);
CREATE INDEX applied_events_expiry ON applied_events (consumer, topic, partition, applied_at);

CREATE TABLE log_marks (
    consumer   text   NOT NULL,
    topic      text   NOT NULL,
    partition  int    NOT NULL,
    log        text   NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition, log)
);
