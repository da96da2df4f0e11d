"""Native reference figures from the OpenSSL CLI, measured in the same command as eseal's own.

Benchmarks print eseal's rates as ratios to these so that the figures survive a noisy machine.
"""

from __future__ import annotations

import re
import subprocess


def openssl_sm2(seconds: int, multi: int = 1) -> tuple[float, float]:
    """(sign/s, verify/s) of ``openssl speed sm2``: one core, or ``multi`` processes (``-multi``)."""
    command = ["openssl", "speed", "-seconds", str(seconds)]
    if multi > 1:
        command += ["-multi", str(multi)]
    out = subprocess.run([*command, "sm2"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"SM2 \(CurveSM2\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("could not read `openssl speed sm2` output")
    return float(m.group(1)), float(m.group(2))


def openssl_sm3_mib_s(seconds: int) -> float:
    """SM3 throughput (MiB/s) of ``openssl speed -evp sm3`` on 16 KiB blocks."""
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "-evp", "sm3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("sm3"))
    kbytes = float(line.split()[-1].rstrip("k"))
    return kbytes * 1000 / (1024 * 1024)
