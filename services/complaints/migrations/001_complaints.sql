-- Every complaint event, so that the state can be re-derived in time order.
CREATE TABLE complaint_events (
    complaint_id  text        NOT NULL,
    event_id      text        NOT NULL,
    time          timestamptz NOT NULL,
    body          jsonb       NOT NULL,
    PRIMARY KEY (complaint_id, event_id)
);

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
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX complaints_customer ON complaints (customer_id);
