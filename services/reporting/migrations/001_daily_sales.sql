CREATE TABLE daily_sales (
    day      date    PRIMARY KEY,
    revenue  numeric NOT NULL DEFAULT 0,
    orders   int     NOT NULL DEFAULT 0
);

-- One row per buyer and day: exact distinct buyers per day, week or month.
CREATE TABLE daily_buyers (
    day          date NOT NULL,
    customer_id  text NOT NULL,
    PRIMARY KEY (day, customer_id)
);
