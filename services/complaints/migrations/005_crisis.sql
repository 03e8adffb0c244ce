-- Crisis handling (issue 15 item 7): each alert's severity, what it counted, and the stage
-- the team has it in. The stage changes themselves are events in the event log
-- (crm.crisis.stage_changed), which the timeline reads.
ALTER TABLE crisis_alerts
    ADD COLUMN id          text,  -- short, URL-safe: the first 20 hex digits of sha256(key)
    ADD COLUMN counted     text,  -- complaints, nps_detractors, csat_negative, negative_interactions
    ADD COLUMN customers   int,
    ADD COLUMN channels    int,
    ADD COLUMN ratio       double precision,
    ADD COLUMN magnitude   int,
    ADD COLUMN reach       int,
    ADD COLUMN severity    text,
    ADD COLUMN text_en     text,
    ADD COLUMN text_zh     text,
    ADD COLUMN stage       text NOT NULL DEFAULT 'identify',
    ADD COLUMN stage_at    timestamptz,
    ADD COLUMN difficulty  text;
UPDATE crisis_alerts SET id = left(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 20);
ALTER TABLE crisis_alerts ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX crisis_alerts_id ON crisis_alerts (id);
CREATE INDEX crisis_alerts_page ON crisis_alerts (window_end DESC, id DESC);

-- An alert's stage changes, for its timeline.
CREATE INDEX events_crisis_stage ON events ((body->'data'->>'alert_id'), time)
    WHERE type = 'crm.crisis.stage_changed';

-- The reach of a complaint series: distinct customers and channels of the complaints opened
-- in an alert's window.
CREATE INDEX complaint_events_opened ON complaint_events (time)
    WHERE body->>'type' = 'crm.complaint.opened';

-- The reach of a negative-signal series (negative NPS and CSAT answers, negative
-- interactions), folded by the activity consumer: who, through which channel, when.
CREATE TABLE signal_reach (
    value        text        NOT NULL,
    time         timestamptz NOT NULL,
    event_id     text        NOT NULL,
    customer_id  text        NOT NULL,
    channel      text,
    PRIMARY KEY (value, time, event_id)
);

-- Silence after a complaint (issue 15 item 8), folded by the activity consumer: per customer
-- the latest act (purchase or contact) and the latest resolution, and the windows after a
-- resolution that may still end in silence.
CREATE TABLE silence_customers (
    customer_id        text PRIMARY KEY,
    last_activity      timestamptz,
    latest_resolution  timestamptz
);
CREATE TABLE silence_watches (
    customer_id           text        NOT NULL,
    complaint_id          text        NOT NULL,
    resolved_at           timestamptz NOT NULL,
    first_activity_after  timestamptz,
    last_activity_before  timestamptz,
    PRIMARY KEY (customer_id, resolved_at, complaint_id)
);
CREATE INDEX silence_watches_due ON silence_watches (resolved_at);
