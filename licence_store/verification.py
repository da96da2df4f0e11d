"""Online verification ("one licence, one interface"): by identifier or by the payload of the QR code
printed on the licence, anyone can learn whether a licence is valid, which version is current, who
issued it, the SM3 of its file, and whether a file they hold is that file — the OFD, or the sealed
print PDF of a type with ``print_pdf`` (``matched_file`` says which).

The holder's name is masked (:func:`licence_store.metadata.mask_name`) unless the caller is entitled
to see it: the holder, the issuing department, a department with an active grant, an auditor or an
administrator (the API decides; this module takes ``reveal``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.orm import Session

from core.db import utcnow
from gmpki.sm3 import sm3

from .grants import GrantState, grant_state, list_grants
from .identifier import IdentifierInvalid, parse_identifier
from .issuing import VERIFY_PATH
from .metadata import mask_name, today_in_china
from .models import Licence
from .records import current_version, get_licence, status_of
from .status import LicenceStatus, label

MAX_PAYLOAD: Final = 1024


def identifier_from_payload(payload: str) -> str:
    """The identifier in a QR payload: the verification URL (``…/v1/licences/check?id=…``) or the bare
    identifier. The identifier itself is checked by :func:`parse_identifier`."""
    text = (payload or "").strip()
    if len(text) > MAX_PAYLOAD:
        raise IdentifierInvalid(
            f"二维码内容超过 {MAX_PAYLOAD} 个字符",
            f"QR payload longer than {MAX_PAYLOAD} characters",
            reason="malformed",
        )
    if "://" not in text:
        return str(parse_identifier(text))
    try:
        parts = urlsplit(text)
    except ValueError:
        raise IdentifierInvalid(
            "二维码内容不是有效的网址", "the QR payload is not a valid URL", reason="malformed"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.path.endswith(VERIFY_PATH):
        raise IdentifierInvalid(
            f"二维码网址不是证照核验地址（应以 {VERIFY_PATH} 结尾）",
            f"the QR URL is not a licence verification address (path must end with {VERIFY_PATH})",
            reason="malformed",
        )
    values = parse_qs(parts.query).get("id", [])
    if len(values) != 1:
        raise IdentifierInvalid(
            "二维码网址中缺少唯一的 id 参数",
            "the QR URL must carry exactly one id parameter",
            reason="malformed",
        )
    return str(parse_identifier(values[0]))


def may_reveal_holder(
    session: Session,
    licence: Licence,
    *,
    holder_code: str | None,
    department_id: str | None,
    privileged: bool,
    now: dt.datetime | None = None,
) -> bool:
    if privileged or (holder_code is not None and holder_code == licence.holder_code):
        return True
    if department_id is None:
        return False
    if department_id == licence.issuer_department_id:
        return True
    return any(
        grant_state(g, now) is GrantState.ACTIVE
        for g in list_grants(
            session, base_identifier=licence.base_identifier, grantee_department_id=department_id
        )
    )


def _matched_file(row: Licence, digest: str) -> str:
    """Which of the version's sealed files has SM3 ``digest``: "ofd", "pdf" (the print copy), or ""."""
    if digest == row.ofd_sm3:
        return "ofd"
    if row.pdf_sm3 is not None and digest == row.pdf_sm3:
        return "pdf"
    return ""


def check_licence(
    session: Session,
    identifier: str,
    *,
    presented: bytes | None = None,
    reveal: bool = False,
    today: dt.date | None = None,
) -> tuple[Licence, dict[str, Any]]:
    """The public answer about one version (the row too, for the caller's access log)."""
    row = get_licence(session, identifier)
    today = today or today_in_china()
    status = status_of(row, today)
    zh, en = label(status)
    latest = row if row.superseded_by is None else current_version(session, row.base_identifier)
    matched = None if presented is None else _matched_file(row, sm3(presented).hex())
    result: dict[str, Any] = {
        "identifier": row.identifier,
        "version": row.version,
        "valid": status is LicenceStatus.VALID,
        "status": status.value,
        "status_zh": zh,
        "status_en": en,
        "superseded": row.superseded_by is not None,
        "superseded_by": row.superseded_by,
        "latest_identifier": latest.identifier,
        "latest_status": status_of(latest, today).value,
        "previous_identifier": row.previous_identifier,
        "name": row.name,
        "licence_number": row.licence_number,
        "type_code": row.type_code,
        "type_name": row.type_name,
        "issuer_name": row.issuer_name,
        "issuer_code": row.issuer_code,
        "issue_date": row.issue_date.isoformat(),
        "valid_from": row.valid_from.isoformat(),
        "valid_until": None if row.valid_until is None else row.valid_until.isoformat(),
        "holder_name": row.holder_name if reveal else mask_name(row.holder_name),
        "holder_name_masked": not reveal,
        "file_sm3": row.ofd_sm3,
        "file_size": row.ofd_size,
        "pdf_sm3": row.pdf_sm3,
        "pdf_size": row.pdf_size,
        "file_matches": None if matched is None else matched != "",
        "matched_file": matched or None,
        "checked_at": utcnow().isoformat(),
    }
    return row, result


__all__ = ["MAX_PAYLOAD", "check_licence", "identifier_from_payload", "may_reveal_holder"]
