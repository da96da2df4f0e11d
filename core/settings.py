"""Service settings, read from ``ESEAL_*`` environment variables (and an optional ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESEAL_", env_file=".env", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="Embedded data directory (SQLite, blobs).")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite at <var_dir>/eseal.db."
    )
    keystore: str = Field(default="soft", description="Key store backend: soft | pkcs11.")
    keystore_passphrase: str | None = Field(
        default=None, description="Passphrase of the soft key store (key-encryption key via scrypt)."
    )
    keystore_passphrase_file: Path | None = Field(
        default=None, description="File holding the soft key store passphrase (first line)."
    )
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "eseal"
    pkcs11_pin: str | None = None
    # SM2 on PKCS#11 is vendor-defined; see hsm_adapters/pkcs11.py for the defaults' meaning.
    pkcs11_sm2_key_type: int | None = None
    pkcs11_sm2_mechanism: int | None = None
    pkcs11_sm2_keygen_mechanism: int | None = None
    pkcs11_sm2_signs_message: bool = Field(
        default=False, description="True when the vendor SM2 mechanism hashes (Z and SM3) inside the token."
    )
    tsa_policy_oid: str = Field(
        default="1.3.6.1.4.1.55555.1.1",
        description="TSA policy OID. The default is a PLACEHOLDER under an arc eseal does not own.",
    )
    tsa_urls: list[str] = Field(
        default_factory=list, description="External RFC 3161 TSA URLs, tried before the built-in TSA."
    )
    region_code: str = Field(default="110000", description="Administrative region code of this deployment.")
    region_name: str = Field(default="演示地区 Demo Region")
    public_base_url: str = "http://127.0.0.1:8000"
    max_upload_bytes: int = 100 * 1024 * 1024
    audit_head_sign_interval_s: float = Field(
        default=60.0, description="Seconds between signatures of the audit chain head by the service key."
    )
    licence_expiry_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between the server's sweeps marking licences past their validity expired "
        "(0: only `eseal licence expire` / POST /v1/licences/expire).",
    )
    # Cross-region recognition (seal_registry.trust_list, seal_registry.peers).
    federation_sync_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between fetches of every peer's trust list (0: on demand only).",
    )
    federation_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description="Seconds a peer's list stays trusted past its next update (then: INDETERMINATE).",
    )
    federation_fetch_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one trust list fetch."
    )
    federation_max_list_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Largest trust list accepted from a peer."
    )
    trust_list_validity_s: float = Field(
        default=6 * 3600.0, gt=0, description="Seconds from a trust list's issue to its next update."
    )
    trust_list_reissue_s: float = Field(
        default=3600.0, gt=0, description="An unchanged trust list is signed again after this many seconds."
    )
    trust_list_max_age_s: int = Field(
        default=60, ge=0, description="Cache-Control max-age of the published trust list."
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'eseal.db').as_posix()}"

    def resolved_passphrase(self) -> str | None:
        if self.keystore_passphrase is not None:
            return self.keystore_passphrase
        if self.keystore_passphrase_file is not None:
            return self.keystore_passphrase_file.read_text(encoding="utf-8").splitlines()[0]
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
