-- The epoch of every log a partition's records came from, as of the stored position (see
-- shared/consumer.py): a record of a later epoch means its relay published the log again
-- after a broker lost it, and the partition is re-read from its start.
ALTER TABLE consumer_offsets ADD COLUMN epochs jsonb NOT NULL DEFAULT '{}';
