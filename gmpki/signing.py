"""The signer interface gmpki builders (certificates, CRLs, seals) sign through.

A builder never sees private key bytes: it hands the message to a :class:`MessageSigner`, which may
be an in-memory key (tests), the soft key store, or a PKCS#11 token (see ``hsm_adapters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from . import sm2


@runtime_checkable
class MessageSigner(Protocol):
    """Signs whole messages with SM2-with-SM3 (Z pre-hash, default ID); returns a DER signature."""

    @property
    def public_key(self) -> sm2.SM2PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class InMemorySigner:
    """A MessageSigner over an in-process key: for tests and for the soft key store's internals."""

    key: sm2.SM2PrivateKey

    @property
    def public_key(self) -> sm2.SM2PublicKey:
        return self.key.public_key

    def sign(self, message: bytes) -> bytes:
        return sm2.sign(self.key, message)
