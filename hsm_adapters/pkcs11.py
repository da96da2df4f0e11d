"""Key store on a PKCS#11 token (python-pkcs11); tested against SoftHSM2.

Keys are token objects (``CKA_TOKEN``) generated on the token: the private key is sensitive and
non-extractable and only ever signs. A key id is the hex form of the key pair's ``CKA_ID``; the
label is ``CKA_LABEL``. Ids minted here are 16 bytes, ``e55e ‖ milliseconds since 1970 (6 bytes) ‖
8 random bytes``, so the creation time survives on tokens that do not record one; keys provisioned
by other tools work too, with ``created_at`` None.

Algorithms:

- EC P-256: ``CKM_ECDSA`` over a SHA-256 digest computed here (SoftHSM2 has no
  ``CKM_ECDSA_SHA256``); the token's raw ``r‖s`` is converted to DER.
- RSA-3072: ``CKM_SHA256_RSA_PKCS``; :meth:`sign_digest` uses ``CKM_RSA_PKCS`` over the SHA-256
  DigestInfo.
- SM2: PKCS#11 defines no SM2 mechanism; HSM vendors expose it as ``CKK_VENDOR_DEFINED + n`` /
  ``CKM_VENDOR_DEFINED + n`` values that differ per vendor, so they come from configuration
  (:class:`Sm2Mechanisms`, from ``ESEAL_PKCS11_SM2_KEY_TYPE`` / ``ESEAL_PKCS11_SM2_MECHANISM``).
  Both default to None, meaning SM2 is not available on this token, and every SM2 request fails
  with :class:`core.errors.ConfigurationError` saying so. SoftHSM2 in particular cannot make SM2
  signatures (it generates keys on the SM2 curve, but only signs them with ECDSA). The first SM2
  signature made with each key is verified here before it is returned, so a mechanism that is
  not really SM2-with-SM3 is caught at once instead of producing seals nobody can verify.

One PKCS#11 session per store, serialised by a lock: sessions are not safe for concurrent use, and
a token's login state is shared by every session of the process anyway.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e

from core.errors import (
    ConfigurationError,
    Conflict,
    CryptoError,
    InvalidInput,
    KeyNotFound,
    KeyStoreError,
    WrongPassphrase,
)
from gmpki import sm2

from .keystore import KeyAlgorithm, KeyId, KeyInfo, check_digest, check_label, sm2_spki_der

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
CKK_VENDOR_DEFINED = 0x80000000
CKM_VENDOR_DEFINED = 0x80000000

# DER EC_PARAMS (namedCurve OIDs).
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")
SM2_EC_PARAMS = bytes.fromhex("06082a811ccf5501822d")
# DigestInfo header for SHA-256 (RFC 8017 §9.2 note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

_ID_MARKER = b"\xe5\x5e"
_KEY_ID_RE = re.compile(r"(?:[0-9a-f]{2}){1,64}")
_SIGN_ONLY = MechanismFlag.SIGN | MechanismFlag.VERIFY

# Errors meaning "this session is gone": reopen once and retry.
_SESSION_LOST = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.UserNotLoggedIn,
)
_HANDLE_STALE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)
_BAD_PIN = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange)

T = TypeVar("T")
E = TypeVar("E", bound=IntEnum)


class TokenNotFound(KeyStoreError):
    code = "pkcs11_token_not_found"
    title_zh, title_en = "找不到密码令牌", "PKCS#11 token not found"


class WrongPin(WrongPassphrase):
    code = "pkcs11_wrong_pin"
    title_zh, title_en = "令牌 PIN 错误", "Wrong token PIN"


@dataclass(frozen=True)
class Sm2Mechanisms:
    """How a vendor's PKCS#11 module exposes SM2.

    ``key_type``: the CKK value of SM2 keys. Use ``3`` (CKK_EC) for modules that model SM2 keys as
    EC keys on the SM2 curve; key pairs are then generated with CKM_EC_KEY_PAIR_GEN and EC_PARAMS
    set to the SM2 curve OID. Otherwise a vendor value (``0x80000000 + n``) together with
    ``keygen_mechanism``.
    ``sign_mechanism``: the CKM value that makes SM2 signatures.
    ``signs_message``: False (default) when the mechanism signs a prepared e = SM3(Z ‖ M) (32 bytes,
    computed here with the default ID); True when it takes the message and hashes with SM3 and Z
    itself, in which case :meth:`Pkcs11KeyStore.sign_digest` is unavailable for SM2.
    """

    key_type: int
    sign_mechanism: int
    keygen_mechanism: int | None = None
    signs_message: bool = False

    def __post_init__(self) -> None:
        if self.key_type != KeyType.EC and self.key_type < CKK_VENDOR_DEFINED:
            raise ConfigurationError(
                "SM2 密钥类型必须为 CKK_EC(3) 或厂商自定义值（≥0x80000000）",
                "SM2 key type must be CKK_EC (3) or a vendor-defined value (>= 0x80000000)",
            )
        if self.key_type != KeyType.EC and self.keygen_mechanism is None:
            raise ConfigurationError(
                "厂商自定义 SM2 密钥类型需要同时配置密钥生成机制",
                "A vendor-defined SM2 key type needs a key-generation mechanism as well",
            )


def _enum_member(cls: type[E], value: int) -> E:
    """The enum member for ``value``, minting one for vendor-defined values.

    python-pkcs11 only accepts its own enum types for key types and mechanisms, and its enums
    list the standard values only; vendor-defined SM2 values need a member of their own.
    """
    try:
        return cls(value)
    except ValueError:
        pass
    member = int.__new__(cls, value)
    member._name_ = f"VENDOR_DEFINED_{value:#x}"
    member._value_ = value
    return cast(E, cls._value2member_map_.setdefault(value, member))


def _ec_point(raw: bytes) -> bytes:
    """CKA_EC_POINT is DER OCTET STRING per the standard; a few modules return the bare point."""
    if len(raw) == 67 and raw[0] == 0x04 and raw[1] == 65 and raw[2] == 0x04:
        return raw[2:]
    if len(raw) == 65 and raw[0] == 0x04:
        return raw
    raise KeyStoreError("令牌返回的椭圆曲线公钥格式无效", "The token returned an invalid EC point")


def _mint_id() -> bytes:
    millis = int(time.time() * 1000)
    return _ID_MARKER + millis.to_bytes(6, "big") + secrets.token_bytes(8)


def _created_at(ckid: bytes) -> datetime | None:
    if len(ckid) != 16 or not ckid.startswith(_ID_MARKER):
        return None
    return datetime.fromtimestamp(int.from_bytes(ckid[2:8], "big") / 1000, UTC)


def _not_found(key_id: object) -> KeyNotFound:
    shown = repr(key_id)[:80]
    return KeyNotFound(f"密钥不存在：{shown}", f"No such key: {shown}", key_id=shown)


def _ckid(key_id: object) -> bytes:
    if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
        raise _not_found(key_id)
    return bytes.fromhex(key_id)


def _token_error(op: str, exc: p11e.PKCS11Error) -> KeyStoreError:
    # Only the exception class name goes out: PKCS#11 error texts carry no key data, but stay terse.
    name = type(exc).__name__
    return KeyStoreError(f"PKCS#11 {op}失败：{name}", f"PKCS#11 {op} failed: {name}", pkcs11_error=name)


class _Unsupported(Exception):
    """A token object this store does not handle (other algorithm or size); skipped when listing."""


@dataclass(frozen=True, repr=False)
class _Handle:
    info: KeyInfo
    private: pkcs11.SignMixin
    sm2_public: sm2.SM2PublicKey | None


class Pkcs11KeyStore:
    """:class:`hsm_adapters.keystore.KeyStore` on a PKCS#11 token. See the module docstring."""

    def __init__(
        self,
        module: str = DEFAULT_MODULE,
        token_label: str = "eseal",
        pin: str | None = None,
        *,
        sm2_mechanisms: Sm2Mechanisms | None = None,
    ) -> None:
        if not pin:
            raise ConfigurationError(
                "未配置 PKCS#11 用户 PIN（ESEAL_PKCS11_PIN）",
                "PKCS#11 user PIN not configured (ESEAL_PKCS11_PIN)",
            )
        if not os.path.isfile(module):
            raise ConfigurationError(
                f"找不到 PKCS#11 模块：{module}", f"PKCS#11 module not found: {module}", module=module
            )
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._sm2 = sm2_mechanisms
        self._lock = threading.RLock()
        self._handles: dict[str, _Handle] = {}
        self._checked_sm2: set[str] = set()
        try:
            lib = pkcs11.lib(module)
        except p11e.PKCS11Error as exc:
            raise _token_error("模块初始化", exc) from None
        except (OSError, RuntimeError) as exc:
            raise ConfigurationError(
                f"无法加载 PKCS#11 模块：{module}", f"Cannot load PKCS#11 module: {module}", module=module
            ) from exc
        try:
            self._token = lib.get_token(token_label=token_label)
        except p11e.NoSuchToken:
            raise TokenNotFound(
                f"找不到标签为 {token_label!r} 的令牌",
                f"No token labelled {token_label!r}",
                token=token_label,
            ) from None
        except p11e.MultipleTokensReturned:
            raise TokenNotFound(
                f"有多个标签为 {token_label!r} 的令牌",
                f"Several tokens labelled {token_label!r}",
                token=token_label,
            ) from None
        except p11e.PKCS11Error as exc:
            raise _token_error("查找令牌", exc) from None
        self._session: pkcs11.Session | None = None
        self._open()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Pkcs11KeyStore:
        mechanisms: Sm2Mechanisms | None = None
        key_type, mechanism = settings.pkcs11_sm2_key_type, settings.pkcs11_sm2_mechanism
        if (key_type is None) != (mechanism is None):
            raise ConfigurationError(
                "ESEAL_PKCS11_SM2_KEY_TYPE 与 ESEAL_PKCS11_SM2_MECHANISM 必须同时设置",
                "ESEAL_PKCS11_SM2_KEY_TYPE and ESEAL_PKCS11_SM2_MECHANISM must be set together",
            )
        if key_type is not None and mechanism is not None:
            # Settings may not (yet) carry the optional knobs; read them when they exist.
            mechanisms = Sm2Mechanisms(
                key_type=key_type,
                sign_mechanism=mechanism,
                keygen_mechanism=settings.pkcs11_sm2_keygen_mechanism,
                signs_message=settings.pkcs11_sm2_signs_message,
            )
        kwargs: dict[str, Any] = {
            "module": settings.pkcs11_module,
            "token_label": settings.pkcs11_token_label,
            "pin": settings.pkcs11_pin,
            "sm2_mechanisms": mechanisms,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore(module={self._module!r}, token={self._token_label!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Pkcs11KeyStore cannot be pickled (it holds the token PIN)")

    # -- sessions -----------------------------------------------------------------------------------
    def _open(self) -> pkcs11.Session:
        try:
            session = self._token.open(rw=True, user_pin=self._pin)
        except p11e.UserAlreadyLoggedIn:
            # Login is per application, not per session: another store in this process logged in.
            session = self._token.open(rw=True)
        except _BAD_PIN:
            raise WrongPin(
                f"令牌 {self._token_label!r} 的用户 PIN 错误",
                f"Wrong user PIN for token {self._token_label!r}",
            ) from None
        except p11e.PinLocked:
            raise WrongPin(
                f"令牌 {self._token_label!r} 的用户 PIN 已锁定",
                f"User PIN of token {self._token_label!r} is locked",
            ) from None
        except p11e.PKCS11Error as exc:
            raise _token_error("登录", exc) from None
        self._session = session
        return session

    def _run(self, op: str, fn: Callable[[pkcs11.Session], T]) -> T:
        """Run ``fn`` under the lock; reopen a lost session once; map token errors to ours."""
        with self._lock:
            for attempt in range(2):
                session = self._session or self._open()
                try:
                    return fn(session)
                except _SESSION_LOST:
                    self._handles.clear()
                    self._session = None
                    if attempt:
                        raise KeyStoreError(
                            "与 PKCS#11 令牌的会话已断开", "The session with the PKCS#11 token was lost"
                        ) from None
                except p11e.PKCS11Error as exc:
                    raise _token_error(op, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._handles.clear()
            if self._session is not None:
                with contextlib.suppress(p11e.PKCS11Error):
                    self._session.close()
                self._session = None

    # -- reading keys -------------------------------------------------------------------------------
    def _algorithm(self, private: pkcs11.Object) -> KeyAlgorithm:
        key_type = int(private[Attribute.KEY_TYPE])
        if key_type == KeyType.RSA:
            if int.from_bytes(private[Attribute.MODULUS], "big").bit_length() != 3072:
                raise _Unsupported
            return KeyAlgorithm.RSA_3072
        if self._sm2 is not None and key_type == self._sm2.key_type and key_type != KeyType.EC:
            return KeyAlgorithm.SM2
        if key_type == KeyType.EC:
            params = bytes(private[Attribute.EC_PARAMS])
            if params == P256_EC_PARAMS:
                return KeyAlgorithm.EC_P256
            if params == SM2_EC_PARAMS and self._sm2 is not None and self._sm2.key_type == KeyType.EC:
                return KeyAlgorithm.SM2
        raise _Unsupported

    def _public_object(self, session: pkcs11.Session, ckid: bytes) -> pkcs11.Object:
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: ckid}))
        if len(found) != 1:
            raise KeyStoreError(
                f"令牌上密钥 {ckid.hex()} 的公钥对象缺失或不唯一",
                f"Public key object of key {ckid.hex()} is missing or not unique on the token",
                key_id=ckid.hex(),
            )
        return found[0]

    def _describe(self, session: pkcs11.Session, private: pkcs11.Object) -> _Handle:
        if not isinstance(private, pkcs11.SignMixin):
            raise _Unsupported  # CKA_SIGN false: not a signing key
        algorithm = self._algorithm(private)
        ckid = bytes(private[Attribute.ID])
        sm2_public: sm2.SM2PublicKey | None = None
        if algorithm is KeyAlgorithm.RSA_3072:
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(private[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(private[Attribute.MODULUS], "big"),
            )
            spki = numbers.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            point = _ec_point(bytes(self._public_object(session, ckid)[Attribute.EC_POINT]))
            try:
                if algorithm is KeyAlgorithm.SM2:
                    sm2_public = sm2.SM2PublicKey(point)
                    spki = sm2_spki_der(point)
                else:
                    spki = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_bytes(
                        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
            except (InvalidInput, ValueError):
                raise KeyStoreError(
                    "令牌返回的公钥不在曲线上", "The token returned a public key that is not on the curve"
                ) from None
        info = KeyInfo(
            id=ckid.hex(),
            label=str(private[Attribute.LABEL]),
            algorithm=algorithm,
            created_at=_created_at(ckid),
            public_key_der=spki,
            sm2_point=sm2_public.point if sm2_public is not None else None,
        )
        return _Handle(info=info, private=private, sm2_public=sm2_public)

    def _handle(self, session: pkcs11.Session, key_id: KeyId) -> _Handle:
        cached = self._handles.get(key_id) if isinstance(key_id, str) else None
        if cached is not None:
            return cached
        ckid = _ckid(key_id)
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: ckid}))
        if not found:
            raise _not_found(key_id)
        if len(found) > 1:
            raise KeyStoreError(
                f"令牌上有多个 CKA_ID 为 {key_id} 的私钥",
                f"Several private keys with CKA_ID {key_id}",
                key_id=key_id,
            )
        try:
            handle = self._describe(session, found[0])
        except _Unsupported:
            raise KeyStoreError(
                f"密钥 {key_id} 的算法不受支持", f"Key {key_id} uses an unsupported algorithm", key_id=key_id
            ) from None
        self._handles[key_id] = handle
        return handle

    def _with_key(self, op: str, key_id: KeyId, fn: Callable[[_Handle], T]) -> T:
        def run(session: pkcs11.Session) -> T:
            try:
                return fn(self._handle(session, key_id))
            except _HANDLE_STALE:
                # Destroyed or replaced through another session; look it up afresh once.
                self._handles.pop(key_id, None)
                return fn(self._handle(session, key_id))

        try:
            return self._run(op, run)
        except KeyNotFound:
            if isinstance(key_id, str):
                self._handles.pop(key_id, None)
            raise

    # -- KeyStore -----------------------------------------------------------------------------------
    def generate(self, algorithm: KeyAlgorithm, label: str) -> KeyInfo:
        try:
            alg = KeyAlgorithm(algorithm)
        except ValueError:
            raise InvalidInput("不支持的密钥算法", "Unsupported key algorithm") from None
        check_label(label)
        sm2_config = self._sm2_config() if alg is KeyAlgorithm.SM2 else None

        def run(session: pkcs11.Session) -> KeyInfo:
            taken = list(
                session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
            )
            if taken:
                shown = label[:80]
                raise Conflict(
                    f"密钥标签已被使用：{shown!r}", f"Key label already in use: {shown!r}", label=shown
                )
            ckid = _mint_id()
            private_template = {
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
            }
            public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True}
            common: dict[str, Any] = {
                "id": ckid,
                "label": label,
                "store": True,
                "capabilities": _SIGN_ONLY,
                "public_template": public_template,
                "private_template": private_template,
            }
            if alg is KeyAlgorithm.RSA_3072:
                _, private = session.generate_keypair(KeyType.RSA, 3072, **common)
            elif alg is KeyAlgorithm.EC_P256 or (
                sm2_config is not None and sm2_config.key_type == KeyType.EC
            ):
                params = P256_EC_PARAMS if alg is KeyAlgorithm.EC_P256 else SM2_EC_PARAMS
                domain = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: params}, local=True
                )
                _, private = domain.generate_keypair(**common)
            else:
                assert sm2_config is not None and sm2_config.keygen_mechanism is not None
                _, private = session.generate_keypair(
                    _enum_member(KeyType, sm2_config.key_type),
                    mechanism=_enum_member(Mechanism, sm2_config.keygen_mechanism),
                    **common,
                )
            handle = self._describe(session, private)
            self._handles[handle.info.id] = handle
            return handle.info

        info = self._run("生成密钥", run)
        log.info("key created on token: id=%s label=%r algorithm=%s", info.id, label, alg.value)
        return info

    def _sm2_config(self) -> Sm2Mechanisms:
        if self._sm2 is None:
            raise ConfigurationError(
                "此 PKCS#11 令牌未配置 SM2：PKCS#11 没有标准 SM2 机制，需按厂商文档设置 "
                "ESEAL_PKCS11_SM2_KEY_TYPE 与 ESEAL_PKCS11_SM2_MECHANISM（SoftHSM2 不支持 SM2 签名）",
                "SM2 is not configured for this PKCS#11 token: PKCS#11 has no standard SM2 mechanism; set "
                "ESEAL_PKCS11_SM2_KEY_TYPE and ESEAL_PKCS11_SM2_MECHANISM from the vendor's documentation "
                "(SoftHSM2 cannot make SM2 signatures)",
            )
        return self._sm2

    def sign(self, key_id: KeyId, message: bytes) -> bytes:
        message = bytes(message)

        def run(handle: _Handle) -> bytes:
            algorithm = handle.info.algorithm
            if algorithm is KeyAlgorithm.EC_P256:
                return self._ecdsa(handle, hashlib.sha256(message).digest())
            if algorithm is KeyAlgorithm.RSA_3072:
                return bytes(handle.private.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS))
            config = self._sm2_config()
            assert handle.sm2_public is not None
            if config.signs_message:
                sig = bytes(
                    handle.private.sign(message, mechanism=_enum_member(Mechanism, config.sign_mechanism))
                )
                public = handle.sm2_public
                return self._checked_sm2_signature(handle, lambda: sm2.message_digest(public, message), sig)
            return self._sm2_digest(handle, config, sm2.message_digest(handle.sm2_public, message))

        return self._with_key("签名", key_id, run)

    def sign_digest(self, key_id: KeyId, digest: bytes) -> bytes:
        digest = check_digest(digest)

        def run(handle: _Handle) -> bytes:
            algorithm = handle.info.algorithm
            if algorithm is KeyAlgorithm.EC_P256:
                return self._ecdsa(handle, digest)
            if algorithm is KeyAlgorithm.RSA_3072:
                return bytes(handle.private.sign(_SHA256_DIGEST_INFO + digest, mechanism=Mechanism.RSA_PKCS))
            config = self._sm2_config()
            if config.signs_message:
                raise KeyStoreError(
                    "所配置的 SM2 机制自行计算杂凑，不能对预先计算的摘要签名",
                    "The configured SM2 mechanism hashes the message itself; "
                    "it cannot sign a prepared digest",
                )
            return self._sm2_digest(handle, config, digest)

        return self._with_key("签名", key_id, run)

    @staticmethod
    def _ecdsa(handle: _Handle, digest: bytes) -> bytes:
        raw = bytes(handle.private.sign(digest, mechanism=Mechanism.ECDSA))
        if len(raw) != 64:
            raise KeyStoreError(
                "令牌返回的 ECDSA 签名长度异常", "The token returned an ECDSA signature of odd length"
            )
        return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))

    def _sm2_digest(self, handle: _Handle, config: Sm2Mechanisms, digest: bytes) -> bytes:
        sig = bytes(handle.private.sign(digest, mechanism=_enum_member(Mechanism, config.sign_mechanism)))
        return self._checked_sm2_signature(handle, lambda: digest, sig)

    def _checked_sm2_signature(self, handle: _Handle, digest: Callable[[], bytes], sig: bytes) -> bytes:
        """DER form of ``sig``; the first signature of each key is verified against ``digest()``."""
        key_id = handle.info.id
        try:
            der = sm2.normalize_signature(sig)
        except CryptoError:
            der = b""
        if key_id in self._checked_sm2 and der:
            return der
        assert handle.sm2_public is not None
        if not der or not sm2.verify_digest(handle.sm2_public, digest(), der):
            raise KeyStoreError(
                "令牌按所配置的 SM2 机制生成的签名未通过 SM2 验证；请核对 ESEAL_PKCS11_SM2_MECHANISM "
                "（可能该机制并非 SM2-with-SM3，或需要/不需要预先计算 Z 值）",
                "The signature the token made with the configured SM2 mechanism does not verify as SM2; "
                "check ESEAL_PKCS11_SM2_MECHANISM (the mechanism may not be SM2-with-SM3, or may expect "
                "the message rather than e = SM3(Z ‖ M), or the other way round)",
                key_id=key_id,
            )
        self._checked_sm2.add(key_id)
        return der

    def public_key(self, key_id: KeyId) -> KeyInfo:
        return self._with_key("读取公钥", key_id, lambda handle: handle.info)

    def list(self) -> builtins.list[KeyInfo]:
        def run(session: pkcs11.Session) -> builtins.list[KeyInfo]:
            privates = builtins.list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            infos: builtins.list[KeyInfo] = []
            for private in privates:
                try:
                    infos.append(self._describe(session, private).info)
                except (_Unsupported, KeyStoreError):
                    continue
            return infos

        infos = self._run("列出密钥", run)
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(infos, key=lambda i: (i.created_at or epoch, i.id))

    def find(self, label: str) -> KeyInfo | None:
        if not isinstance(label, str) or not label:
            return None

        def run(session: pkcs11.Session) -> KeyInfo | None:
            found = builtins.list(
                session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
            )
            if not found:
                return None
            if len(found) > 1:
                shown = label[:80]
                raise KeyStoreError(
                    f"令牌上有多个标签为 {shown!r} 的私钥",
                    f"Several private keys labelled {shown!r}",
                    label=shown,
                )
            try:
                return self._describe(session, found[0]).info
            except _Unsupported:
                return None

        return self._run("查找密钥", run)

    def destroy(self, key_id: KeyId) -> None:
        ckid = _ckid(key_id)

        def run(session: pkcs11.Session) -> None:
            privates = builtins.list(
                session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: ckid})
            )
            if not privates:
                raise _not_found(key_id)
            publics = builtins.list(
                session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: ckid})
            )
            self._handles.pop(key_id, None)
            for obj in privates + publics:
                obj.destroy()

        self._run("销毁密钥", run)
        self._checked_sm2.discard(key_id)
        log.info("key destroyed on token: id=%s", key_id)

    def import_sm2(self, private_key: sm2.SM2PrivateKey, label: str) -> KeyInfo:
        raise KeyStoreError(
            "PKCS#11 密钥库不接受导入私钥：私钥应在令牌内生成，或用厂商工具导入后按 CKA_ID 引用",
            "The PKCS#11 key store does not import private keys: generate them on the token, or import "
            "them with the vendor's tools and refer to them by CKA_ID",
        )
