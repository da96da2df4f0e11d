"""Validation policy: what each check's failure means, which algorithms are accepted, and when.

A check produces a raw outcome; the policy then decides its weight:

* ``fail`` — a failed check fails the signature, an indeterminate one leaves it indeterminate;
* ``warn`` — failed and indeterminate outcomes are reported as warnings and do not affect the verdict;
* ``ignore`` — the check is reported as skipped.

TOML form (every key optional)::

    [checks]
    "document.coverage" = "fail"
    "seal.maker_certificate_validity" = "warn"

    [algorithms]
    signature = ["SM2-with-SM3"]          # names or dotted OIDs
    digest = ["SM3", "SHA-256"]           # for OFD References; MD5/SHA-1 are never accepted

    [validation]
    at = 2024-05-01T00:00:00Z             # validation time; default: now
    require_revocation = false            # no CRL covering a certificate → indeterminate
"""

from __future__ import annotations

import datetime as dt
import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from core.errors import ConfigurationError

SM2_WITH_SM3: Final = "1.2.156.10197.1.501"
SM3: Final = "1.2.156.10197.1.401"
SHA256: Final = "2.16.840.1.101.3.4.2.1"

CHECK_IDS: Final[tuple[str, ...]] = (
    "format.parse",
    "seal.maker_signature",
    "seal.maker_certificate_validity",
    "seal.maker_certificate_chain",
    "seal.validity_period",
    "seal.status",
    "signer.signature",
    "signer.in_seal_certificate_list",
    "signer.certificate_validity",
    "signer.certificate_chain",
    "signer.certificate_revocation",
    "document.data_hash",
    "document.references",
    "document.seal_file_match",
    "document.coverage",
    "timestamp.token",
)

_SIGNATURE_NAMES: Final = {
    "sm2-with-sm3": SM2_WITH_SM3,
    "sm2withsm3": SM2_WITH_SM3,
    "sm3withsm2": SM2_WITH_SM3,
}
_DIGEST_NAMES: Final = {"sm3": SM3, "sha-256": SHA256, "sha256": SHA256}
_NEVER_DIGESTS: Final = {"md5", "sha1", "sha-1", "1.2.840.113549.2.5", "1.3.14.3.2.26"}
# Short names used by the OFD CheckMethod attribute and the container's digest function.
DIGEST_SHORT_NAMES: Final = {SM3: "sm3", SHA256: "sha256"}


class Action(enum.StrEnum):
    FAIL = "fail"
    WARN = "warn"
    IGNORE = "ignore"


_DEFAULT_ACTIONS: Final = MappingProxyType(
    {
        **dict.fromkeys(CHECK_IDS, Action.FAIL),
        # A genuine tax-bureau seal predates its maker certificate (P11): report, do not fail.
        "seal.maker_certificate_validity": Action.WARN,
        # Unprotected files are a fact about the package, not a broken signature (§5.6).
        "document.coverage": Action.WARN,
    }
)


@dataclass(frozen=True)
class Policy:
    actions: Mapping[str, Action] = field(default_factory=lambda: _DEFAULT_ACTIONS)
    signature_algorithms: frozenset[str] = frozenset({SM2_WITH_SM3})
    digest_algorithms: frozenset[str] = frozenset({SM3})
    at: dt.datetime | None = None
    require_revocation: bool = False

    def action(self, check_id: str) -> Action:
        return self.actions.get(check_id, Action.FAIL)

    def accepts_digest(self, method: str) -> str | None:
        """The container digest name for an OFD CheckMethod accepted by this policy, else None."""
        oid = digest_oid(method)
        if oid is None or oid not in self.digest_algorithms:
            return None
        return DIGEST_SHORT_NAMES.get(oid)

    def with_actions(self, changes: Mapping[str, Action | str]) -> Policy:
        """A copy with the actions of some checks changed."""
        actions = dict(self.actions)
        for check_id, value in changes.items():
            if check_id not in CHECK_IDS:
                raise ConfigurationError(f"未知的检查项 {check_id}", f"unknown check {check_id}")
            actions[check_id] = Action(value)
        return replace(self, actions=MappingProxyType(actions))


DEFAULT_POLICY: Final = Policy()


def digest_oid(method: str) -> str | None:
    """OID for an OFD CheckMethod or policy digest name (``SM3``, ``1.2.156.10197.1.401``, ``SHA-256``)."""
    text = method.strip().lower()
    if text in (SM3, SHA256):
        return text
    return _DIGEST_NAMES.get(text)


def _signature_oid(name: str) -> str:
    text = name.strip().lower()
    if text == SM2_WITH_SM3:
        return text
    oid = _SIGNATURE_NAMES.get(text)
    if oid is None:
        raise ConfigurationError(
            f"策略中的签名算法 {name!r} 不受支持（仅支持 SM2-with-SM3）",
            f"signature algorithm {name!r} in the policy is not supported (only SM2-with-SM3)",
        )
    return oid


def _digest(name: str) -> str:
    if name.strip().lower() in _NEVER_DIGESTS:
        raise ConfigurationError(
            f"摘要算法 {name} 不安全，不能用于保护文档",
            f"digest algorithm {name} is broken and cannot protect documents",
        )
    oid = digest_oid(name)
    if oid is None:
        raise ConfigurationError(
            f"策略中的摘要算法 {name!r} 不受支持", f"unsupported digest algorithm {name!r}"
        )
    return oid


def _string_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"策略项 {key} 应为非空字符串列表", f"policy key {key} must be a non-empty list of strings"
        )
    return list(value)


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    """Build a policy from an already parsed TOML document (starting from the defaults)."""
    unknown = set(data) - {"checks", "algorithms", "validation"}
    if unknown:
        raise ConfigurationError(
            f"策略含未知的节 {sorted(unknown)}", f"unknown policy sections {sorted(unknown)}"
        )
    actions = dict(_DEFAULT_ACTIONS)
    checks = data.get("checks", {})
    if not isinstance(checks, Mapping):
        raise ConfigurationError("策略节 [checks] 格式错误", "policy section [checks] must be a table")
    for check_id, value in checks.items():
        if check_id not in CHECK_IDS:
            raise ConfigurationError(f"未知的检查项 {check_id}", f"unknown check {check_id}")
        try:
            actions[check_id] = Action(str(value).lower())
        except ValueError as exc:
            raise ConfigurationError(
                f"检查项 {check_id} 的处理方式 {value!r} 无效（应为 fail/warn/ignore）",
                f"invalid action {value!r} for {check_id} (expected fail, warn or ignore)",
            ) from exc
    algorithms = data.get("algorithms", {})
    if not isinstance(algorithms, Mapping) or set(algorithms) - {"signature", "digest"}:
        raise ConfigurationError("策略节 [algorithms] 格式错误", "policy section [algorithms] is malformed")
    signature = DEFAULT_POLICY.signature_algorithms
    if "signature" in algorithms:
        signature = frozenset(_signature_oid(n) for n in _string_list(algorithms["signature"], "signature"))
    digest = DEFAULT_POLICY.digest_algorithms
    if "digest" in algorithms:
        digest = frozenset(_digest(n) for n in _string_list(algorithms["digest"], "digest"))
    validation = data.get("validation", {})
    if not isinstance(validation, Mapping) or set(validation) - {"at", "require_revocation"}:
        raise ConfigurationError("策略节 [validation] 格式错误", "policy section [validation] is malformed")
    at = validation.get("at")
    if at is not None and (not isinstance(at, dt.datetime) or at.tzinfo is None):
        raise ConfigurationError(
            "验证时间必须是带时区的日期时间", "validation time must be a date-time with offset"
        )
    require_revocation = validation.get("require_revocation", False)
    if not isinstance(require_revocation, bool):
        raise ConfigurationError("require_revocation 应为布尔值", "require_revocation must be a boolean")
    return Policy(
        actions=MappingProxyType(actions),
        signature_algorithms=signature,
        digest_algorithms=digest,
        at=at.astimezone(dt.UTC) if at is not None else None,
        require_revocation=require_revocation,
    )


def load_policy(source: Path | str | bytes) -> Policy:
    """Read a TOML policy from a file path, or from TOML text (``str``/``bytes``)."""
    try:
        if isinstance(source, Path):
            text = source.read_text(encoding="utf-8")
        elif isinstance(source, bytes):
            text = source.decode("utf-8")
        else:
            text = source
        data = tomllib.loads(text)
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"无法读取验证策略：{exc}", f"cannot read the validation policy: {exc}"
        ) from exc
    return policy_from_mapping(data)
