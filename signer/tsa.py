"""The built-in RFC 3161 time-stamping authority, and a client for external TSAs with fallback to it.

The TSA signs with a key held in a key store (the region's TSA key; SM2 there, though P-256 and
RSA keys work too) and a certificate whose extendedKeyUsage is the sole, critical timeStamping
(RFC 3161 2.3, GM/T 0033). It is independent of the database: serial numbers come from
:class:`SerialNumbers`, a per-process counter that is unique across processes and restarts.

Requests are answered the protocol's way: anything wrong with a request (malformed DER, an
unaccepted hash algorithm, policy or extension) becomes a TimeStampResp with status rejection and
the matching PKIFailureInfo, never an exception.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar, Final

import httpx
from asn1crypto import x509 as asn1_x509
from sqlalchemy.orm import Session

from core.errors import ConfigurationError, EsealError, InputTooLarge, MalformedData
from gmpki import oids
from gmpki.cms import SHA256, CmsAlgorithm
from gmpki.der import load_der
from gmpki.tsp import (
    FailureInfo,
    TimestampRejected,
    TimeStampRequest,
    build_rejection,
    build_request,
    build_response,
    build_token,
    build_tst_info,
    check_tsa_certificate,
    parse_request,
    parse_response,
    verify_token,
)
from gmpki.x509 import Certificate, now_utc
from hsm_adapters.keystore import KeyId, KeyStore

log = logging.getLogger("eseal.tsa")

# PLACEHOLDER policy OID under a private-enterprise arc that is NOT registered to this project.
# A deployment must configure its own policy OID (from its own arc, or one assigned under
# 1.2.156 by the competent authority) before issuing time-stamps relied on by third parties.
DEFAULT_POLICY_OID: Final = "1.3.6.1.4.1.55555.1.1"

ACCEPTED_HASHES: Final[frozenset[str]] = frozenset({oids.SM3, SHA256})
TIMESTAMP_QUERY: Final = "application/timestamp-query"
TIMESTAMP_REPLY: Final = "application/timestamp-reply"


class TimestampUnavailable(EsealError):
    """No time-stamping authority could be reached or produced a usable token."""

    code: ClassVar[str] = "timestamp_unavailable"
    status: ClassVar[int] = 503
    title_zh, title_en = "时间戳服务不可用", "Time-stamping unavailable"


class SerialNumbers:
    """Unique, per-process strictly increasing TSTInfo serial numbers.

    serial = microseconds since the epoch (forced strictly increasing within the process) shifted
    left 32 bits, OR a random 32-bit instance id: two processes never share a value unless they
    drew the same instance id *and* issue in the same microsecond. About 83 bits, well inside
    RFC 3161's 160-bit limit.
    """

    def __init__(self, instance_id: int | None = None) -> None:
        self._instance = secrets.randbits(32) if instance_id is None else instance_id & 0xFFFFFFFF
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now = time.time_ns() // 1000
            self._last = max(now, self._last + 1)
            return (self._last << 32) | self._instance


_PROCESS_SERIALS: Final = SerialNumbers()


class TimeStampAuthority:
    """Issues RFC 3161 tokens signed by ``key_id`` in ``keystore`` under ``certificate``."""

    def __init__(
        self,
        keystore: KeyStore,
        certificate: Certificate | bytes,
        key_id: KeyId,
        *,
        chain: Sequence[Certificate | bytes] = (),
        policy_oid: str = DEFAULT_POLICY_OID,
        accuracy_seconds: int = 1,
        serials: SerialNumbers | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        der = certificate.der if isinstance(certificate, Certificate) else bytes(certificate)
        self._cert = load_der(asn1_x509.Certificate, der, what_zh="TSA 证书", what_en="TSA certificate")
        try:
            check_tsa_certificate(self._cert)
        except EsealError as exc:
            raise ConfigurationError(
                f"证书不能用于时间戳服务：{exc.message_zh}",
                f"Certificate unusable for a TSA: {exc.message_en}",
            ) from exc
        self.certificate_der = der
        self.chain = tuple(c.der if isinstance(c, Certificate) else bytes(c) for c in chain)
        self.keystore = keystore
        self.key_id = key_id
        self.algorithm = CmsAlgorithm(keystore.public_key(key_id).algorithm.value)
        self.policy_oid = policy_oid
        self.accuracy_seconds = accuracy_seconds
        self._serials = serials or _PROCESS_SERIALS
        self._clock = clock

    @classmethod
    def from_region(
        cls, session: Session, keystore: KeyStore, *, policy_oid: str = DEFAULT_POLICY_OID
    ) -> TimeStampAuthority:
        """The region's TSA: its current TSA certificate and the key recorded with it."""
        from seal_registry.pki import CertRole, certificate_of, current_certificate, signer_for

        row = current_certificate(session, CertRole.TSA)
        signer = signer_for(keystore, row)
        return cls(keystore, certificate_of(row), signer.key_id, policy_oid=policy_oid)

    # -- issuing ------------------------------------------------------------------------------------
    def _sign(self, message: bytes) -> bytes:
        return self.keystore.sign(self.key_id, message)

    def issue(self, request: TimeStampRequest) -> bytes:
        """A token for ``request``; TimestampRejected (with its PKIFailureInfo) when refused."""
        if request.version != 1:
            raise TimestampRejected(
                FailureInfo.BAD_DATA_FORMAT,
                f"不支持的请求版本 {request.version}",
                f"Unsupported request version {request.version}",
            )
        if request.hash_algorithm not in ACCEPTED_HASHES:
            name = request.hash_name or request.hash_algorithm
            raise TimestampRejected(
                FailureInfo.BAD_ALG,
                f"不接受的摘要算法 {name}（仅接受 SM3、SHA-256）",
                f"Hash algorithm {name} not accepted (SM3 and SHA-256 only)",
            )
        if len(request.digest) != 32:
            raise TimestampRejected(
                FailureInfo.BAD_DATA_FORMAT,
                f"摘要长度应为 32 字节（实际 {len(request.digest)}）",
                f"Digest must be 32 bytes (got {len(request.digest)})",
            )
        if request.policy is not None and request.policy != self.policy_oid:
            raise TimestampRejected(
                FailureInfo.UNACCEPTED_POLICY,
                f"不接受的时间戳策略 {request.policy}",
                f"Policy {request.policy} not accepted",
            )
        if request.extensions:
            names = ", ".join(request.extensions)
            raise TimestampRejected(
                FailureInfo.UNACCEPTED_EXTENSION,
                f"不支持的请求扩展 {names}",
                f"Unsupported extensions {names}",
            )
        gen_time = self._clock()
        not_before = self._cert["tbs_certificate"]["validity"]["not_before"].native
        not_after = self._cert["tbs_certificate"]["validity"]["not_after"].native
        if not not_before <= gen_time <= not_after:
            raise TimestampRejected(
                FailureInfo.SYSTEM_FAILURE,
                "时间戳服务证书不在有效期内",
                "The TSA certificate is not valid at this time",
            )
        tst_info = build_tst_info(
            policy=self.policy_oid,
            message_imprint_der=request.message_imprint_der,
            serial_number=self._serials.next(),
            gen_time=gen_time,
            accuracy_seconds=self.accuracy_seconds,
            nonce=request.nonce,
            tsa_name=self._cert.subject,
        )
        return build_token(
            tst_info,
            sign=self._sign,
            algorithm=self.algorithm,
            tsa_certificate=self.certificate_der,
            chain=self.chain,
            include_certificates=request.cert_req,
            signing_time=gen_time,
        )

    def respond(self, request_der: bytes) -> bytes:
        """The DER TimeStampResp for a DER TimeStampReq. Never raises for a bad request."""
        try:
            request = parse_request(request_der)
        except (MalformedData, InputTooLarge) as exc:
            return build_rejection(
                FailureInfo.BAD_DATA_FORMAT,
                f"时间戳请求格式错误：{exc.message_zh}",
                f"Malformed time-stamp request: {exc.message_en}",
            )
        try:
            return build_response(self.issue(request))
        except TimestampRejected as exc:
            return build_rejection(exc.failure, exc.message_zh, exc.message_en)
        except EsealError as exc:
            log.error("time-stamp signing failed: %s", exc)
            return build_rejection(
                FailureInfo.SYSTEM_FAILURE, "时间戳服务内部错误", "Time-stamping authority internal error"
            )

    def timestamp(self, digest: bytes, hash_algorithm: str = "sm3", *, nonce: int | None = None) -> bytes:
        """A token over ``digest`` (hashed with ``hash_algorithm``), certificate included."""
        request = parse_request(build_request(digest, hash_algorithm, nonce=nonce, cert_req=True))
        return self.issue(request)


# --- client -----------------------------------------------------------------------------------------
def request_timestamp(
    url: str,
    digest: bytes,
    hash_algorithm: str = "sm3",
    *,
    timeout: float = 10.0,
    nonce: int | None = None,
    trust_anchors: Sequence[Certificate] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """POST an RFC 3161 request for ``digest`` to ``url``; the verified token.

    The token's signature, imprint, nonce and TSA certificate usage are checked (and, with
    ``trust_anchors``, its certificate path). Raises TimestampUnavailable for transport or
    protocol failures and TimestampRejected when the TSA refuses.
    """
    nonce = secrets.randbits(63) if nonce is None else nonce
    query = build_request(digest, hash_algorithm, nonce=nonce, cert_req=True)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            reply = client.post(
                url,
                content=query,
                headers={"Content-Type": TIMESTAMP_QUERY, "Accept": TIMESTAMP_REPLY},
            )
    except httpx.HTTPError as exc:
        raise TimestampUnavailable(
            f"无法连接时间戳服务 {url}：{type(exc).__name__}", f"Cannot reach TSA {url}: {type(exc).__name__}"
        ) from exc
    media = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != TIMESTAMP_REPLY:
        raise TimestampUnavailable(
            f"时间戳服务 {url} 返回 HTTP {reply.status_code}（{media or '无类型'}）",
            f"TSA {url} answered HTTP {reply.status_code} ({media or 'no content type'})",
        )
    try:
        response = parse_response(reply.content)
    except (MalformedData, InputTooLarge) as exc:
        raise TimestampUnavailable(
            f"时间戳服务 {url} 的响应无效：{exc.message_zh}",
            f"Invalid response from TSA {url}: {exc.message_en}",
        ) from exc
    if not response.granted or response.token is None:
        failure = next(iter(sorted(response.failure_info)), FailureInfo.SYSTEM_FAILURE.value)
        text = " / ".join(response.status_text)
        raise TimestampRejected(
            FailureInfo(failure),
            f"时间戳服务 {url} 拒绝请求（{response.status}）：{text}",
            f"TSA {url} refused the request ({response.status}): {text}",
        )
    verify_token(response.token, digest=digest, nonce=nonce, trust_anchors=trust_anchors)
    return response.token


class TimestampClient:
    """Asks external TSAs in order; falls back to the built-in one when all of them fail."""

    def __init__(
        self,
        urls: Sequence[str],
        fallback: TimeStampAuthority | None = None,
        *,
        timeout: float = 10.0,
        trust_anchors: Sequence[Certificate] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = tuple(urls)
        self.fallback = fallback
        self.timeout = timeout
        self.trust_anchors = trust_anchors
        self._transport = transport

    def timestamp(self, digest: bytes, hash_algorithm: str = "sm3") -> bytes:
        failures: list[str] = []
        for url in self.urls:
            try:
                return request_timestamp(
                    url,
                    digest,
                    hash_algorithm,
                    timeout=self.timeout,
                    trust_anchors=self.trust_anchors,
                    transport=self._transport,
                )
            except EsealError as exc:
                log.warning("TSA %s failed: %s", url, exc.message_en)
                failures.append(f"{url}: {exc.message_en}")
        if self.fallback is not None:
            return self.fallback.timestamp(digest, hash_algorithm)
        raise TimestampUnavailable(
            "所有时间戳服务均不可用", "No time-stamping authority produced a token", failures=failures
        )
