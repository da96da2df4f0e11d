"""``eseal peer …`` and ``eseal trust-list …`` against a real peer server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings
from verify.status_snapshot import canonical_bytes

from .conftest import Region, serving


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli_a(region_a: Region, monkeypatch: pytest.MonkeyPatch) -> Iterator[Region]:
    """The CLI pointed at region A's database and key store."""
    settings = region_a.ctx.settings
    monkeypatch.setenv("ESEAL_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("ESEAL_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "federation test passphrase")
    monkeypatch.setenv("ESEAL_REGION_CODE", region_a.code)
    monkeypatch.setenv("ESEAL_REGION_NAME", region_a.name)
    monkeypatch.setenv("ESEAL_FEDERATION_FETCH_TIMEOUT_S", "3")
    get_settings.cache_clear()
    yield region_a
    get_settings.cache_clear()


def test_peer_commands(cli_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    with serving(region_b):
        code, out, err = run("peer", "add", f"{region_b.url}/v1/trust-list", "--pin", "00" * 32)
        assert code == 2 and "unpinned key" in err  # a wrong pin: refused before anything is stored
        code, out, err = run("peer", "add", f"{region_b.url}/v1/trust-list", "--pin", region_b.registry_sm3())
        assert code == 0, out + err
        assert "320000" in out and "updated" in out
        code, out, _ = run("peer", "list")
        assert code == 0 and "320000" in out and "江苏省" in out
        code, out, _ = run("peer", "sync")
        assert code == 0 and "not_modified" in out
        code, out, _ = run("peer", "map-type", "320000", "02", "02", "--purpose", "contract")
        assert code == 0 and "local 02" in out
        code, out, _ = run("peer", "show", "320000")
        assert code == 0 and seal.es_id in out and region_b.registry_sm3() in out and "02 → local 02" in out
    code, out, _ = run("peer", "sync", "320000")  # B is down: reported, exit 1, last good list kept
    assert code == 1 and "failed" in out
    code, out, _ = run("peer", "show", "320000")
    assert code == 0 and seal.es_id in out
    assert run("peer", "remove", "320000")[0] == 0
    code, _, err = run("peer", "show", "320000")
    assert code == 2 and "not_found" in err


def test_trust_list_export_and_inspect(cli_a: Region, region_b: Region, tmp_path: Path) -> None:
    exported = tmp_path / "a-list.json"
    code, _out, err = run("trust-list", "export", exported)
    assert code == 0 and exported.exists(), err
    code, fingerprint, _ = run("trust-list", "fingerprint")
    assert code == 0 and fingerprint.strip() == cli_a.registry_sm3()
    code, out, _ = run("trust-list", "inspect", exported, "--pin", cli_a.registry_sm3())
    assert code == 0 and "北京市 Beijing" in out and "signer pinned" in out
    code, out, err = run("trust-list", "inspect", exported, "--pin", region_b.registry_sm3())
    assert code == 1 and "unpinned key" in err
    # Any list can be inspected; a tampered one is printed and fails the check
    envelope = json.loads(exported.read_bytes())
    doc = json.loads(base64.b64decode(envelope["payload"]))
    doc["sequence"] += 1
    envelope["payload"] = base64.b64encode(canonical_bytes(doc)).decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(canonical_bytes(envelope))
    code, out, err = run("trust-list", "inspect", tampered)
    assert code == 1 and "北京市 Beijing" in out and "does not verify" in err
    (tmp_path / "junk.json").write_bytes(b"\x00junk")
    code, _, err = run("trust-list", "inspect", tmp_path / "junk.json")
    assert code == 1 and "malformed_data" in err
    code, out, _ = run("trust-list", "export", "--since", "0")
    assert code == 0 and json.loads(out)["payload"]
