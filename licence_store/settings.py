"""Settings of the licence store (``ESEAL_LICENCE_*``), next to the service's own ``core.settings``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LicenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESEAL_LICENCE_", env_file=".env", extra="ignore")

    check_rate_per_s: float = Field(
        default=5.0, gt=0, description="Online checks a client IP may make per second, sustained."
    )
    check_burst: int = Field(default=60, ge=1, description="Online checks a client IP may make at once.")
    import_workers: int = Field(default=2, ge=1, le=64, description="Processes sealing stock imports.")


__all__ = ["LicenceSettings"]
