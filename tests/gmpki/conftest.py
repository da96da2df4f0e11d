"""Fixtures for the PKI tests: a small region hierarchy, the standard vectors, the OpenSSL CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gmpki import ca, sm2
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, now_utc
from tests.conftest import require_or_skip

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Party:
    key: sm2.SM2PrivateKey
    signer: InMemorySigner
    cert: Certificate


@dataclass(frozen=True)
class Pki:
    now: datetime
    root: Party
    sub: Party
    maker: Party
    department: Party
    tsa: Party
    service: Party


def new_party_key() -> tuple[sm2.SM2PrivateKey, InMemorySigner]:
    key = sm2.SM2PrivateKey.generate()
    return key, InMemorySigner(key)


@pytest.fixture(scope="session")
def pki() -> Pki:
    now = now_utc()
    rk, rs = new_party_key()
    root = ca.issue_root_ca(
        rs,
        build_name("测试省电子印章根CA", organization="测试省印章管理中心", province="测试省"),
        not_before=now - timedelta(days=30),
        validity=timedelta(days=3650),
    )
    sk, ss = new_party_key()
    start = now - timedelta(days=10)
    sub = ca.issue_subordinate_ca(
        rs,
        root,
        sk.public_key,
        build_name("测试省电子印章签发CA", organization="测试省印章管理中心"),
        not_before=now - timedelta(days=20),
    )
    mk, ms = new_party_key()
    maker = ca.issue_seal_maker_certificate(
        ss,
        sub,
        mk.public_key,
        build_name("测试省电子印章制作系统", organization="测试省印章管理中心"),
        not_before=start,
    )
    dk, ds = new_party_key()
    department = ca.issue_department_certificate(
        ss,
        sub,
        dk.public_key,
        build_name(
            "某市市场监督管理局", organization="某市人民政府", social_credit_code="11110000000000000X"
        ),
        not_before=start,
    )
    tk, ts = new_party_key()
    tsa = ca.issue_tsa_certificate(ss, sub, tk.public_key, build_name("测试省时间戳服务"), not_before=start)
    vk, vs = new_party_key()
    service = ca.issue_service_certificate(
        ss, sub, vk.public_key, build_name("eseal 审计签名"), not_before=start
    )
    return Pki(
        now=now,
        root=Party(rk, rs, root),
        sub=Party(sk, ss, sub),
        maker=Party(mk, ms, maker),
        department=Party(dk, ds, department),
        tsa=Party(tk, ts, tsa),
        service=Party(vk, vs, service),
    )


def openssl_path() -> str | None:
    path = shutil.which("openssl")
    if path is None:
        return None
    version = subprocess.run([path, "version"], capture_output=True, text=True, check=False).stdout
    return path if version.startswith("OpenSSL 3.") else None


@pytest.fixture(scope="session")
def openssl() -> str:
    path = openssl_path()
    require_or_skip(path is not None, "OpenSSL 3 command line tool not found")
    assert path is not None
    return path


def run_openssl(
    openssl: str, *args: str | Path, input_data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [openssl, *map(str, args)], input=input_data, capture_output=True, check=False, timeout=60
    )


@pytest.fixture(scope="session")
def openssl_legacy(openssl: str) -> str:
    """The CLI with the legacy provider loadable (RC2); skipped (failed under CI) otherwise."""
    probe = run_openssl(openssl, "list", "-cipher-algorithms", "-provider", "legacy")
    require_or_skip(probe.returncode == 0 and b"RC2" in probe.stdout, "OpenSSL legacy provider not available")
    return openssl


def forge_certificate(template: Certificate, signer: Any, **overrides: Any) -> Certificate:
    """Re-sign ``template``'s tbsCertificate with some fields replaced.

    Builds certificates the builder refuses to make (a CA without keyCertSign, an unknown critical
    extension, an issuer name with a foreign key), so that the validator can be tested on them.
    """
    from asn1crypto import x509 as asn1_x509

    from gmpki.x509 import load_certificate_der, sign_tbs, sm2_signature_algorithm

    src = asn1_x509.TbsCertificate.load(template.tbs_der)
    names = (
        "version",
        "serial_number",
        "signature",
        "issuer",
        "validity",
        "subject",
        "subject_public_key_info",
        "extensions",
    )
    fields = {name: src[name] for name in names}
    fields.update(overrides)
    tbs = asn1_x509.TbsCertificate(fields)
    tbs_der = tbs.dump(force=True)
    signature = sign_tbs(signer, tbs_der)
    cert = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": sm2_signature_algorithm(),
            "signature_value": signature,
        }
    )
    return load_certificate_der(cert.dump(force=True))


def replace_extension(
    template: Certificate, oid_name: str, value: Any, critical: bool, **more: Any
) -> list[Any]:
    """The template's extensions with ``oid_name`` (and any ``more={name: (value, critical)}``)
    replaced or appended, as a list for :func:`forge_certificate`."""
    from asn1crypto import x509 as asn1_x509

    changes = {oid_name: (value, critical), **more}
    src = asn1_x509.TbsCertificate.load(template.tbs_der)
    out = [e for e in src["extensions"] if e["extn_id"].native not in changes]
    for name, (val, crit) in changes.items():
        out.append(asn1_x509.Extension({"extn_id": name, "critical": crit, "extn_value": val}))
    return out
