# mypy: allow-subclassing-any
"""ASN.1 models of GM/T 0031-2014 electronic seals and SES signatures ("v1"), read-only.

Shapes follow ``../shared/spec/seal-formats.md`` §3.1. This project never produces v1 structures;
the models exist so that old seals and signatures can be read and verified over their original
bytes. Header, picture and extensions are the same as in GB/T 38540 and are reused from
:mod:`gmpki.ses_v4`.

Leniencies taken over from what producers are known to write:

* seal dates are UTCTime, but GeneralizedTime is accepted (:class:`SealTime`);
* ``TBS_Sign.timeInfo`` and ``dataHash`` are BIT STRING, but OCTET STRING is accepted, so both are
  ``core.Any`` and decoded by the reader; the content of ``timeInfo`` is not standardised in
  practice (ofdrw writes ASCII text or an encoded UTCTime into it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from asn1crypto import core

from .ses_v4 import CertInfoList, ExtensionDatas, SESESPictrueInfo, SESHeader


class SealTime(core.Choice):
    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("utc_time", core.UTCTime),
        ("generalized_time", core.GeneralizedTime),
    ]


class SESESPropertyInfoV1(core.Sequence):
    """No certListType: the list always holds whole certificates."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list", CertInfoList),
        ("create_date", SealTime),
        ("valid_start", SealTime),
        ("valid_end", SealTime),
    ]


class SESSealInfoV1(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("header", SESHeader),
        ("es_id", core.IA5String),
        ("property", SESESPropertyInfoV1),
        ("picture", SESESPictrueInfo),
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SESSignInfo(core.Sequence):
    """The maker's signature block. It signs SEQUENCE{sealInfo, cert, signatureAlgorithm}."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert", core.OctetString),
        ("signature_algorithm", core.ObjectIdentifier),
        ("sign_data", core.OctetBitString),
    ]


class SESealV1(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("e_seal_info", SESSealInfoV1),
        ("sign_info", SESSignInfo),
    ]


class TBSSignV1(core.Sequence):
    """Seven fields; unlike v4 the signer certificate and algorithm are inside the signed part."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("version", core.Integer),
        ("eseal", core.Any),
        ("time_info", core.Any),
        ("data_hash", core.Any),
        ("property_info", core.IA5String),
        ("cert", core.OctetString),
        ("signature_algorithm", core.ObjectIdentifier),
    ]


class SESSignatureV1(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("to_sign", TBSSignV1),
        ("signature", core.OctetBitString),
    ]
