CREATE TABLE purchase_summaries (
    customer_id        text PRIMARY KEY,
    first_purchase_at  timestamptz,
    last_purchase_at   timestamptz,
    purchase_count     int     NOT NULL,
    total_spent        numeric NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
