-- The event log and transactional outbox of a service that publishes events.

-- Append-only: every accepted event, in its normalised JSON form. `seq` orders the log.
CREATE TABLE events (
    seq           bigserial   PRIMARY KEY,
    id            text        NOT NULL UNIQUE,
    type          text        NOT NULL,
    source        text        NOT NULL,
    subject       text        NOT NULL,
    time          timestamptz NOT NULL,
    topic         text        NOT NULL,
    body          jsonb       NOT NULL,
    content_hash  bytea       NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_topic_seq ON events (topic, seq);
CREATE INDEX events_subject ON events (subject);

-- Events committed but not yet acknowledged by the broker. A row is written in the same
-- transaction as its event and deleted once the broker has acknowledged it.
CREATE TABLE outbox (
    seq bigint PRIMARY KEY REFERENCES events (seq)
);

-- The next offset the relay expects per partition: an acknowledgement below it means the
-- broker's log went backwards (it lost data), and the relay publishes the log again.
CREATE TABLE relay_marks (
    topic        text   NOT NULL,
    partition    int    NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- The relay's log epoch, sent as a header with every record and raised at each re-publish,
-- so that consumers can tell a re-published log from the one they applied.
CREATE TABLE relay_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      int     NOT NULL
);
INSERT INTO relay_state (epoch) VALUES (1);
