"""What a running complaints service holds (its settings beside the shared parts), and the
dependency its routes take: `res: Complaints`. No caches of its own here: the SLA rules last
read are kept with the settings (ComplaintsSettings.loaded_rules), which the fold, built
from the settings alone, shares."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.complaints.settings import ComplaintsSettings
from shared.service import Resources, resources

ComplaintsResources = Resources[ComplaintsSettings, None]
Complaints = Annotated[ComplaintsResources, Depends(resources)]
