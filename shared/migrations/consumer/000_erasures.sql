-- Customers erased (right to erasure) and when: their events up to that instant are kept
-- without personal data, including ones that arrive late or are replayed.
CREATE TABLE erasures (
    customer_id  text PRIMARY KEY,
    erased_at    timestamptz NOT NULL
);
