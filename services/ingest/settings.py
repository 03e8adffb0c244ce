"""Ingest's settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Request body cap.")
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Events per request cap.")
