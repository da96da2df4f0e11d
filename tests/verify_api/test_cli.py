"""``eseal verify``: one exit code per verdict, offline trust files, the local registry, a snapshot."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings
from gmpki.ca import issue_root_ca
from gmpki.signing import InMemorySigner
from gmpki.sm2 import SM2PrivateKey
from gmpki.x509 import build_name
from seal_registry import status
from tests.conftest import require_or_skip

from ..registry.conftest import Registry
from .conftest import DATA, RegionSeal, cancelled_scenario
from .test_registry_trust import _region

INTEROP_CASES = [
    ("ofdrw-reader__SESV4SignDoc.ofd", 1, "FAILED"),
    ("ofdrw-sign__v4signed.ofd", 2, "INDETERMINATE"),
    ("ofdrw-sign__helloworld.ofd", 3, "NOT_SIGNED"),
]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def report_of(*args: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, err = run("verify", "--json", *args)
    assert out, err
    return code, json.loads(out)


def _results(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["result"] for c in report["signatures"][0]["checks"]}


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings that point at no database: an offline verification must never open one."""
    var = tmp_path / "no-var"
    monkeypatch.setenv("ESEAL_VAR_DIR", str(var))
    monkeypatch.setenv("ESEAL_DATABASE_URL", f"sqlite:///{tmp_path / 'absent' / 'none.db'}")
    get_settings.cache_clear()
    yield var
    get_settings.cache_clear()
    assert not var.exists() and not (tmp_path / "absent").exists()


@pytest.mark.interop
@pytest.mark.parametrize(("name", "code", "indication"), INTEROP_CASES)
def test_interop_exit_codes(offline: Path, interop_dir: Path, name: str, code: int, indication: str) -> None:
    got, out, _err = run("verify", interop_dir / name)
    assert got == code
    assert re.search(rf"验证结果 verdict: \S+ {indication}", out)
    got, report = report_of(interop_dir / name)
    assert got == code and report["indication"] == indication


@pytest.mark.interop
def test_terminal_report(offline: Path, interop_dir: Path) -> None:
    code, out, _err = run("verify", interop_dir / "ofdrw-reader__SESV4SignDoc.ofd")
    assert code == 1
    assert "失败 FAILED  (SEAL_EXPIRED)" in out
    assert "OFD R&W 测试用印章" in out and "51f044b76510434e9bc67a1185c2fba5" in out
    assert "1719D2DAB60" in out  # the signer's serial
    for check_id in ("seal.validity_period", "signer.certificate_validity", "document.references"):
        assert check_id in out


@pytest.mark.interop
def test_unusable_inputs_exit_4(offline: Path, interop_dir: Path, tmp_path: Path) -> None:
    code, out, err = run("verify", interop_dir / "ofdrw-gm__USER.p12")
    assert code == 4 and out == "" and "unusable_input" in err
    assert run("verify", tmp_path / "missing.ofd")[0] == 4
    helloworld = interop_dir / "ofdrw-sign__helloworld.ofd"
    assert run("verify", helloworld, "--at", "yesterday")[0] == 4
    assert run("verify", helloworld, "--at", "2024-01-01T00:00:00")[0] == 4  # no zone
    assert run("verify", helloworld, "--crl", helloworld)[0] == 4  # a CRL alone anchors nothing
    assert run("verify", helloworld, "--trust", helloworld)[0] == 4  # not a certificate
    assert run("verify", helloworld, "--snapshot", helloworld)[0] == 4  # nothing to check it against
    bad_policy = tmp_path / "policy.toml"
    bad_policy.write_text('[checks]\n"no.such.check" = "warn"\n')
    code, _out, err = run("verify", helloworld, "--policy", bad_policy)
    assert code == 4 and "no.such.check" in err


@pytest.mark.interop
def test_policy_file(offline: Path, interop_dir: Path, tmp_path: Path) -> None:
    """Expiry demoted to a warning: what is left is the missing trust anchor."""
    policy = tmp_path / "lenient.toml"
    policy.write_text('[checks]\n"seal.validity_period" = "warn"\n"signer.certificate_validity" = "warn"\n')
    code, report = report_of(interop_dir / "ofdrw-reader__SESV4SignDoc.ofd", "--policy", policy)
    assert (code, report["indication"], report["sub_indication"]) == (
        2,
        "INDETERMINATE",
        "NO_CERTIFICATE_CHAIN_FOUND",
    )
    assert _results(report)["seal.validity_period"] == "warning"
    at = ("--at", "2021-01-01T00:00:00+08:00")
    code, report = report_of(interop_dir / "ofdrw-reader__SESV4SignDoc.ofd", *at)
    assert code == 1 and report["validation_time"] == "2020-12-31T16:00:00Z"


# --- with the registry's trust -------------------------------------------------------------------------
@pytest.fixture
def registry_env(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The CLI's settings pointed at the registry fixture's database and key store."""
    monkeypatch.setenv("ESEAL_VAR_DIR", str(registry.settings.var_dir))
    monkeypatch.setenv("ESEAL_DATABASE_URL", registry.url)
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "registry test passphrase")
    get_settings.cache_clear()
    yield registry
    get_settings.cache_clear()


def _files(tmp_path: Path, region: RegionSeal, signature: bytes, name: str) -> tuple[Path, Path, Path]:
    sig = tmp_path / f"{name}.dat"
    sig.write_bytes(signature)
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    return sig, data, region.root_pem(tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_trust_files_local_registry_and_snapshot(registry_env: Registry, tmp_path: Path) -> None:
    region = _region(registry_env)
    good, data, root = _files(tmp_path, region, region.sign(), "good")

    # Offline, with the region root as anchor: PASSED; status and revocation cannot be asked
    code, report = report_of(good, "--data", data, "--trust", root)
    assert (code, report["indication"]) == (0, "PASSED")
    assert _results(report)["seal.status"] == "skipped"
    assert _results(report)["signer.certificate_revocation"] == "skipped"
    assert report_of(good, "--data", data)[0] == 2  # no anchor at all
    assert run("verify", good, "--data", tmp_path / "missing.txt")[0] == 4
    code, out, _err = run("verify", good, "--data", data, "--trust", root)
    assert code == 0 and "通过 PASSED" in out and region.es_id in out

    # --local: the registry answers for status and revocation too
    code, report = report_of(good, "--data", data, "--local")
    assert code == 0 and _results(report)["seal.status"] == "passed"
    assert _results(report)["signer.certificate_revocation"] == "passed"

    case = cancelled_scenario(_region(registry_env))
    after, _, _ = _files(tmp_path, region, case.after, "after")
    before, _, _ = _files(tmp_path, region, case.before, "before")
    code, report = report_of(after, "--data", data, "--local")
    assert (code, report["sub_indication"]) == (1, "SEAL_CANCELLED")
    assert report_of(before, "--data", data, "--local")[0] == 0

    # The signed snapshot, offline: the same verdicts without the database
    with registry_env.sessions() as s:
        envelope = status.build_snapshot(s, registry_env.keystore, region_code="110000")
    snapshot = tmp_path / "seal-status.json"
    snapshot.write_bytes(envelope)
    url = f"sqlite:///{tmp_path / 'absent' / 'none.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESEAL_DATABASE_URL", url)
        get_settings.cache_clear()
        code, report = report_of(after, "--data", data, "--trust", root, "--snapshot", snapshot)
        assert (code, report["sub_indication"]) == (1, "SEAL_CANCELLED")
        code, report = report_of(before, "--data", data, "--trust", root, "--snapshot", snapshot)
        assert code == 0 and _results(report)["seal.status"] == "warning"
        # A snapshot that does not chain to the anchors given is refused, not ignored; so is a non-snapshot
        foreign = tmp_path / "foreign-root.pem"
        signer = InMemorySigner(SM2PrivateKey.generate())
        foreign.write_text(issue_root_ca(signer, build_name("Foreign Root")).to_pem())
        code, _out, err = run("verify", after, "--data", data, "--trust", foreign, "--snapshot", snapshot)
        assert code == 4 and "certificate" in err.lower()
        code, _out, err = run("verify", after, "--data", data, "--trust", root, "--snapshot", data)
        assert code == 4 and "malformed_data" in err
    get_settings.cache_clear()
    assert not (tmp_path / "absent").exists()


# --- detached CMS ---------------------------------------------------------------------------------------
def test_openssl_cms_with_data_and_interop_anchor(offline: Path, tmp_path: Path) -> None:
    """An ECDSA CMS by the OpenSSL CLI, its ECDSA certificate given with --trust (any key type)."""
    from tests.gmpki.conftest import openssl_path, run_openssl

    openssl = openssl_path()
    require_or_skip(openssl is not None, "OpenSSL 3 command line tool not found")
    assert openssl is not None
    made = run_openssl(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem", "-subj", "/CN=cli cms", "-days", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    data = tmp_path / "data.bin"
    data.write_bytes(DATA)
    cms = tmp_path / "data.p7s"
    signed = run_openssl(
        openssl, "cms", "-sign", "-binary", "-md", "sha256", "-signer", tmp_path / "c.pem", "-inkey",
        tmp_path / "k.pem", "-in", data, "-outform", "DER", "-out", cms,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    anchor = tmp_path / "c.pem"

    code, report = report_of(cms, "--data", data, "--trust", anchor)
    assert (code, report["format"], report["indication"]) == (0, "cms", "PASSED")
    assert _results(report)["document.data_hash"] == "passed"
    code, out, _err = run("verify", cms, "--data", data, "--trust", anchor)
    assert code == 0 and "format: cms" in " ".join(out.split()) and "通过 PASSED" in out

    code, report = report_of(cms, "--trust", anchor)  # no data
    assert (code, report["sub_indication"]) == (2, "SIGNED_DATA_NOT_FOUND")
    assert _results(report)["document.data_hash"] == "indeterminate"
    assert report_of(cms, "--data", data)[0] == 2  # no anchor
    other = tmp_path / "other.bin"
    other.write_bytes(DATA[:-1] + bytes([DATA[-1] ^ 1]))
    code, report = report_of(cms, "--data", other, "--trust", anchor)
    assert (code, report["sub_indication"]) == (1, "HASH_FAILURE")

    truncated = tmp_path / "truncated.p7s"
    truncated.write_bytes(cms.read_bytes()[:200])
    code, report = report_of(truncated, "--data", data, "--trust", anchor)
    assert (code, report["sub_indication"]) == (1, "FORMAT_FAILURE")
    garbage = tmp_path / "garbage.der"
    garbage.write_bytes(b"\x30\x06\x02\x01\x01\x02\x01\x02")
    code, out, err = run("verify", garbage, "--data", data)
    assert code == 4 and out == "" and "unusable_input" in err
    leaf = tmp_path / "leaf-only.pem"  # an end-entity certificate is no anchor, whatever its key
    leaf.write_bytes(
        run_openssl(
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", tmp_path / "k2.pem", "-subj", "/CN=leaf", "-days", "2", "-addext",
            "basicConstraints=critical,CA:FALSE",
        ).stdout
    )  # fmt: skip
    assert run("verify", cms, "--data", data, "--trust", leaf)[0] == 4


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_registry_cms_offline_and_local(registry_env: Registry, tmp_path: Path) -> None:
    from core.db import transaction
    from signer.cms_signing import seal_cms

    region = _region(registry_env)
    with transaction(region.sessions) as s:
        der = seal_cms(
            s, region.keystore, DATA, es_id=region.es_id, department_id=region.department_id, actor="cli-test"
        )
    cms = tmp_path / "decision.p7s"
    cms.write_bytes(der)
    data = tmp_path / "decision.txt"
    data.write_bytes(DATA)
    root = region.root_pem(tmp_path)
    code, report = report_of(cms, "--data", data, "--trust", root)
    assert (code, report["indication"]) == (0, "PASSED")
    assert report["signatures"][0]["type"] == "sign" and report["signatures"][0]["seal"] is None
    assert _results(report)["signer.certificate_revocation"] == "skipped"
    code, report = report_of(cms, "--data", data, "--local")  # the registry's CRL answers too
    assert (code, _results(report)["signer.certificate_revocation"]) == (0, "passed")
