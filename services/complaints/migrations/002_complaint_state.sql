-- Each complaint's SLA clocks as folded so far, and the last step applied (time, id): events
-- that come after it are applied to the stored state; an earlier one (a late event) makes the
-- complaint be re-derived from complaint_events. NULL (rows from before this migration):
-- re-derive on the next event.
ALTER TABLE complaints
    ADD COLUMN sla_state  bytea,  -- sla.state_to_json
    ADD COLUMN last_time  timestamptz,
    ADD COLUMN last_id    text;
