"""Remote two-step signing: the client hashes, the service signs the digest, the client assembles.

Large documents need not travel and the service never sees them. The protocol:

1. The client fetches the seal (``GET /v1/seals/{esID}/seal.esl``) — for an OFD it needs the seal
   before hashing, because Seal.esl is written into the package and referenced, and the picture
   size sets the stamp's Boundary.
2. It computes the digest: SM3 of the data for a detached SES signature, SM3 of the Signature.xml
   it has just written for an OFD (:func:`signer.ofd_sealing.prepare_seal`).
3. ``POST /v1/sign/digest`` ``{es_id, digest_hex, property_info}`` returns the SES_Signature and the
   seal it embeds (base64). The service authorises, signs and audits exactly as for a full upload
   (:func:`sign_digest`); the audit entry marks the request as two-step.
4. The client checks the answer (dataHash is its digest, the embedded seal is the seal it used,
   the signer signature verifies) and writes the result: the SES DER, or the sealed OFD
   (:func:`signer.ofd_sealing.finish_seal`).

Signature.xml's ``SignatureDateTime`` is then the client's clock; the signed time is the service's
``timeInfo`` inside the SES signature, as always.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Final
from urllib.parse import quote

import httpx
from sqlalchemy.orm import Session

from core.errors import EsealError, InvalidInput, MalformedData
from gmpki import seal as ses
from gmpki.ofd import ContainerLimits
from gmpki.sm3 import sm3, sm3_chunks
from hsm_adapters.keystore import KeyStore

from .ofd_sealing import SealMode, analyse_ofd, finish_seal, prepare_seal
from .placement import Placement
from .ses_signing import SesResult, check_property_info, default_property_info, sign_hash

DIGEST_PATH: Final = "/v1/sign/digest"
MAX_RESPONSE: Final = 32 * 1024 * 1024


# --- service side ---------------------------------------------------------------------------------------
def sign_digest(
    session: Session,
    keystore: KeyStore,
    *,
    es_id: str,
    department_id: str,
    digest: bytes,
    property_info: str,
    actor: str,
    time_stamp: Callable[[bytes], bytes] | None = None,
    document_sm3: bytes | None = None,
) -> SesResult:
    """An SES signature over a client's SM3 ``digest``; audited with ``two_step: true``.

    ``document_sm3`` is the SM3 of the whole document as the client states it (for an OFD the
    digest signed is that of Signature.xml, not of the document); it is recorded, not checked.
    """
    details: dict[str, Any] = {"format": "digest", "two_step": True}
    if document_sm3 is not None:
        if len(document_sm3) != 32:
            raise InvalidInput("文档摘要须为 32 字节 SM3", "document_sm3 must be a 32-byte SM3 digest")
        details.update({"document_sm3": document_sm3.hex(), "document_sm3_source": "client"})
    return sign_hash(
        session,
        keystore,
        es_id=es_id,
        department_id=department_id,
        data_hash=digest,
        property_info=property_info,
        actor=actor,
        time_stamp=time_stamp,
        audit_details=details,
    )


def result_to_json(result: SesResult) -> dict[str, Any]:
    """The body of a ``/v1/sign/digest`` answer."""
    return {
        "es_id": result.es_id,
        "ses_signature": base64.b64encode(result.signature).decode("ascii"),
        "seal": base64.b64encode(result.seal).decode("ascii"),
        "seal_sm3": sm3(result.seal).hex(),
        "data_hash_hex": result.data_hash.hex(),
        "property_info": result.property_info,
        "signing_time": result.signing_time.astimezone(dt.UTC).isoformat(),
    }


# --- client side ----------------------------------------------------------------------------------------
class RemoteSigningError(EsealError):
    """The signing service could not be reached or answered something unusable."""

    code = "remote_signing_failed"
    status = 502
    title_zh, title_en = "远程签章失败", "Remote signing failed"


def _error_classes() -> dict[str, type[EsealError]]:
    found: dict[str, type[EsealError]] = {}
    pending: list[type[EsealError]] = [EsealError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise RemoteSigningError(f"服务返回的 {what} 缺失", f"the service's answer has no {what}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteSigningError(
            f"服务返回的 {what} 不是 Base64", f"the service's {what} is not base64"
        ) from None


def check_remote_signature(
    signature: bytes, *, digest: bytes, property_info: str, seal: bytes | None = None
) -> ses.ParsedSesSignature:
    """What came back must sign ``digest`` with ``property_info`` (and embed ``seal`` when given)."""
    try:
        parsed = ses.parse_ses_signature(signature)
    except MalformedData as exc:
        raise RemoteSigningError(
            f"服务返回的签章数据无法解析：{exc.message_zh}",
            f"the service returned an unreadable SES: {exc.message_en}",
        ) from exc
    problems: list[tuple[str, str]] = []
    if parsed.data_hash != digest:
        problems.append(("dataHash 不是所发送的摘要", "dataHash is not the digest sent"))
    if parsed.property_info != property_info:
        problems.append(("propertyInfo 与请求不符", "propertyInfo differs from the request"))
    if seal is not None and parsed.seal.raw != seal:
        problems.append(("所含印章与下载的印章不同", "the embedded seal differs from the downloaded one"))
    if not ses.verify_signer_signature(parsed):
        problems.append(("签章者签名无效", "the signer signature does not verify"))
    if problems:
        raise RemoteSigningError(
            "服务返回的签章数据不可用：" + "；".join(p[0] for p in problems),
            "the SES signature returned by the service is unusable: " + "; ".join(p[1] for p in problems),
        )
    return parsed


class TwoStepClient:
    """A client of an eseal service for two-step signing (bearer token of a department signer)."""

    _errors: ClassVar[dict[str, type[EsealError]] | None] = None

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput("服务地址须以 http:// 或 https:// 开头", "the service URL must be http(s)://")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> TwoStepClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteSigningError(
                f"无法连接签章服务：{type(exc).__name__}", f"cannot reach the signing service: {exc}"
            ) from exc
        if len(response.content) > MAX_RESPONSE:
            raise RemoteSigningError("服务应答过大", "the service's answer is too large")
        if response.is_success:
            return response
        raise self._problem(response)

    def _problem(self, response: httpx.Response) -> EsealError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            if TwoStepClient._errors is None:
                TwoStepClient._errors = _error_classes()
            cls = TwoStepClient._errors.get(body["code"], RemoteSigningError)
            zh = str(body.get("detail_zh") or body.get("detail") or body["code"])
            en = str(body.get("detail_en") or body.get("detail") or body["code"])
            try:
                return cls(zh, en, status=response.status_code)
            except TypeError:  # a subclass with its own constructor
                return RemoteSigningError(zh, en, status=response.status_code, code=body["code"])
        return RemoteSigningError(
            f"签章服务返回 HTTP {response.status_code}",
            f"the signing service answered HTTP {response.status_code}",
        )

    def fetch_seal(self, es_id: str) -> bytes:
        """The seal file (DER) as issued."""
        return self._call("GET", f"/v1/seals/{quote(es_id, safe='')}/seal.esl").content

    def sign_digest(
        self,
        es_id: str,
        digest: bytes,
        property_info: str,
        *,
        seal: bytes | None = None,
        document_sm3: bytes | None = None,
    ) -> SesResult:
        """Have the service sign ``digest``; the answer is checked before it is returned."""
        property_info = check_property_info(property_info)
        request: dict[str, str] = {"es_id": es_id, "digest_hex": digest.hex(), "property_info": property_info}
        if document_sm3 is not None:
            request["document_sm3_hex"] = document_sm3.hex()
        response = self._call("POST", DIGEST_PATH, json=request)
        try:
            body = response.json()
        except ValueError:
            raise RemoteSigningError("服务应答不是 JSON", "the service's answer is not JSON") from None
        if not isinstance(body, dict):
            raise RemoteSigningError("服务应答格式错误", "the service's answer has the wrong shape")
        signature = _b64(body.get("ses_signature"), "ses_signature")
        embedded = _b64(body.get("seal"), "seal")
        parsed = check_remote_signature(signature, digest=digest, property_info=property_info, seal=seal)
        if parsed.seal.raw != embedded:
            raise RemoteSigningError("应答中的印章与签章数据不符", "the answer's seal is not the one signed")
        when = parsed.time_info or dt.datetime.now(dt.UTC)
        return SesResult(signature, embedded, str(body.get("es_id") or es_id), digest, property_info, when)


def remote_sign_data(
    client: TwoStepClient,
    data: bytes | Iterable[bytes],
    *,
    es_id: str,
    property_info: str | None = None,
    name: str | None = None,
) -> SesResult:
    """A detached SES signature over ``data``, made by the service from its SM3 only."""
    digest = sm3(bytes(data)) if isinstance(data, bytes | bytearray | memoryview) else sm3_chunks(data)
    info = property_info if property_info is not None else default_property_info(digest, name)
    return client.sign_digest(es_id, digest, info, document_sm3=digest)


def remote_seal_ofd(
    client: TwoStepClient,
    ofd_bytes: bytes,
    *,
    es_id: str,
    placement: Placement | None,
    mode: SealMode | str = SealMode.CONTINUE,
    limits: ContainerLimits | None = None,
) -> bytes:
    """Seal an OFD locally with a signature the service makes over SM3(Signature.xml) only."""
    target = analyse_ofd(ofd_bytes, placement=placement, mode=mode, limits=limits)
    seal = client.fetch_seal(es_id)
    prepared = prepare_seal(target, seal, dt.datetime.now(dt.UTC).replace(microsecond=0))
    result = client.sign_digest(
        es_id, prepared.data_hash, prepared.property_info, seal=seal, document_sm3=target.document_sm3
    )
    return finish_seal(prepared, result.signature)


__all__ = [
    "DIGEST_PATH",
    "RemoteSigningError",
    "TwoStepClient",
    "check_remote_signature",
    "remote_seal_ofd",
    "remote_sign_data",
    "result_to_json",
    "sign_digest",
]
