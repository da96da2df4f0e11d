"""Settings come from ESEAL_* variables and default to an embedded SQLite database under var/."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No stray .env or ESEAL_* from the developer's shell may leak into these checks.
    monkeypatch.chdir(tmp_path)
    import os

    for name in list(os.environ):
        if name.startswith("ESEAL_"):
            monkeypatch.delenv(name)


def test_defaults_to_sqlite_under_var() -> None:
    s = Settings()
    assert s.var_dir == Path("var")
    assert s.database_url is None
    assert s.resolved_database_url() == "sqlite:///var/eseal.db"
    assert s.keystore == "soft" and s.audit_head_sign_interval_s == 60.0


def test_reads_eseal_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ESEAL_DATABASE_URL", "postgresql+psycopg://u@db/eseal")
    monkeypatch.setenv("ESEAL_AUDIT_HEAD_SIGN_INTERVAL_S", "7")
    monkeypatch.setenv("ESEAL_REGION_CODE", "310000")
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE", "s3cret")
    s = Settings()
    assert s.resolved_database_url() == "postgresql+psycopg://u@db/eseal"
    assert (s.audit_head_sign_interval_s, s.region_code, s.resolved_passphrase()) == (7, "310000", "s3cret")


def test_var_dir_moves_the_default_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ESEAL_VAR_DIR", str(tmp_path / "data"))
    assert Settings().resolved_database_url() == f"sqlite:///{(tmp_path / 'data' / 'eseal.db').as_posix()}"


def test_passphrase_file_first_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("口令 line one\nsecond\n", encoding="utf-8")
    monkeypatch.setenv("ESEAL_KEYSTORE_PASSPHRASE_FILE", str(secret))
    assert Settings().resolved_passphrase() == "口令 line one"


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ESEAL_REGION_NAME=上海\n", encoding="utf-8")
    assert Settings().region_name == "上海"
