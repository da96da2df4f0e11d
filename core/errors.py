"""The one exception hierarchy every eseal package raises.

Each error carries a stable machine ``code`` (used by the API's problem+json ``code`` member and the
CLI), an HTTP status, and a bilingual message (Chinese first, English beside it). Messages must never
contain key material.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EsealError(Exception):
    """Base of every error eseal raises on purpose."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title_zh: ClassVar[str] = "内部错误"
    title_en: ClassVar[str] = "Internal error"

    def __init__(self, message_zh: str, message_en: str | None = None, **details: Any) -> None:
        self.message_zh = message_zh
        self.message_en = message_en if message_en is not None else message_zh
        self.details = details
        super().__init__(f"{self.message_zh} / {self.message_en}")

    def to_problem(self) -> dict[str, Any]:
        """RFC 9457 problem details body."""
        body: dict[str, Any] = {
            "type": f"https://eseal.invalid/problems/{self.code}",
            "title": f"{self.title_zh} / {self.title_en}",
            "status": self.status,
            "code": self.code,
            "detail": f"{self.message_zh} / {self.message_en}",
            "detail_zh": self.message_zh,
            "detail_en": self.message_en,
        }
        if self.details:
            body["details"] = self.details
        return body


# --- input -----------------------------------------------------------------------------------------
class InvalidInput(EsealError):
    code = "invalid_input"
    status = 400
    title_zh, title_en = "输入无效", "Invalid input"


class MalformedData(InvalidInput):
    """A parser (DER, ZIP, XML, PDF, JSON) rejected its input."""

    code = "malformed_data"
    title_zh, title_en = "数据格式错误", "Malformed data"


class InputTooLarge(InvalidInput):
    code = "input_too_large"
    status = 413
    title_zh, title_en = "输入过大", "Input too large"


class WrongPassword(InvalidInput):
    code = "wrong_password"
    title_zh, title_en = "口令错误", "Wrong password"


# --- auth ------------------------------------------------------------------------------------------
class Unauthenticated(EsealError):
    code = "unauthenticated"
    status = 401
    title_zh, title_en = "未认证", "Not authenticated"


class PermissionDenied(EsealError):
    code = "permission_denied"
    status = 403
    title_zh, title_en = "无权操作", "Permission denied"


# --- state -----------------------------------------------------------------------------------------
class NotFound(EsealError):
    code = "not_found"
    status = 404
    title_zh, title_en = "未找到", "Not found"


class Conflict(EsealError):
    code = "conflict"
    status = 409
    title_zh, title_en = "状态冲突", "Conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"
    title_zh, title_en = "非法状态变更", "Illegal state transition"


class NotUsable(Conflict):
    """A seal, key or certificate exists but may not be used now (suspended, expired, revoked)."""

    code = "not_usable"
    title_zh, title_en = "不可使用", "Not usable"


# --- crypto and keys -------------------------------------------------------------------------------
class CryptoError(EsealError):
    code = "crypto_error"
    status = 422
    title_zh, title_en = "密码运算失败", "Cryptographic operation failed"


class InvalidSignature(CryptoError):
    code = "invalid_signature"
    title_zh, title_en = "签名无效", "Invalid signature"


class CertificateError(CryptoError):
    code = "certificate_invalid"
    title_zh, title_en = "证书无效", "Certificate invalid"


class KeyStoreError(EsealError):
    code = "keystore_error"
    status = 500
    title_zh, title_en = "密钥存储错误", "Key store error"


class KeyNotFound(KeyStoreError):
    code = "key_not_found"
    status = 404
    title_zh, title_en = "密钥不存在", "Key not found"


class WrongPassphrase(KeyStoreError):
    code = "wrong_passphrase"
    status = 500
    title_zh, title_en = "密钥保护口令错误", "Wrong key-store passphrase"


class ConfigurationError(EsealError):
    code = "configuration_error"
    status = 500
    title_zh, title_en = "配置错误", "Configuration error"
