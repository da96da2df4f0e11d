"""`eseal seal inspect` on third-party and hostile files, and the department/seal commands end to end."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings
from gmpki import seal as ses
from gmpki.sm3 import sm3

from .conftest import PICTURE, uscc


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _rows(output: str) -> dict[str, str]:
    """The inspect table as {field: value}."""
    rows: dict[str, str] = {}
    key = ""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 2:
            continue
        if cells[0]:
            key = cells[0]
            rows[key] = cells[1]
        elif key:  # a long value folded onto the next line
            rows[key] += cells[1]
    return rows


@pytest.mark.interop
def test_inspect_v4_interop_seal(interop_dir: Path) -> None:
    code, out, err = run("seal", "inspect", str(interop_dir / "ofdrw-gm__UserV4.esl"))
    assert code == 0, err
    rows = _rows(out)
    assert rows["esID"] == "51f044b76510434e9bc67a1185c2fba5"
    assert rows["name"] == "OFD R&W 测试用印章"
    assert rows["version"] == "4 (GB/T 38540)"
    assert rows["header.vid"] == "OFDR&WTest"
    assert rows["type"] == "3" and rows["certListType"] == "1"
    assert rows["file SM3"] == "a2690aeb532bc737d407dece753fc5aef6d31c867d2ce7d7f4f7b2c63235a76f"
    assert rows["certList[0] serial"] == "0x1719D2DAB60"
    assert rows["maker cert serial"] == "0x1719D2E201D"
    assert rows["createDate"] == rows["validStart"] == "2020-04-22 02:09:00Z"
    assert rows["validEnd"] == "2022-04-22 02:09:00Z"
    assert rows["picture.type"] == "PNG" and rows["picture.data"] == "15693 bytes, content: png"
    assert rows["picture.width"] == rows["picture.height"] == "40 mm"
    assert rows["signAlgID"] == "1.2.156.10197.1.501"
    assert rows["maker signature"] == "valid"


@pytest.mark.interop
def test_inspect_v1_interop_seal(interop_dir: Path) -> None:
    code, out, err = run("seal", "inspect", str(interop_dir / "ofdrw-gm__UserV1.esl"))
    assert code == 0, err
    rows = _rows(out)
    assert rows["esID"] == "40C8CDD24DEF43388B86E62CCE1D6832"
    assert rows["version"] == "1 (GM/T 0031)" and rows["name"] == "OFDRW测试用印章"
    assert rows["maker signature"] == "valid"


@pytest.mark.interop
def test_inspect_tax_bureau_seal_with_extension(interop_dir: Path, tmp_path: Path) -> None:
    """The seal embedded in the tax-bureau e-invoice: OFD picture and a vendor extension."""
    with zipfile.ZipFile(interop_dir / "ofdrw-sign__v4signed.ofd") as z:
        signed_value = z.read("Doc_0/Signs/Sign_0/SignedValue.dat")
    seal_file = tmp_path / "tax.esl"
    seal_file.write_bytes(ses.parse_ses_signature(signed_value).seal.raw)
    code, out, err = run("seal", "inspect", str(seal_file))
    assert code == 0, err
    rows = _rows(out)
    assert rows["esID"] == "50011200000399"
    assert rows["picture.type"] == "ofd" and rows["picture.data"].endswith("content: ofd (zip)")
    assert rows["extDatas[0]"].startswith("1.2.156.10197.6.7.2.2.1 ")
    assert rows["maker signature"] == "valid"


@pytest.mark.interop
def test_inspect_reports_a_broken_maker_signature(interop_dir: Path, tmp_path: Path) -> None:
    data = bytearray((interop_dir / "ofdrw-gm__UserV4.esl").read_bytes())
    data[200] ^= 0x01  # inside the picture, so inside the signed SES_SealInfo
    path = tmp_path / "flipped.esl"
    path.write_bytes(bytes(data))
    code, out, _err = run("seal", "inspect", str(path))
    assert code == 0
    assert _rows(out)["maker signature"] == "invalid"


@pytest.mark.interop
@pytest.mark.parametrize(
    "make",
    [
        lambda d: d[: len(d) // 2],  # truncated
        lambda d: d + b"\x00",  # trailing byte
        lambda d: b"\x30\x80" + d[2:],  # indefinite length
        lambda d: b"\x30\x84\xff\xff\xff\xff" + d[4:],  # absurd length
        lambda d: b"",  # empty
        lambda d: b"\x30" * 5000,  # deep nesting
        lambda d: "印章[red]".encode() + d,  # not DER at all
    ],
)
def test_inspect_hostile_files_fail_cleanly(interop_dir: Path, tmp_path: Path, make: object) -> None:
    assert callable(make)
    path = tmp_path / "hostile.esl"
    path.write_bytes(make((interop_dir / "ofdrw-gm__UserV4.esl").read_bytes()))
    code, out, err = run("seal", "inspect", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误 error (")
    assert "Traceback" not in out + err


@pytest.mark.interop
def test_inspect_refuses_a_signature_file(interop_dir: Path) -> None:
    code, _out, err = run("seal", "inspect", str(interop_dir / "ofdrw-gm__SignedValueV4.dat"))
    assert code == 2 and "malformed_data" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    var = tmp_path / "var"
    monkeypatch.setenv("ESEAL_VAR_DIR", str(var))
    monkeypatch.setenv("ESEAL_DATABASE_URL", db_url)
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "cli test passphrase")
    get_settings.cache_clear()
    yield var
    get_settings.cache_clear()


# The commands only call the services tested on both backends; one backend keeps this test short.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_department_and_seal_commands(cli_env: Path, tmp_path: Path) -> None:
    assert run("init")[0] == 0
    code, out, err = run("department", "add", "命令行测试局", uscc(77))
    assert code == 0, err
    code, out, err = run("department", "list")
    assert code == 0 and "命令行" in out
    dept_id = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)[0]
    assert run("ca", "issue-department", dept_id)[0] == 0
    picture = tmp_path / "seal.png"
    picture.write_bytes(PICTURE)
    code, out, err = run(
        "seal",
        "apply",
        "--department",
        dept_id,
        "--type",
        "contract",
        "--picture",
        str(picture),
        "--reason",
        "新设",
    )
    assert code == 0, err
    es_id = re.findall(r"11000002\d{6}", out)[0]
    for action in ("review", "make", "file", "issue"):
        code, out, err = run("seal", action, es_id)
        assert code == 0, err
    assert "已发放" in out and "issued" in out
    code, out, err = run("seal", "issue", es_id)
    assert code == 2 and "illegal_transition" in err and "Traceback" not in out + err
    code, out, err = run("seal", "cancel", es_id)
    assert code == 2 and "invalid_input" in err  # a reason is required
    exported = tmp_path / "out.esl"
    code, out, err = run("seal", "export", es_id, "-o", str(exported))
    assert code == 0, err
    parsed = ses.parse_seal(exported.read_bytes())
    assert parsed.es_id == es_id and ses.verify_maker_signature(parsed)
    code, out, err = run("seal", "inspect", str(exported))
    assert _rows(out)["file SM3"] == sm3(exported.read_bytes()).hex()
    code, out, err = run("seal", "cancel", es_id, "--reason", "撤销")
    assert code == 0 and "已注销" in out and "cancelled" in out
    code, out, err = run("seal", "show", es_id)
    assert code == 0 and "撤销" in out and "cli:" in out and es_id in out
    code, out, err = run("seal", "list", "--state", "cancelled")
    assert code == 0 and es_id in out
    assert run("seal", "list", "--state", "bogus")[0] == 2
