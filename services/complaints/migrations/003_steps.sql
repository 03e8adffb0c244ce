-- The seven handling steps (issue 15): each complaint's steps done, one row per step and
-- cycle (a reopen starts a new cycle), with the instant its turn began; the durations report
-- reads them by completion time. `seq` keeps the fold's time order.
CREATE TABLE complaint_steps (
    complaint_id  text        NOT NULL,
    seq           int         NOT NULL,
    step          text        NOT NULL,
    cycle         int         NOT NULL,
    started_at    timestamptz,  -- NULL while the opening is not known
    done_at       timestamptz NOT NULL,
    PRIMARY KEY (complaint_id, seq)
);
CREATE INDEX complaint_steps_done ON complaint_steps (done_at);

-- The latest reopening: the start of the current cycle's first step.
ALTER TABLE complaints ADD COLUMN reopened_at timestamptz;

-- Complaints whose history already holds steps (proposals, resolutions, feedback) or a
-- reopening: re-derived from their history on their next event, which records them.
UPDATE complaints SET sla_state = NULL, last_time = NULL, last_id = NULL
WHERE complaint_id IN (
    SELECT complaint_id FROM complaint_events
    WHERE body->>'type' IN ('crm.complaint.solution_proposed', 'crm.complaint.resolved',
                            'crm.complaint.feedback', 'crm.complaint.reopened')
);
