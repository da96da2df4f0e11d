# mypy: allow-subclassing-any
"""ASN.1 models of GB/T 38540-2020 electronic seals and SES signatures ("v4"), and ofdrw's "v5".

Shapes follow ``../shared/spec/seal-formats.md`` §2 and §3.2 as observed on real samples, which is
sometimes looser than the standard's text:

* ``ExtData.critical`` is modelled ``optional`` rather than ``DEFAULT FALSE`` so that a reader can
  tell "encoded FALSE" (every producer in the corpus) from "absent" (strict DER).
* ``SES_ESPropertyInfo.certList`` is a CHOICE without a tag of its own; both arms start with ``30``,
  so it is held as ``core.Any`` and decoded with :class:`CertInfoList` or :class:`CertDigestList`
  after ``certListType`` has been read.
* ``TBS_Sign.extDatas`` and ``SES_Signature.timeStamp`` are ``[0] EXPLICIT`` in ofdrw and reportedly
  untagged elsewhere; both spellings are declared as separate optional fields and the reader rejects
  inputs that carry both.
* Picture width/height are INTEGER in every sample; REAL is tolerated on input via :class:`Dimension`.
* ``TBS_Sign.eseal`` is ``core.Any``: the embedded seal is decoded separately from its original slice
  so that its bytes are never re-encoded (§4.5).

Signature and hash BIT STRINGs are ``OctetBitString`` (0 unused bits, whole bytes).
"""

from __future__ import annotations

from typing import Any, ClassVar

from asn1crypto import core


class SESHeader(core.Sequence):
    """SES_Header: id "ES", version (4, or 5 for ofdrw's v5), vendor id."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("id", core.IA5String),
        ("version", core.Integer),
        ("vid", core.IA5String),
    ]


class CertInfoList(core.SequenceOf):
    """certListType 1: the certificates (X.509 DER) as OCTET STRING contents."""

    _child_spec = core.OctetString


class CertDigestObj(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.PrintableString),
        ("value", core.OctetString),
    ]


class CertDigestList(core.SequenceOf):
    """certListType 2: digests of the certificates."""

    _child_spec = CertDigestObj


class SESESPropertyInfo(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list_type", core.Integer),
        ("cert_list", core.Any),
        ("create_date", core.GeneralizedTime),
        ("valid_start", core.GeneralizedTime),
        ("valid_end", core.GeneralizedTime),
    ]


class Dimension(core.Choice):
    """Picture width/height in millimetres: INTEGER on the wire, REAL tolerated on input."""

    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("integer", core.Integer),
        ("real", core.Real),
    ]


class SESESPictrueInfo(core.Sequence):
    """SES_ESPictrueInfo (the standard's spelling)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.IA5String),
        ("data", core.OctetString),
        ("width", Dimension),
        ("height", Dimension),
    ]


class ExtData(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"optional": True}),
        ("extn_value", core.OctetString),
    ]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class SESSealInfo(core.Sequence):
    """SES_SealInfo: the part of the seal the maker signs (its DER as stored)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("header", SESHeader),
        ("es_id", core.IA5String),
        ("property", SESESPropertyInfo),
        ("picture", SESESPictrueInfo),
        # Untagged: confirmed on State Taxation Administration seals.
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SESeal(core.Sequence):
    """SESeal v4 (4 elements) or v5 (4, or 5 with the time-stamp)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("e_seal_info", SESSealInfo),
        ("cert", core.OctetString),
        ("sign_alg_id", core.ObjectIdentifier),
        ("signed_value", core.OctetBitString),
        ("time_stamp", core.OctetBitString, {"explicit": 0, "optional": True}),
    ]


class TBSSign(core.Sequence):
    """TBS_Sign v4/v5: what the signer signs (its DER as stored)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("version", core.Integer),
        ("eseal", core.Any),
        ("time_info", core.GeneralizedTime),
        ("data_hash", core.OctetBitString),
        ("property_info", core.IA5String),
        ("ext_datas", ExtensionDatas, {"explicit": 0, "optional": True}),
        ("ext_datas_untagged", ExtensionDatas, {"optional": True}),
    ]


class SESSignature(core.Sequence):
    """SES_Signature v4/v5. ``cert``, ``signature_alg_id`` and the time-stamp are not signed."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("to_sign", TBSSign),
        ("cert", core.OctetString),
        ("signature_alg_id", core.ObjectIdentifier),
        ("signature", core.OctetBitString),
        ("time_stamp", core.OctetBitString, {"explicit": 0, "optional": True}),
        ("time_stamp_untagged", core.OctetBitString, {"optional": True}),
    ]
