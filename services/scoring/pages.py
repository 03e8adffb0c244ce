"""Scoring's web page: the model validation (GET /v1/models/clv/validation) drawn as a chart,
at /models/clv/validation. The key comes in the address's fragment (#key=...), as for the
reporting dashboard, and needs customers:read."""

from __future__ import annotations

from pathlib import Path

from shared.http import page_router

pages = page_router(Path(__file__).parent / "static", {"/models/clv/validation": "validation.html"})
