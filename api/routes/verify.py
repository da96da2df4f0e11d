"""Placeholder router, filled in by the verify work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["verify"])
