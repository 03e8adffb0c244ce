-- A tier summary's customer equity is unknown (NULL) while scoring has no lifetime-value
-- model: "not enough data", not 0.
ALTER TABLE tier_summaries ALTER COLUMN customer_equity DROP NOT NULL;
