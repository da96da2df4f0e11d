"""Verification through the HTTP API under load: ``eseal serve`` with N workers, driven by wrk.

Usage: python bench/verify_load.py [--seconds 10] [--rounds 3] [--connections 32] [--workers 2] [--keep DIR]

1. Builds a throw-away region in a temporary directory (SQLite, soft key store): the region CA, the
   demo department and its certificate, one issued seal; seals ofdrw's one-page helloworld.ofd with
   it through ``signer.ofd_sealing.seal_ofd`` (what ``POST /v1/sign/ofd`` does).
2. Starts ``eseal serve --workers N`` on 127.0.0.1 (a free port, loopback only) and waits for it.
3. Checks one ``POST /v1/verify`` of the sealed file is PASSED (trust from the running registry:
   its root, its CRL and the seal's live status, as any client gets).
4. Runs ``wrk --latency`` ``--rounds`` times with a Lua script posting the file as the raw body,
   ``--connections`` connections for ``--seconds`` seconds each, prints every round and reports the
   median round's throughput and latency percentiles in full (the host's speed drifts between runs).
5. Stops the server (SIGTERM to its process group, SIGKILL after a grace period) and removes the
   directory. Everything is bounded in time; wrk comes from the system (``apt-get install wrk``).

Ratios, as the other benches print them, to bounds measured in the same command: a warm verification
costs exactly one SM2 verify (the signer's over the new document; the rest is answered from the
verifier's content caches and the registry's cached view), so ``workers`` × eseal's in-process SM2
verify rate is the ceiling no amount of HTTP or framework tuning can pass; ``workers`` × the
in-process warm verification rate (same trust source as the server, its one stamp query included)
is the ceiling for a free HTTP layer; ``openssl speed -multi N sm2`` is the native reference.

wrk and the server share the machine: on a 2-core host the figures are what 2 cores give with the
load generator's own (small) share taken out of them, and whatever else runs on the host takes its
share too. The CPU time the server's processes and wrk used per request (from /proc and rusage) does
not depend on that; the "capacity" line is what those costs give on ``--cores`` idle cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
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
from collections.abc import Callable
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


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of this process's CPU time (as ``openssl speed`` divides by its user time), so
    that other load on the machine does not lower the reference."""
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.process_time() - cpu)


def in_process_rates(var_dir: Path, passphrase: str, sealed: bytes, seconds: float) -> tuple[float, float]:
    """(SM2 verifies/s through gmpki, warm verifications/s of ``sealed`` through the registry's
    federated trust source, as the server verifies), per second of one core, in this process."""
    from api.context import open_context
    from api.routes.federation import federated_trust
    from core.settings import Settings
    from gmpki import sm2
    from verify import Indication, verify_bytes

    key = sm2.SM2PrivateKey.generate()
    message = os.urandom(1024)
    signature = sm2.sign(key, message)
    sm2_rate = rate(lambda: sm2.verify(key.public_key, message, signature), seconds)
    ctx = open_context(Settings(var_dir=var_dir, keystore_passphrase=passphrase), migrate=False)
    try:
        trust = federated_trust(ctx)
        assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
        return sm2_rate, rate(lambda: verify_bytes(sealed, trust=trust), seconds)
    finally:
        ctx.close()


def group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU seconds of the live processes of a process group (Linux /proc), or None."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


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
    ap.add_argument("--rounds", type=int, default=3, help="wrk runs; the median round is reported")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--ref-seconds", type=int, default=3, help="time for each in-process reference rate")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores for the capacity line")
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
        sm2_rate, warm_rate = in_process_rates(var_dir, passphrase, sealed, args.ref_seconds)

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

        rounds: list[tuple[dict[str, float], str, float | None, float]] = []
        for _ in range(max(1, args.rounds)):
            cpu_before = group_cpu_seconds(proc.pid)  # the server runs in a session (and group) of its own
            wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
            wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_after = group_cpu_seconds(proc.pid)
            server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
            wrk_cpu = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
            rounds.append((parse_wrk(run.stdout), run.stdout, server_cpu, wrk_cpu))
        # The machine's speed drifts between runs (other tenants): every round is shown, the
        # median one (by throughput) is reported in full.
        for i, (f, _out, _s, _w) in enumerate(rounds, 1):
            print(
                f"round {i}: {f['rps']:.1f}/s, p50 {f.get('p50', 0):.1f} ms, p99 {f.get('p99', 0):.1f} ms, "
                f"{f['non_2xx']:.0f} non-2xx, {f['socket_errors']:.0f} socket errors"
            )
        figures, stdout, server_cpu, wrk_cpu = sorted(rounds, key=lambda r: r[0]["rps"])[len(rounds) // 2]
        stop(proc)
        ref = openssl_sm2(3, multi=args.workers)[1]

        print(stdout.rstrip())
        print()
        rps = figures["rps"]
        print(
            f"POST /v1/verify, one-seal OFD, {args.workers} workers, {args.connections} connections, "
            f"{args.seconds} s"
        )
        print(f"  throughput        {rps:8.1f} verifications/s ({figures['requests']:.0f} requests)")
        print(
            "  latency           "
            + "  ".join(
                f"p{p} {figures[f'p{p}']:.1f} ms" for p in ("50", "75", "90", "99") if f"p{p}" in figures
            )
        )
        print(f"  errors            {figures['non_2xx']:.0f} non-2xx, {figures['socket_errors']:.0f} socket")
        n = args.workers
        print(f"{'bound (same command)':<44}{'per s':>10}{'ratio':>8}")
        for label, bound, note in (
            (f"{n} x in-process SM2 verify", n * sm2_rate, "a warm verification costs one"),
            (f"{n} x in-process warm verification", n * warm_rate, "the HTTP layer for free"),
            (f"openssl speed -multi {n} sm2 verify", ref, "native reference"),
        ):
            print(f"  {label:<42}{bound:>10.0f}{rps / bound:>8.3f}   ({note})")
        print(f"  one API verification costs {ref / rps:.1f} OpenSSL SM2 verifies of {n} cores")
        requests = figures["requests"]
        if server_cpu is not None and requests:
            server_ms = server_cpu / requests * 1000
            wrk_ms = wrk_cpu / requests * 1000
            capacity = args.cores * 1000 / (server_ms + wrk_ms)
            print(
                f"  CPU per request   server {server_ms:.2f} ms, wrk {wrk_ms:.2f} ms (in-process warm "
                f"verification {1000 / warm_rate:.2f} ms) -> {args.cores} idle cores: {capacity:.0f} "
                f"verifications/s, {capacity / (args.cores * warm_rate):.3f} of {args.cores} x in-process"
            )
        if any(f["non_2xx"] or f["socket_errors"] for f, _o, _s, _w in rounds):
            sys.exit("errors during the run")
    finally:
        if proc is not None:
            stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
