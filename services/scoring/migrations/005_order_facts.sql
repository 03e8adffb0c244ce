-- The simple CLV's population averages of each re-score, so that one customer scored live
-- gets the same simple CLV as in the batch (NULL in runs stored before: recomputed).
ALTER TABLE score_runs
    ADD COLUMN simple_order_value    double precision,
    ADD COLUMN simple_weekly_rate    double precision,
    ADD COLUMN simple_lifespan_weeks double precision,
    ADD COLUMN simple_lifespan_measured boolean;

-- A purchase is an order, once: the same order_id from the same source sent again under
-- another event id counts once (its first event), its refunds net out of its value, and an order refunded in full
-- (or of value 0) is no purchase: it sets neither recency nor frequency. The service derives
-- the same facts (store.py, _BUYERS), where a setting can make value-0 orders count.
CREATE OR REPLACE VIEW purchase_summaries AS
WITH placed AS (
    SELECT DISTINCT ON (customer_id, source, order_id) customer_id, order_id, time, amount
    FROM purchases WHERE NOT is_refund
    ORDER BY customer_id, source, order_id, time, event_id
), refunded AS (
    SELECT customer_id, order_id, sum(amount) AS amount
    FROM purchases WHERE is_refund GROUP BY customer_id, order_id
), orders AS (
    SELECT p.customer_id, p.time, p.amount + coalesce(r.amount, 0) > 0 AS counts
    FROM placed p LEFT JOIN refunded r USING (customer_id, order_id)
), spent AS (
    SELECT customer_id, sum(amount) AS amount FROM placed GROUP BY customer_id
    UNION ALL
    SELECT customer_id, sum(amount) FROM refunded GROUP BY customer_id
)
SELECT s.customer_id,
       min(o.time) FILTER (WHERE o.counts) AS first_purchase_at,
       max(o.time) FILTER (WHERE o.counts) AS last_purchase_at,
       coalesce((count(*) FILTER (WHERE o.counts))::int, 0) AS purchase_count,
       s.total_spent
FROM (SELECT customer_id, sum(amount) AS total_spent FROM spent GROUP BY customer_id) s
LEFT JOIN orders o USING (customer_id)
GROUP BY s.customer_id, s.total_spent;
