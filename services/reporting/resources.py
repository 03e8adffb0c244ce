"""What a running reporting service holds (its settings beside the shared parts; it keeps
no caches: every read is the database's), and the dependency its routes take:
`res: Reporting`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.reporting.settings import ReportingSettings
from shared.service import Resources, resources

ReportingResources = Resources[ReportingSettings, None]
Reporting = Annotated[ReportingResources, Depends(resources)]
