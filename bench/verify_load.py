"""Verification through the HTTP API under load: ``eseal serve`` with N workers, driven by wrk.

Usage: python bench/verify_load.py [--seconds 10] [--connections 32] [--workers 2] [--keep DIR]

1. Builds a throw-away region in a temporary directory (SQLite, soft key store): the region CA, the
   demo department and its certificate, one issued seal; seals ofdrw's one-page helloworld.ofd with
   it through ``signer.ofd_sealing.seal_ofd`` (what ``POST /v1/sign/ofd`` does).
2. Starts ``eseal serve --workers N`` on 127.0.0.1 (a free port, loopback only) and waits for it.
3. Checks one ``POST /v1/verify`` of the sealed file is PASSED (trust from the running registry:
   its root, its CRL and the seal's live status, as any client gets).
4. Runs ``wrk --latency`` with a Lua script posting the file as the raw body, ``--connections``
   connections for ``--seconds`` seconds, and prints throughput and latency percentiles, next to
   ``openssl speed -multi N sm2`` verifies/s measured in the same run.
5. Stops the server (SIGTERM to its process group, SIGKILL after a grace period) and removes the
   directory. Everything is bounded in time; wrk comes from the system (``apt-get install wrk``).

wrk and the server share the machine: on a 2-core host the figures are what 2 cores give with the
load generator's own (small) share taken out of them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.native_reference import openssl_sm2

HELLOWORLD = Path(__file__).resolve().parents[2] / "shared" / "interop" / "ofdrw-sign__helloworld.ofd"
ACTOR = "bench:verify_load"
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0

LUA = """
local f = assert(io.open(os.getenv("ESEAL_BENCH_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Accept"] = "application/json"
"""


def _picture() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((8, 8, 152, 152), outline=(230, 0, 18, 255), width=10)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build_region(var_dir: Path, passphrase: str) -> bytes:
    """Initialise the region in ``var_dir`` and return helloworld.ofd sealed by its demo department."""
    from api.context import open_context
    from core.db import transaction
    from core.settings import Settings
    from seal_registry import seals
    from seal_registry.demo import ensure_demo_data
    from seal_registry.pki import init_region
    from signer.ofd_sealing import seal_ofd

    class _Quiet:
        def print(self, *args: object, **kwargs: object) -> None:
            pass

    settings = Settings(var_dir=var_dir, keystore_passphrase=passphrase)
    ctx = open_context(settings)
    try:
        with transaction(ctx.sessions) as s:
            init_region(s, ctx.keystore, settings, actor=ACTOR)
        dept = ensure_demo_data(ctx.sessions, ctx.keystore, actor=ACTOR, console=_Quiet())
        with transaction(ctx.sessions) as s:
            seal = seals.apply_seal(
                s,
                department_id=dept.id,
                seal_type_key="contract",
                picture=seals.PictureUpload(_picture(), "png"),
                actor=ACTOR,
                reason="load benchmark",
            )
        with transaction(ctx.sessions) as s:
            seals.review(s, seal.id, actor=ACTOR, reason="load benchmark")
        with transaction(ctx.sessions) as s:
            seals.make_seal(s, ctx.keystore, seal.id, actor=ACTOR, reason="load benchmark")
        for step in (seals.file_seal, seals.issue_seal):
            with transaction(ctx.sessions) as s:
                step(s, seal.id, actor=ACTOR, reason="load benchmark")
        with transaction(ctx.sessions) as s:
            return seal_ofd(
                s,
                ctx.keystore,
                HELLOWORLD.read_bytes(),
                es_id=seal.es_id,
                department_id=dept.id,
                placement=None,
                actor=ACTOR,
            )
    finally:
        ctx.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready in time")


def verify_once(url: str, data: bytes) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/v1/verify",
        data=data,
        headers={"Content-Type": "application/octet-stream", "Accept": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        report: dict[str, object] = json.loads(resp.read())
        return report


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)  # the server runs in a session of its own: its workers are in it
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE_S)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("could not read wrk output:\n" + out)
    figures["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        p = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        if p:
            figures[f"p{pct}"] = _ms(p.group(1))
    m = re.search(r"(\d+) requests in", out)
    figures["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non_2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["socket_errors"] = float(sum(int(g) for g in m.groups())) if m else 0.0
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary dir)")
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="eseal-load-"))
    tmp.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        passphrase = secrets.token_urlsafe(24)
        var_dir = tmp / "var"
        t0 = time.perf_counter()
        sealed = build_region(var_dir, passphrase)
        ofd = tmp / "sealed.ofd"
        ofd.write_bytes(sealed)
        script = tmp / "post.lua"
        script.write_text(LUA)
        print(f"region and sealed OFD ({len(sealed)} bytes) built in {time.perf_counter() - t0:.1f} s")

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ESEAL_VAR_DIR": str(var_dir),
            "ESEAL_KEYSTORE_PASSPHRASE": passphrase,
            "ESEAL_BENCH_FILE": str(ofd),
        }
        env.pop("ESEAL_DATABASE_URL", None)
        command = [sys.executable, "-c", "from api.cli import app; app()", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
        log = (tmp / "server.log").open("wb")
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_ready(url, proc)
        report = verify_once(url, sealed)
        assert report["indication"] == "PASSED", json.dumps(report, ensure_ascii=False, indent=1)
        for _ in range(20):  # warm every worker's caches before measuring
            verify_once(url, sealed)

        run = subprocess.run(
            [
                wrk,
                f"-t{args.wrk_threads}",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(script),
                f"{url}/v1/verify",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.seconds + 60,
            check=True,
        )
        figures = parse_wrk(run.stdout)
        stop(proc)
        ref = openssl_sm2(3, multi=args.workers)[1]

        print(run.stdout.rstrip())
        print()
        print(
            f"POST /v1/verify, one-seal OFD, {args.workers} workers, {args.connections} connections, "
            f"{args.seconds} s"
        )
        print(
            f"  throughput        {figures['rps']:8.1f} verifications/s ({figures['requests']:.0f} requests)"
        )
        print(
            "  latency           "
            + "  ".join(
                f"p{p} {figures[f'p{p}']:.1f} ms" for p in ("50", "75", "90", "99") if f"p{p}" in figures
            )
        )
        print(f"  errors            {figures['non_2xx']:.0f} non-2xx, {figures['socket_errors']:.0f} socket")
        print(
            f"  openssl speed -multi {args.workers} sm2: {ref:.0f} verifies/s -> one API verification costs "
            f"{ref / figures['rps']:.1f} SM2 verifies"
        )
        if figures["non_2xx"] or figures["socket_errors"]:
            sys.exit("errors during the run")
    finally:
        if proc is not None:
            stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
