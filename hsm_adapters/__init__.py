"""Key custody: the :class:`KeyStore` interface and its backends (soft HSM, PKCS#11).

Backends are imported from their modules (``hsm_adapters.soft``, ``hsm_adapters.pkcs11``) or opened
through :func:`open_keystore` from settings.
"""

from .factory import open_keystore
from .keystore import KeyAlgorithm, KeyId, KeyInfo, KeyRef, KeyStore, KeyStoreSigner

__all__ = ["KeyAlgorithm", "KeyId", "KeyInfo", "KeyRef", "KeyStore", "KeyStoreSigner", "open_keystore"]
