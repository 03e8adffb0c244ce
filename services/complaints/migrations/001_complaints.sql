-- Every complaint event (including the service's own automatic escalations), so that the
-- state can be re-derived in time order.
CREATE TABLE complaint_events (
    complaint_id  text        NOT NULL,
    event_id      text        NOT NULL,
    time          timestamptz NOT NULL,
    body          jsonb       NOT NULL,
    PRIMARY KEY (complaint_id, event_id)
);

-- The derived state of each complaint, and its SLA clocks as of the last derivation.
CREATE TABLE complaints (
    complaint_id       text PRIMARY KEY,
    customer_id        text NOT NULL,
    status             text NOT NULL,
    channel            text,
    category           text,
    priority           text,
    product            text,
    opened_at          timestamptz,
    first_response_at  timestamptz,
    resolved_at        timestamptz,
    closed_at          timestamptz,
    escalation_level   int  NOT NULL DEFAULT 0,
    feedback_score     int,
    promised_at        timestamptz,
    reopen_count       int  NOT NULL DEFAULT 0,
    before_waiting     text,
    tier               text NOT NULL DEFAULT 'unknown',
    breached           boolean NOT NULL DEFAULT false,
    next_due_at        timestamptz,  -- the earliest deadline of a running clock: queue order
    next_sla_at        timestamptz,  -- the earliest SLA event still to emit: the sweeper's key
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX complaints_customer ON complaints (customer_id);
CREATE INDEX complaints_queue ON complaints (next_due_at, complaint_id);
CREATE INDEX complaints_sweep ON complaints (next_sla_at) WHERE next_sla_at IS NOT NULL;

-- Tier changes per customer, from scoring's derived events: SLA targets depend on the tier.
CREATE TABLE customer_tiers (
    customer_id  text        NOT NULL,
    time         timestamptz NOT NULL,
    event_id     text        NOT NULL,
    tier         text        NOT NULL,
    PRIMARY KEY (customer_id, time, event_id)
);

-- SLA events emitted (warnings, breaches, automatic escalations, clocks stopped).
CREATE TABLE sla_emitted (
    key           text PRIMARY KEY,
    complaint_id  text        NOT NULL,
    kind          text        NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX sla_emitted_complaint ON sla_emitted (complaint_id);

-- Complaints and negative signals per series and hour, for crisis detection.
CREATE TABLE signal_counts (
    dimension  text        NOT NULL,
    value      text        NOT NULL,
    hour       timestamptz NOT NULL,
    count      int         NOT NULL,
    PRIMARY KEY (dimension, value, hour)
);

-- The detectors' state and the last closed hour they have seen.
CREATE TABLE crisis_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_hour   timestamptz,
    detectors   jsonb NOT NULL DEFAULT '[]'
);
INSERT INTO crisis_state DEFAULT VALUES;

CREATE TABLE crisis_alerts (
    key              text PRIMARY KEY,
    dimension        text        NOT NULL,
    value            text        NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    count            int         NOT NULL,
    baseline         double precision NOT NULL,
    score            double precision NOT NULL,
    detected_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX crisis_alerts_window ON crisis_alerts (window_end);

-- Agent commands look up the complaint's own not-yet-folded events in the event log.
CREATE INDEX events_complaint_id ON events ((body->'data'->>'complaint_id'));
