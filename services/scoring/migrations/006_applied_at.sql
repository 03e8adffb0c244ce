-- When each fact was applied (the folding transaction's start), and when each re-score loaded
-- its population: a fact applied after that load is missing from the re-score's snapshot
-- whatever its event time, and the customer view then scores the customer live. now() is
-- stable, so adding these columns rewrites no table (existing rows read the migration's time).
ALTER TABLE purchases ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE interactions ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE complaints ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE score_runs ADD COLUMN loaded_at timestamptz;
