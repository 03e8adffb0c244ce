-- What scoring keeps of each customer's history, so that any past date can be scored
-- ("as of last quarter") and the unified customer view has the latest of each kind.

-- Profile and lead events; the profile is their fold in time order.
CREATE TABLE customer_events (
    event_id     text PRIMARY KEY,
    customer_id  text        NOT NULL,
    time         timestamptz NOT NULL,
    type         text        NOT NULL,
    body         jsonb       NOT NULL
);
CREATE INDEX customer_events_customer ON customer_events (customer_id, time);

-- Purchases (amount > 0) and refunds (amount < 0) in the reporting currency. `day` is the
-- calendar day in the deployment's time zone: lifetime-value models count days, not orders.
CREATE TABLE purchases (
    event_id     text PRIMARY KEY,
    customer_id  text        NOT NULL,
    order_id     text        NOT NULL,
    time         timestamptz NOT NULL,
    day          date        NOT NULL,
    amount       numeric     NOT NULL,
    is_refund    boolean     NOT NULL
);
CREATE INDEX purchases_customer_time ON purchases (customer_id, time);
CREATE INDEX purchases_time ON purchases (time);

CREATE TABLE interactions (
    event_id     text PRIMARY KEY,
    customer_id  text        NOT NULL,
    time         timestamptz NOT NULL,
    channel      text        NOT NULL,
    direction    text        NOT NULL,
    sentiment    text,
    topic        text
);
CREATE INDEX interactions_customer_time ON interactions (customer_id, time);

-- Complaints as scoring sees them: their count is part of the cost to serve.
CREATE TABLE complaints (
    event_id      text PRIMARY KEY,
    customer_id   text        NOT NULL,
    complaint_id  text        NOT NULL,
    time          timestamptz NOT NULL,
    category      text        NOT NULL
);
CREATE INDEX complaints_customer_time ON complaints (customer_id, time);
