"""Verification of electronic seals, SES and CMS signatures, and sealed OFD and PDF documents.

Split as EU DSS does it: :mod:`verify.evidence` collects facts, :mod:`verify.checks` judges them
under a :mod:`verify.policy` and a :mod:`verify.trust` source, :mod:`verify.report` derives the
verdicts. :func:`verify_bytes` runs the whole pipeline. Depends on ``gmpki`` and ``core.errors``
only, so it works offline with nothing but trust files.
"""

from __future__ import annotations

from .engine import InputKind, UnsupportedFormat, UnusableInput, detect, verify_bytes
from .evidence import clear_caches
from .policy import CHECK_IDS, DEFAULT_POLICY, Action, Policy, load_policy, policy_from_mapping
from .report import (
    CertificateSummary,
    CheckResult,
    DocumentReport,
    Indication,
    Result,
    SealSummary,
    SignatureReport,
    SubIndication,
)
from .trust import FileTrustSource, SealState, SealStatusFact, TrustSource

__all__ = [
    "CHECK_IDS",
    "DEFAULT_POLICY",
    "Action",
    "CertificateSummary",
    "CheckResult",
    "DocumentReport",
    "FileTrustSource",
    "Indication",
    "InputKind",
    "Policy",
    "Result",
    "SealState",
    "SealStatusFact",
    "SealSummary",
    "SignatureReport",
    "SubIndication",
    "TrustSource",
    "UnsupportedFormat",
    "UnusableInput",
    "clear_caches",
    "detect",
    "load_policy",
    "policy_from_mapping",
    "verify_bytes",
]
