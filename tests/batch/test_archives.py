"""Input archives are read with the hardened container reader: bombs and unsafe names are refused with
typed errors before anything is stored or signed, through the library and through the CLI."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app
from core.audit import AuditEntry
from core.errors import InputTooLarge, InvalidInput, MalformedData
from signer.batch import inputs_from_paths, read_archive
from signer.batch_models import BatchItem, BatchJob, JobKind

from .conftest import Local, licence_ofd

MIB = 1024 * 1024


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def bomb() -> bytes:
    """8 MiB of zeros in a few KiB: a compression ratio far above the reader's limit (200)."""
    return _zip([("a.ofd", b"x"), ("bomb.ofd", bytes(8 * MIB))])


def test_archive_inputs_and_refusals(helloworld: bytes) -> None:
    ofds = [(f"dir/licence-{n}.ofd", licence_ofd(helloworld, n)) for n in range(3)]
    inputs = read_archive(_zip([*ofds, ("dir/readme.txt", b"not signed"), ("dir/sub/", b"")]))
    assert [(i.key, i.name, i.data) for i in inputs] == [(k, k.rsplit("/", 1)[1], d) for k, d in ofds]
    assert len(read_archive(_zip([*ofds, ("readme.txt", b"x")]), kind=JobKind.SES)) == 4

    with pytest.raises(InputTooLarge):
        read_archive(bomb())
    for hostile in ("../evil.ofd", "/etc/evil.ofd", "a/../../evil.ofd", "C:/evil.ofd", "a\\..\\evil.ofd"):
        with pytest.raises(MalformedData):
            read_archive(_zip([("ok.ofd", b"x"), (hostile, b"y")]))
    with pytest.warns(UserWarning, match="Duplicate name"):
        duplicated = _zip([("same.ofd", b"x"), ("same.ofd", b"y")])
    with pytest.raises(MalformedData):
        read_archive(duplicated)
    with pytest.raises(MalformedData):
        read_archive(b"PK\x03\x04 this is no archive")
    with pytest.raises(InvalidInput):
        read_archive(_zip([("readme.txt", b"x")]))


def test_paths_collect_directories_archives_and_files(helloworld: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.ofd").write_bytes(licence_ofd(helloworld, 1))
    (folder / "sub" / "b.OFD").write_bytes(licence_ofd(helloworld, 2))
    (folder / "notes.txt").write_bytes(b"skip me")
    archive = tmp_path / "more.zip"
    archive.write_bytes(_zip([("c.ofd", licence_ofd(helloworld, 3))]))
    single = tmp_path / "d.ofd"
    single.write_bytes(licence_ofd(helloworld, 4))
    inputs = inputs_from_paths([folder, archive, single], max_bytes=MIB)
    assert [i.key for i in inputs] == ["a.ofd", "sub/b.OFD", "c.ofd", "d.ofd"]
    with pytest.raises(InvalidInput):
        inputs_from_paths([folder, folder], max_bytes=MIB)  # the same keys twice
    with pytest.raises(InputTooLarge):
        inputs_from_paths([single], max_bytes=100)


def _counts(local: Local) -> tuple[int, int, int]:
    with local.reg.sessions() as s:
        return (
            int(s.scalar(select(func.count()).select_from(BatchJob)) or 0),
            int(s.scalar(select(func.count()).select_from(BatchItem)) or 0),
            int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0),
        )


def test_cli_refuses_hostile_archives_before_anything_is_signed(local: Local, tmp_path: Path) -> None:
    before = _counts(local)
    base = ["--seal", local.es_id, "--department", local.department_id, "-o", str(tmp_path / "out")]
    cases = {
        "bomb.zip": (bomb(), "input_too_large"),
        "escape.zip": (_zip([("ok.ofd", b"x"), ("../../escape.ofd", b"y")]), "malformed_data"),
    }
    for name, (data, code) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = CliRunner().invoke(app, ["batch", "run", str(path), *base])
        assert result.exit_code == 2, result.output
        assert code in result.stderr and "Traceback" not in result.output
    assert _counts(local) == before
    assert not (tmp_path / "out").exists()
    blobs = Path(local.env["ESEAL_VAR_DIR"]) / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]
