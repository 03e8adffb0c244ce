"""What a running ingest service holds (its settings and caches beside the shared parts),
and the dependency its routes take: `res: Ingest`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from services.ingest.settings import IngestSettings
from shared.auth import TokenBuckets
from shared.service import Resources, resources

RATE_BUCKETS_LIMIT = 10_000  # keys remembered by the rate limiter


@dataclass
class IngestCaches:
    """Kept between requests on this instance."""

    # Each key's rate (RATE_LIMIT_EVENTS_PER_SECOND or its own): bounded; when full, a full
    # bucket (an idle key's, the default anyway) goes first.
    rate_buckets: TokenBuckets
    # The batches being stored now, at most MAX_IN_FLIGHT: more are shed with a 503.
    in_flight: asyncio.Semaphore


def ingest_caches(settings: IngestSettings) -> IngestCaches:
    return IngestCaches(TokenBuckets(RATE_BUCKETS_LIMIT), asyncio.Semaphore(settings.max_in_flight))


IngestResources = Resources[IngestSettings, IngestCaches]
Ingest = Annotated[IngestResources, Depends(resources)]
