-- RFM is derived from `purchases` when it is read (store.py, the query GET /rfm and the scores
-- share), so the separately folded summary goes. The view keeps the summary's shape for SQL
-- readers (operators' checks); the service itself does not read it.
DROP TABLE purchase_summaries;
CREATE VIEW purchase_summaries AS
SELECT customer_id,
       min(time) FILTER (WHERE NOT is_refund) AS first_purchase_at,
       max(time) FILTER (WHERE NOT is_refund) AS last_purchase_at,
       (count(*) FILTER (WHERE NOT is_refund))::int AS purchase_count,
       sum(amount) AS total_spent
FROM purchases
GROUP BY customer_id;

-- An event is identified by (source, id), as CloudEvents says: two systems may both send id
-- "1001". Each history table keeps one index, (customer_id, time, source, event_id): it makes
-- a redelivered event a no-op (ON CONFLICT DO NOTHING), and serves every read, which is per
-- customer in time order or a scan of the whole table (the population). One index instead of
-- three is most of what an inserted row costs. Rows stored before this migration get source
-- '' (a `crm rebuild scoring` gives them their own).
ALTER TABLE purchases ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE purchases ALTER COLUMN source DROP DEFAULT;
ALTER TABLE purchases DROP CONSTRAINT purchases_pkey;
DROP INDEX purchases_customer_time, purchases_time;
ALTER TABLE purchases ADD PRIMARY KEY (customer_id, time, source, event_id);

ALTER TABLE interactions ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE interactions ALTER COLUMN source DROP DEFAULT;
ALTER TABLE interactions DROP CONSTRAINT interactions_pkey;
DROP INDEX interactions_customer_time;
ALTER TABLE interactions ADD PRIMARY KEY (customer_id, time, source, event_id);

ALTER TABLE complaints ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE complaints ALTER COLUMN source DROP DEFAULT;
ALTER TABLE complaints DROP CONSTRAINT complaints_pkey;
DROP INDEX complaints_customer_time;
ALTER TABLE complaints ADD PRIMARY KEY (customer_id, time, source, event_id);

ALTER TABLE customer_events ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE customer_events ALTER COLUMN source DROP DEFAULT;
ALTER TABLE customer_events DROP CONSTRAINT customer_events_pkey;
DROP INDEX customer_events_customer;
ALTER TABLE customer_events ADD PRIMARY KEY (customer_id, time, source, event_id);
