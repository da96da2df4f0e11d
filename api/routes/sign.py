"""Placeholder router, filled in by the sign work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["sign"])
