"""Headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``).

The pipe needs no websocket library: Chromium reads NUL-terminated JSON commands on fd 3 and writes
replies and events on fd 4. A bash ``exec`` moves the two pipe ends onto those numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 30.0


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    """One browser, one page: enough to load a URL, fill a file input, submit and read the DOM."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        command = " ".join(_quote(a) for a in args) + f" 3<&{to_browser_r} 4>&{from_browser_w}"
        self._proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session: str | None = None
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    # -- transport --
    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._lock.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> Any:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        with self._lock:
            while ident not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._proc.poll() is not None:
                    raise CdpError(f"no reply to {method}")
                self._lock.wait(remaining)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, *, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        with self._lock:
            while True:
                for event in self._events[since:]:
                    if event.get("method") == method:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CdpError(f"no {method} event")
                self._lock.wait(remaining)

    def mark(self) -> int:
        with self._lock:
            return len(self._events)

    # -- page --
    def open(self, url: str) -> None:
        mark = self.mark()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", since=mark)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def set_files(self, selector: str, *paths: Path) -> None:
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.call("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise CdpError(f"no element {selector}")
        self.call("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]})

    def click_and_wait(self, selector: str) -> None:
        """Click like a user (the page has no script; a click is what submits the form)."""
        mark = self.mark()
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        self.wait_event("Page.loadEventFired", since=mark)

    def close(self) -> None:
        with suppress(CdpError):
            self.call("Browser.close", session=False)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


@contextmanager
def browser(executable: str) -> Iterator[Browser]:
    with tempfile.TemporaryDirectory(prefix="eseal-chromium-") as profile:
        b = Browser(executable, Path(profile))
        try:
            yield b
        finally:
            b.close()
