"""``eseal licence …`` against a local installation (SQLite): catalogue, issue, check, lifecycle,
grants and copies, the access log and a stock import; refusals exit 2 with a one-line error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.context import open_context
from core.settings import get_settings
from hsm_adapters.soft import SoftKeyStore
from seal_registry.lifecycle import SealState
from tests.registry.conftest import Registry, uscc
from verify import FileTrustSource

from .conftest import HOLDER_USCC, SCHEMA, TYPE_CODE, assert_passed, metadata, zip_entries


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Local:
    department_id: str
    platform_id: str
    service_id: str
    service_es_id: str
    trust: FileTrustSource


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    monkeypatch.setenv("ESEAL_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ESEAL_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "cli licence passphrase")
    get_settings.cache_clear()
    assert run("init")[0] == 0
    ctx = open_context(get_settings())
    try:
        keystore = ctx.keystore
        assert isinstance(keystore, SoftKeyStore)
        reg = Registry(ctx.settings.resolved_database_url(), ctx.sessions, keystore, ctx.settings, None, None)  # type: ignore[arg-type]
        dept, cert = reg.new_department(1)
        reg.department, reg.certificate = dept, cert  # type: ignore[assignment]
        reg.seal_in(SealState.ISSUED, seal_type_key="official")
        platform, _ = reg.new_department(2)
        service, _ = reg.new_department(5)
        seal = reg.seal_in(SealState.ISSUED, seal_type_key="official", department_id=service.id)
        from tests.signer.conftest import trust_of

        yield Local(dept.id, platform.id, service.id, seal.es_id, trust_of(reg))
    finally:
        ctx.close()
        get_settings.cache_clear()


def _json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _identifier(out: str) -> str:
    for line in out.splitlines():
        if "1.2.156.3005.2." in line:
            return line.split(": ", 1)[1].strip()
    raise AssertionError(out)


def test_licence_commands(local: Local, tmp_path: Path) -> None:
    type_file = _json(
        tmp_path / "type.json",
        {
            "type_code": TYPE_CODE,
            "name": "营业执照",
            "defining_authority_name": "国家市场监督管理总局",
            "metadata_schema": SCHEMA,
            "seal_type": "official",
            "default_valid_days": 3650,
        },
    )
    code, out, err = run("licence", "type-add", type_file)
    assert code == 0, err
    code, out, _ = run("licence", "type-list")
    assert code == 0 and TYPE_CODE in out and "营业执照" in out

    bad = metadata(1)
    bad["fields"] = {"company_type": "x", "registered_capital": -1}
    code, out, err = run(
        "licence",
        "issue",
        "--type",
        TYPE_CODE,
        "--department",
        local.department_id,
        "--metadata",
        _json(tmp_path / "bad.json", bad),
    )
    assert code == 2 and "licence_metadata_invalid" in err and "fields.registered_capital" in err

    ofd = tmp_path / "licence.ofd"
    code, out, err = run(
        "licence",
        "issue",
        "--type",
        TYPE_CODE,
        "--department",
        local.department_id,
        "--metadata",
        _json(tmp_path / "m.json", metadata(1)),
        "-o",
        str(ofd),
    )
    assert code == 0, err
    ident = _identifier(out)
    assert_passed(ofd.read_bytes(), local.trust)

    code, out, err = run("licence", "check", ident, "--file", str(ofd))
    assert code == 0, err
    result = json.loads(out)
    assert result["valid"] is True and result["file_matches"] is True
    code, out, _ = run("licence", "check", ident[:-1] + ("Z" if ident[-1] != "Z" else "Y"))
    assert code == 2

    code, _out, err = run("licence", "withhold", ident)
    assert code == 2 and "reason" in err
    assert run("licence", "withhold", ident, "--reason", "调查中")[0] == 0
    code, out, _ = run("licence", "check", ident)
    assert code == 1 and json.loads(out)["status"] == "02"
    assert run("licence", "return", ident)[0] == 0

    code, out, err = run(
        "licence", "change", ident, "--changes", _json(tmp_path / "c.json", {"holder_name": "新名称有限公司"})
    )
    assert code == 0, err
    new = _identifier(out)
    code, out, _ = run("licence", "check", ident)
    assert code == 1 and json.loads(out)["superseded_by"] == new

    assert (
        run("licence", "service-seal", "--department", local.service_id, "--seal", local.service_es_id)[0]
        == 0
    )
    code, out, err = run(
        "licence",
        "grant",
        new,
        "--holder",
        HOLDER_USCC,
        "--department",
        local.platform_id,
        "--purpose",
        "年检",
        "--until",
        "2099-01-01T00:00:00+08:00",
    )
    assert code == 2 and "invalid_input" in err  # more than ten years ahead
    copy = tmp_path / "copy.ofd"
    code, out, err = run("licence", "download", new, "--copy", "--purpose", "档案留存", "-o", str(copy))
    assert code == 0, err
    assert_passed(copy.read_bytes(), local.trust)
    assert "Doc_0/Attachs/licence.ofd" in zip_entries(copy.read_bytes())

    code, out, _ = run("licence", "log", "--identifier", new)
    assert code == 0 and "copy" in out and "verify" in out
    code, out, _ = run("licence", "search", "--holder", HOLDER_USCC)
    assert code == 0 and new in out

    stock = tmp_path / "stock.csv"
    stock.write_text(
        "licence_number,holder_name,holder_code,holder_code_type,company_type,registered_capital\n"
        + "".join(f"C{i},存量{i},{uscc(500 + i)},uscc,有限责任公司,{i}\n" for i in range(1, 4)),
        encoding="utf-8",
    )
    code, out, err = run(
        "licence",
        "import",
        str(stock),
        "--type",
        TYPE_CODE,
        "--department",
        local.department_id,
        "--workers",
        "1",
    )
    assert code == 0, err
    assert "issued 3, failed 0, total 3" in out

    code, _out, err = run("licence", "revoke", new, "--reason", "撤销")
    assert code == 0, err
    code, out, _ = run("licence", "check", new)
    assert code == 1 and json.loads(out)["status"] == "03"
    code, _out, err = run("licence", "revoke", new, "--reason", "again")
    assert code == 2 and "illegal_transition" in err and "Traceback" not in err
