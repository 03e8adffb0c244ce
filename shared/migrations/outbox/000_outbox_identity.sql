-- Identity is (source, id), as CloudEvents 1.0 says: two systems may both send id "1001".
ALTER TABLE events DROP CONSTRAINT events_id_key;
ALTER TABLE events ADD CONSTRAINT events_identity UNIQUE (source, id);
