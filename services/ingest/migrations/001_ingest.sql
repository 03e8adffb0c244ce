-- Ingest's schema is the shared event log and outbox (shared/migrations/outbox): the event
-- store is its `events` table. Nothing of ingest's own yet.
SELECT 1;
