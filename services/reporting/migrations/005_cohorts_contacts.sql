-- Rows the fold keeps current for the KPIs of issue 15 (items 11 and 12): the cohort
-- retention matrix and the contacts by who handled them and how.

-- One row per customer and local month with a purchase (keyed: a month is written once,
-- a redelivery or a second order adds nothing). With `customers.first_purchase_day` it
-- gives the cohort retention matrix at query time: a late purchase before a customer's
-- first one moves them to an earlier cohort, which a pre-summed matrix could not undo
-- without reading rows before writing them (store.py's rule against that).
CREATE TABLE customer_months (
    customer_id  text NOT NULL,
    month        date NOT NULL,  -- the first day of the local month
    PRIMARY KEY (customer_id, month)
);
-- No index on month: the matrix finds a cohort's customers through
-- customers_first_purchase and their months through this key, and every purchase of a new
-- month would pay for one more index entry.

-- The purchases folded so far hold every month: the same rows the fold would have written.
INSERT INTO customer_months (customer_id, month)
SELECT DISTINCT customer_id, date_trunc('month', day)::date FROM sales
ON CONFLICT DO NOTHING;

-- Interactions per day, customer, channel, handler ('human' or 'bot') and mode
-- ('synchronous', 'asynchronous', or 'unknown' when the event did not say) (additive).
-- Interactions folded before this migration are not here (the old rows did not keep who
-- handled them): `crm rebuild reporting` folds them in from the topics.
CREATE TABLE interaction_kinds (
    day           date NOT NULL,
    customer_id   text NOT NULL,
    channel       text NOT NULL,
    handled_by    text NOT NULL,
    mode          text NOT NULL,
    interactions  int  NOT NULL,
    PRIMARY KEY (day, customer_id, channel, handled_by, mode)
);
