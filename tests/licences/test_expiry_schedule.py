"""Scheduled expiry in the running service: licences past their validity become expired (05) without
any call, once each (one event, one audit entry) even when two sweeps meet on the same rows, with
``eseal serve --workers 2``; a failing sweep is logged and the next one runs; shutdown is clean."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from api import licence_expiry
from api.context import open_context
from core.audit import AuditEntry, verify_chain
from core.db import transaction
from licence_store import lifecycle
from licence_store.metadata import today_in_china
from licence_store.models import Licence, LicenceEvent
from tests.api.conftest import start_server

from .conftest import Store

PASSPHRASE = "registry test passphrase"  # the registry fixture's key store


def _issue_past(store: Store, first: int, count: int) -> list[str]:
    today = today_in_china()
    return [
        store.issue(
            n,
            valid_from=(today - dt.timedelta(days=400)).isoformat(),
            valid_until=(today - dt.timedelta(days=1 + n % 3)).isoformat(),
        ).identifier
        for n in range(first, first + count)
    ]


def _statuses(store: Store) -> dict[str, str]:
    with store.sessions() as s:
        return {ident: status for ident, status in s.execute(select(Licence.identifier, Licence.status))}


def _expiry_records(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    """Per licence identifier: its ``licence.expired`` audit entries and its expire events."""
    with store.sessions() as s:
        audits: dict[str, int] = {}
        for entry in s.scalars(select(AuditEntry).where(AuditEntry.action == "licence.expired")):
            ident = entry.details_dict()["identifier"]
            audits[ident] = audits.get(ident, 0) + 1
        events = {
            ident: int(n)
            for ident, n in s.execute(
                select(Licence.identifier, func.count())
                .join(LicenceEvent, LicenceEvent.licence_id == Licence.id)
                .where(LicenceEvent.action == "expire")
                .group_by(Licence.identifier)
            )
        }
    return audits, events


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_sweeps_meeting_on_the_same_rows_expire_each_once(store: Store) -> None:
    due = _issue_past(store, 1, 4)
    current = store.issue(9).identifier
    locked, release = threading.Event(), threading.Event()
    results: dict[str, list[str]] = {}
    failures: list[BaseException] = []

    def first() -> None:
        try:
            with transaction(store.sessions) as s:
                results["first"] = lifecycle.expire_due(s)
                locked.set()
                assert release.wait(30)
        except BaseException as exc:
            failures.append(exc)
            locked.set()

    def second() -> None:
        try:
            with transaction(store.sessions) as s:
                results["second"] = lifecycle.expire_due(s)
        except BaseException as exc:
            failures.append(exc)

    one = threading.Thread(target=first)
    one.start()
    assert locked.wait(30)
    # The second sweep reads the rows as still due (the first has not committed) and then waits
    # for the first one's locks; once it gets them the rows are expired already.
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)
    assert two.is_alive(), "the second sweep should be waiting for the first one's locks"
    release.set()
    one.join(30)
    two.join(30)
    assert not failures, failures
    assert sorted(results["first"]) == sorted(due) and results["second"] == []
    assert _expiry_records(store) == ({i: 1 for i in due}, {i: 1 for i in due})
    statuses = _statuses(store)
    assert all(statuses[i] == "05" for i in due) and statuses[current] == "01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_worker_processes_expire_each_licence_once(store: Store) -> None:
    due = _issue_past(store, 1, 8)
    current = store.issue(20).identifier
    withheld = store.issue(30).identifier
    with transaction(store.sessions) as s:
        lifecycle.withhold(s, withheld, actor="t", reason="暂扣")
        # Its validity ends while it is withheld (a withheld licence expires too).
        s.execute(
            update(Licence)
            .where(Licence.identifier == withheld)
            .values(valid_until=today_in_china() - dt.timedelta(days=1))
        )
    env = dict(os.environ)
    env.update(
        {
            "ESEAL_VAR_DIR": str(store.reg.settings.var_dir),
            "ESEAL_DATABASE_URL": store.reg.url,
            "ESEAL_KEYSTORE_PASSPHRASE": PASSPHRASE,
            "ESEAL_LICENCE_EXPIRY_INTERVAL_S": "0.5",
            "ESEAL_FEDERATION_SYNC_INTERVAL_S": "0",
        }
    )
    command = [
        str(Path(sys.executable).with_name("eseal")),
        "serve",
        "--workers",
        "2",
        "--port",
        str(_free_port()),
        "--no-access-log",
    ]
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(
            lambda: all(_statuses(store)[i] == "05" for i in [*due, withheld]) or server.poll() is not None,
            90,
            "the scheduled sweep",
        )
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        time.sleep(2.0)  # several more rounds of both workers, which must find nothing to do
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, output
    assert "Traceback" not in output, output
    expected = {i: 1 for i in [*due, withheld]}
    assert _expiry_records(store) == (expected, expected)
    assert _statuses(store)[current] == "01"
    with store.sessions() as s:
        assert verify_chain(s).ok


def test_in_process_scheduler_survives_a_failed_sweep_and_stops_cleanly(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    due = _issue_past(store, 1, 2)
    calls: list[int] = []
    real = licence_expiry.expire_due

    def flaky(*args: object, **kwargs: object) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(licence_expiry, "expire_due", flaky)
    settings = store.reg.settings.model_copy(
        update={"keystore_passphrase": PASSPHRASE, "licence_expiry_interval_s": 0.2}
    )
    ctx = open_context(settings)
    caplog.set_level(logging.INFO, logger="eseal.licence")
    _url, server, thread = start_server(ctx)
    try:
        _wait_for(lambda: all(_statuses(store)[i] == "05" for i in due), 60, "the scheduled sweep")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        ctx.close()
    assert not thread.is_alive()
    failed = [r for r in caplog.records if r.getMessage() == "licence expiry sweep failed"]
    assert failed and failed[0].exc_info is not None
    assert any("2 licence(s) expired" in r.getMessage() for r in caplog.records)
    assert _expiry_records(store) == ({i: 1 for i in due}, {i: 1 for i in due})


def test_interval_zero_disables_the_scheduler(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[float] = []

    async def record(_ctx: object, interval_s: float) -> None:
        started.append(interval_s)

    monkeypatch.setattr(licence_expiry, "run_periodically", record)
    for interval in (0.0, 7.0):
        settings = store.reg.settings.model_copy(
            update={"keystore_passphrase": PASSPHRASE, "licence_expiry_interval_s": interval}
        )
        ctx = open_context(settings)
        _url, server, thread = start_server(ctx)
        server.should_exit = True
        thread.join(timeout=30)
        ctx.close()
    assert started == [7.0]
