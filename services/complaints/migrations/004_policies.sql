-- SLA calendars and policies, every version of each (append-only: a change is a new row with
-- a later effective_from). A complaint takes the versions in force when it was opened, so a
-- row is never updated or deleted. `spec` holds the rule's fields (policy_store.py).
-- Written by the admin API and the seed, not folded from topics: kept on rebuild.
CREATE TABLE sla_rules (
    kind            text        NOT NULL CHECK (kind IN ('calendar', 'policy')),
    name            text        NOT NULL,
    effective_from  timestamptz NOT NULL,
    spec            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name, effective_from)
);
