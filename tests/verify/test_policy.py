"""Policies: defaults, TOML loading, and what fail / warn / ignore do to a verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from gmpki.ofd import OfdPackage
from verify import (
    CHECK_IDS,
    DEFAULT_POLICY,
    Action,
    Indication,
    Result,
    SubIndication,
    load_policy,
    verify_bytes,
)
from verify.policy import SHA256, SM3

pytestmark = pytest.mark.interop

TAX, EXPIRED = "ofdrw-sign__v4signed.ofd", "ofdrw-reader__SESV4SignDoc.ofd"


def test_defaults() -> None:
    assert set(DEFAULT_POLICY.actions) == set(CHECK_IDS)
    assert DEFAULT_POLICY.action("seal.maker_certificate_validity") is Action.WARN
    assert DEFAULT_POLICY.action("document.coverage") is Action.WARN
    assert DEFAULT_POLICY.action("signer.certificate_chain") is Action.FAIL
    assert DEFAULT_POLICY.digest_algorithms == frozenset({SM3})
    assert DEFAULT_POLICY.at is None and not DEFAULT_POLICY.require_revocation


def test_toml_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        """
[checks]
"document.coverage" = "fail"
"signer.certificate_chain" = "ignore"
"seal.maker_certificate_chain" = "IGNORE"

[algorithms]
signature = ["SM2-with-SM3"]
digest = ["SM3", "SHA-256"]

[validation]
at = 2021-06-01T08:00:00+08:00
require_revocation = true
""",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.action("document.coverage") is Action.FAIL
    assert policy.action("signer.certificate_chain") is Action.IGNORE
    assert policy.action("seal.maker_certificate_validity") is Action.WARN  # untouched default
    assert policy.digest_algorithms == frozenset({SM3, SHA256})
    assert policy.at == dt.datetime(2021, 6, 1, 0, 0, tzinfo=dt.UTC)
    assert policy.require_revocation


@pytest.mark.parametrize(
    "text",
    [
        '[checks]\n"no.such.check" = "fail"',
        '[checks]\n"format.parse" = "maybe"',
        '[algorithms]\ndigest = ["MD5"]',
        '[algorithms]\ndigest = ["SHA-1"]',
        '[algorithms]\nsignature = ["RSA"]',
        "[algorithms]\ndigest = []",
        "[validation]\nat = 2021-06-01T08:00:00",  # no offset
        "[validation]\nrequire_revocation = 1",
        "[other]\nx = 1",
        "not = [toml",
    ],
)
def test_bad_policies_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError):
        load_policy(text)


def test_ignoring_trust_turns_indeterminate_into_passed(interop_file: Callable[[str], bytes]) -> None:
    policy = load_policy(
        b'[checks]\n"signer.certificate_chain" = "ignore"\n"seal.maker_certificate_chain" = "ignore"\n'
    )
    report = verify_bytes(interop_file(TAX), policy=policy)
    assert report.indication is Indication.PASSED
    chain = report.signatures[0].check("signer.certificate_chain")
    assert chain.result is Result.SKIPPED and chain.message_en.startswith("ignored by policy")


def test_warn_keeps_the_finding_but_not_the_failure(interop_file: Callable[[str], bytes]) -> None:
    policy = DEFAULT_POLICY.with_actions(
        {"seal.validity_period": Action.WARN, "signer.certificate_validity": "warn"}
    )
    report = verify_bytes(interop_file(EXPIRED), policy=policy)
    (sig,) = report.signatures
    assert sig.check("seal.validity_period").result is Result.WARNING
    assert "2022-04-22" in sig.check("seal.validity_period").message_en
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
    with pytest.raises(ConfigurationError):
        DEFAULT_POLICY.with_actions({"nope": Action.WARN})


def test_strict_coverage_policy_fails_added_files(interop_file: Callable[[str], bytes]) -> None:
    added = OfdPackage(interop_file(TAX)).rewrite({"Doc_0/Attachs/later.xml": b"<x/>"})
    assert verify_bytes(added).indication is Indication.INDETERMINATE
    strict = DEFAULT_POLICY.with_actions({"document.coverage": Action.FAIL})
    report = verify_bytes(added, policy=strict)
    assert report.indication is Indication.FAILED
    assert report.signatures[0].check("document.coverage").result is Result.FAILED


def test_digest_not_accepted_by_policy(interop_file: Callable[[str], bytes]) -> None:
    policy = load_policy('[algorithms]\ndigest = ["SHA-256"]')
    (sig,) = verify_bytes(interop_file(TAX), policy=policy).signatures
    refs = sig.check("document.references")
    assert refs.result is Result.INDETERMINATE and "not accepted" in refs.message_en


def test_require_revocation(interop_file: Callable[[str], bytes]) -> None:
    policy = load_policy("[validation]\nrequire_revocation = true")
    (sig,) = verify_bytes(interop_file(TAX), policy=policy).signatures
    assert sig.check("signer.certificate_revocation").result is Result.INDETERMINATE
