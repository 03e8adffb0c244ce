"""Ingest's settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Request body cap.")
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Events per request cap.")
    max_in_flight: int = Field(
        default=64, ge=1, description="Requests storing at once; beyond it, 503 Retry-After."
    )
    db_timeout_seconds: float = Field(
        default=5, gt=0, description="Wait for a database connection before answering 503."
    )
    rate_limit_events_per_second: float = Field(
        default=5000,
        gt=0,
        description="Events per second one API key may send to one ingest instance, unless "
        "the key sets its own; beyond it, 429 Retry-After.",
    )
    rate_limit_burst_seconds: float = Field(
        default=2,
        gt=0,
        description="How many seconds of a key's rate it may send at once (at least one batch).",
    )
