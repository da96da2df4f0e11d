"""Choose and open the configured key store (``ESEAL_KEYSTORE`` = ``soft`` | ``pkcs11``)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigurationError
from core.settings import Settings

from .keystore import KeyStore

BACKENDS = ("soft", "pkcs11")


def open_keystore(
    settings: Settings, session_factory: sessionmaker[Session], *, create_tables: bool = False
) -> KeyStore:
    """Open the key store named by ``settings.keystore``.

    ``session_factory`` is used by the soft store only. ``create_tables`` makes the soft store create
    its tables (embedded mode, tests); with migrations leave it False.
    """
    backend = settings.keystore.strip().lower()
    if backend == "soft":
        from .soft import SoftKeyStore

        try:
            passphrase = settings.resolved_passphrase()
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                "无法读取软件密钥库口令文件（ESEAL_KEYSTORE_PASSPHRASE_FILE）",
                "Cannot read the soft key store passphrase file (ESEAL_KEYSTORE_PASSPHRASE_FILE)",
            ) from exc
        if not passphrase:
            raise ConfigurationError(
                "未配置软件密钥库口令（ESEAL_KEYSTORE_PASSPHRASE 或 ESEAL_KEYSTORE_PASSPHRASE_FILE）",
                "Soft key store passphrase not configured "
                "(ESEAL_KEYSTORE_PASSPHRASE or ESEAL_KEYSTORE_PASSPHRASE_FILE)",
            )
        return SoftKeyStore(session_factory, passphrase, create_tables=create_tables)
    if backend == "pkcs11":
        from .pkcs11 import Pkcs11KeyStore

        return Pkcs11KeyStore.from_settings(settings)
    raise ConfigurationError(
        f"未知的密钥库类型：{settings.keystore[:32]!r}（可选 soft 或 pkcs11）",
        f"Unknown key store backend: {settings.keystore[:32]!r} (choose soft or pkcs11)",
    )
