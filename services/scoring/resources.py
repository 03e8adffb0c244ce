"""What a running scoring service holds (its settings and caches beside the shared parts),
and the dependency its routes take: `res: Scoring`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends

from services.scoring.population import Reference
from services.scoring.settings import ScoringSettings
from shared.service import Resources, resources

# Populations as of past instants kept for recomputed scores; the oldest goes first.
REFERENCE_CACHE = 8


@dataclass
class ScoringCaches:
    """Kept between requests on this instance."""

    # The last re-score's population (run id, as of, population), which live scores rank
    # against: read at the first request, refreshed after every re-score here; None: not read
    # yet, or no re-score yet.
    last_reference: tuple[int, datetime, Reference] | None = None
    # Populations as of past instants (at most REFERENCE_CACHE), filled one at a time: the
    # requests that miss together would each load the whole population.
    references: dict[datetime, Reference] = field(default_factory=dict)
    references_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # One model validation at a time per instance: each fits the models on the whole base.
    validation_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def scoring_caches(_settings: ScoringSettings) -> ScoringCaches:
    return ScoringCaches()


ScoringResources = Resources[ScoringSettings, ScoringCaches]
Scoring = Annotated[ScoringResources, Depends(resources)]
