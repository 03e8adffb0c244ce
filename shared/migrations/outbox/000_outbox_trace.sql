-- The trace context (W3C traceparent) an event was stored under, for the relay to send as a
-- record header; NULL with tracing off.
ALTER TABLE outbox ADD COLUMN traceparent text;
