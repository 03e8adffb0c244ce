-- Tables of the shared consumer runtime, created in every consuming service's own schema.

-- The next Kafka offset to read per partition, written in the same transaction as the read
-- model rows it produced. `fingerprint` identifies the last record applied, so that after a
-- broker loses its log the runtime can tell the new log from the one it applied.
CREATE TABLE consumer_offsets (
    consumer     text   NOT NULL,
    topic        text   NOT NULL,
    partition    int    NOT NULL,
    next_offset  bigint NOT NULL,
    fingerprint  bytea,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Every event id applied: a redelivered event (the relay is at-least-once) changes nothing.
CREATE TABLE applied_events (
    consumer  text NOT NULL,
    event_id  text NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
