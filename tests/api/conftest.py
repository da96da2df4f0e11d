"""A real eseal HTTP server on 127.0.0.1 (uvicorn in a thread) over a fresh database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.context import ServiceContext, open_context
from core.db import transaction
from core.settings import Settings
from core.tokens import Role, issue_token
from seal_registry.demo import ensure_demo_data
from seal_registry.pki import init_pades, init_region


class _Quiet:
    def print(self, *objects: object) -> None:
        pass


@dataclass
class LiveServer:
    url: str
    ctx: ServiceContext
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def token(self, role: Role, *, department_id: str | None = None, holder_id: str | None = None) -> str:
        with transaction(self.ctx.sessions) as s:
            _row, clear = issue_token(
                s, name=f"test-{role.value}", role=role, department_id=department_id, holder_id=holder_id
            )
        return clear


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(ctx: ServiceContext) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(ctx.settings, context=ctx), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("eseal test server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(var_dir=tmp_path / "var", database_url=db_url, keystore_passphrase="test passphrase")
    ctx = open_context(settings)
    with transaction(ctx.sessions) as s:
        init_region(s, ctx.keystore, settings, actor="test")
    with transaction(ctx.sessions) as s:
        init_pades(s, ctx.keystore, settings, actor="test")
    ensure_demo_data(ctx.sessions, ctx.keystore, actor="test", console=_Quiet())
    with transaction(ctx.sessions) as s:
        _row, admin = issue_token(s, name="admin", role=Role.ADMIN)
    url, server, thread = start_server(ctx)
    try:
        yield LiveServer(url=url, ctx=ctx, admin_token=admin)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.close()
