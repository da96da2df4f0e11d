"""The `eseal` CLI end to end on a fresh embedded deployment: init, CA, keys, audit verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings
from gmpki.x509 import load_certificate


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    var = tmp_path / "var"
    monkeypatch.setenv("ESEAL_VAR_DIR", str(var))
    monkeypatch.delenv("ESEAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ESEAL_KEYSTORE_PASSPHRASE", raising=False)
    get_settings.cache_clear()
    yield var
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_init_is_idempotent_and_prints_admin_token_once(var_dir: Path) -> None:
    code, output = run("init", "--demo")
    assert code == 0, output
    assert "es_" in output and (var_dir / "keystore.passphrase").stat().st_mode & 0o777 == 0o600
    code, again = run("init", "--demo")
    assert code == 0 and "es_" not in again


def test_ca_export_and_audit_verify_detects_tampering(var_dir: Path, tmp_path: Path) -> None:
    assert run("init", "--demo")[0] == 0
    pem = tmp_path / "root.pem"
    code, output = run("ca", "export", "1", "-o", str(pem))
    assert code == 0, output
    root = load_certificate(pem.read_bytes())
    assert root.is_ca and root.verify_signature(root.public_key)

    code, output = run("audit", "sign-head")
    assert code == 0, output
    code, output = run("audit", "verify")
    assert code == 0 and "intact" in output

    with sqlite3.connect(var_dir / "eseal.db") as db:
        db.execute("delete from audit_entries where seq = 2")
    code, output = run("audit", "verify")
    assert code == 1
    assert "seq 2" in output


def test_init_without_passphrase_outside_demo_is_refused(var_dir: Path) -> None:
    code, output = run("init")
    assert code == 2 and "configuration_error" in output and "ESEAL_KEYSTORE_PASSPHRASE" in output
    assert "Traceback" not in output


def test_keys_and_errors_are_one_line(var_dir: Path) -> None:
    assert run("init", "--demo")[0] == 0
    code, output = run("keys", "generate", "extra-p256", "--algorithm", "ec-p256")
    assert code == 0, output
    code, output = run("keys", "list")
    assert code == 0 and "extra-p256" in output
    code, output = run("keys", "generate", "extra-p256", "--algorithm", "ec-p256")
    assert code == 2 and "Traceback" not in output and "conflict" in output


def test_ca_crl_interop_lists_a_revoked_pades_certificate(var_dir: Path, tmp_path: Path) -> None:
    from asn1crypto import crl as asn1_crl
    from asn1crypto import pem as asn1_pem

    assert run("init", "--demo")[0] == 0
    with sqlite3.connect(var_dir / "eseal.db") as db:
        rows = dict(db.execute("select role, id from pki_certificates where role like 'pades_%'").fetchall())
        (serial,) = db.execute("select serial_hex from pki_certificates where role = 'pades_tsa'").fetchone()
    code, output = run("ca", "revoke", str(rows["pades_tsa"]), "--reason", "superseded")
    assert code == 0, output
    code, output = run("ca", "revoke", str(rows["pades_root"]))
    assert code == 2 and "conflict" in output
    out = tmp_path / "interop.pem"
    code, output = run("ca", "crl", "--interop", "-o", str(out))
    assert code == 0, output
    kind, _headers, der = asn1_pem.unarmor(out.read_bytes())
    crl = asn1_crl.CertificateList.load(der)
    assert kind == "X509 CRL" and crl["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    (entry,) = crl["tbs_cert_list"]["revoked_certificates"]
    assert entry["user_certificate"].native == int(serial, 16)
    assert entry.crl_reason_value.native == "superseded"
    code, output = run("ca", "crl")  # the SM2 CRL does not list it
    assert code == 0 and "BEGIN X509 CRL" in output
    sm2 = asn1_crl.CertificateList.load(asn1_pem.unarmor(output.encode())[2])
    assert not sm2["tbs_cert_list"]["revoked_certificates"]
