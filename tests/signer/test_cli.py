"""`eseal sign ofd|ses|digest` against a local installation (SQLite): results verify, refusals exit 2
without touching the output file, and no temporary file is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.context import open_context
from core.db import transaction
from core.settings import get_settings
from gmpki import seal as ses
from gmpki.sm3 import sm3
from hsm_adapters.soft import SoftKeyStore
from seal_registry.departments import create_department
from seal_registry.lifecycle import SealState
from seal_registry.pki import issue_department_certificate
from tests.registry.conftest import ACTOR, Registry, uscc
from verify import FileTrustSource, Indication, verify_bytes

from .conftest import trust_of, two_page_ofd

pytestmark = pytest.mark.interop


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Local:
    es_id: str
    department_id: str
    trust: FileTrustSource


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    monkeypatch.setenv("ESEAL_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ESEAL_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "cli signer passphrase")
    get_settings.cache_clear()
    assert run("init")[0] == 0
    ctx = open_context(get_settings())
    try:
        with transaction(ctx.sessions) as s:
            dept = create_department(s, name="命令行签章局", uscc=uscc(88), region_code="110000", actor=ACTOR)
        with transaction(ctx.sessions) as s:
            cert = issue_department_certificate(s, ctx.keystore, dept, actor=ACTOR)
        keystore = ctx.keystore
        assert isinstance(keystore, SoftKeyStore)
        reg = Registry(ctx.settings.resolved_database_url(), ctx.sessions, keystore, ctx.settings, dept, cert)
        seal = reg.seal_in(SealState.ISSUED)
        yield Local(seal.es_id, dept.id, trust_of(reg))
    finally:
        ctx.close()
        get_settings.cache_clear()


def test_sign_commands(local: Local, helloworld: bytes, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    source = work / "hello.ofd"
    source.write_bytes(helloworld)
    base = ["--seal", local.es_id, "--department", local.department_id]

    sealed = work / "sealed.ofd"
    code, out, err = run(
        "sign", "ofd", str(source), *base, "--page", "1", "--x", "50", "--y", "60", "-o", str(sealed)
    )
    assert code == 0, err
    assert verify_bytes(sealed.read_bytes(), trust=local.trust).indication is Indication.PASSED
    assert sm3(sealed.read_bytes()).hex() in out

    riding_in = work / "two.ofd"
    riding_in.write_bytes(two_page_ofd(helloworld))
    locked = work / "locked.ofd"
    code, _out, err = run(
        "sign", "ofd", str(riding_in), *base, "--riding", "--protect-all", "-o", str(locked)
    )
    assert code == 0, err
    assert verify_bytes(locked.read_bytes(), trust=local.trust).indication is Indication.PASSED

    # Refused: the output file keeps its old content (here: a sentinel) and nothing else appears.
    target = work / "again.ofd"
    target.write_bytes(b"sentinel")
    code, out, err = run("sign", "ofd", str(locked), *base, "-o", str(target))
    assert code == 2 and "document_fully_protected" in err and "Traceback" not in out + err
    assert target.read_bytes() == b"sentinel"
    code, _out, err = run(
        "sign", "ofd", str(source), *base, "--keyword", "OFD", "--x", "1", "--y", "2", "-o", str(target)
    )
    assert code == 2 and "invalid_input" in err and target.read_bytes() == b"sentinel"
    code, _out, err = run("sign", "ofd", str(source), "--seal", local.es_id, "-o", str(target))
    assert code == 2 and "--department" in err

    data = work / "合同.txt"
    data.write_bytes(b"contract text " * 1000)
    signature = work / "contract.ses"
    code, _out, err = run("sign", "ses", str(data), *base, "-o", str(signature))
    assert code == 0, err
    parsed = ses.parse_ses_signature(signature.read_bytes())
    assert (
        parsed.data_hash == sm3(data.read_bytes()) and parsed.property_info == "file:%E5%90%88%E5%90%8C.txt"
    )
    report = verify_bytes(signature.read_bytes(), detached_data=data.read_bytes(), trust=local.trust)
    assert report.indication is Indication.PASSED

    digest = sm3(b"remote document")
    signed_digest = work / "digest.ses"
    code, _out, err = run(
        "sign", "digest", digest.hex(), *base, "--property-info", "urn:x", "-o", str(signed_digest)
    )
    assert code == 0, err
    parsed = ses.parse_ses_signature(signed_digest.read_bytes())
    assert parsed.data_hash == digest and parsed.property_info == "urn:x"
    code, _out, err = run("sign", "digest", "abc", *base, "-o", str(work / "bad.ses"))
    assert code == 2 and not (work / "bad.ses").exists()

    leftovers = [p.name for p in work.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
