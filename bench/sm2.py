"""SM2 sign/verify and SM3 throughput through gmpki, as ratios to OpenSSL measured in the same run.

Usage: python bench/sm2.py [--seconds N]
Single core (the backend holds the GIL), so the OpenSSL figures are single-core too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.native_reference import openssl_sm2, openssl_sm3_mib_s
from gmpki import sm2, sm3


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    secs = args.seconds

    key = sm2.SM2PrivateKey.generate()
    pub = key.public_key
    msg = os.urandom(1024)  # a typical TBS_Sign is a few KiB; Z is cached per key
    sig = sm2.sign(key, msg)
    block = os.urandom(16 * 1024 * 1024)

    ref_before = openssl_sm2(secs)
    sign_rate = rate(lambda: sm2.sign(key, msg), secs)
    verify_rate = rate(lambda: sm2.verify(pub, msg, sig), secs)
    ref_after = openssl_sm2(secs)
    ref_sign = (ref_before[0] + ref_after[0]) / 2
    ref_verify = (ref_before[1] + ref_after[1]) / 2

    sm3_ref = openssl_sm3_mib_s(secs)
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < secs:
        sm3.sm3(block)
        rounds += 1
    sm3_rate = rounds * 16 / (time.perf_counter() - t0)

    print(f"{'operation':<22}{'eseal':>12}{'openssl':>12}{'ratio':>8}")
    print(f"{'SM2 sign /s':<22}{sign_rate:>12.0f}{ref_sign:>12.0f}{sign_rate / ref_sign:>8.2f}")
    print(f"{'SM2 verify /s':<22}{verify_rate:>12.0f}{ref_verify:>12.0f}{verify_rate / ref_verify:>8.2f}")
    print(f"{'SM3 MiB/s (16 MiB)':<22}{sm3_rate:>12.1f}{sm3_ref:>12.1f}{sm3_rate / sm3_ref:>8.2f}")
    print("goals: sign >= 1.50, verify >= 0.90 (issue #2)")


if __name__ == "__main__":
    main()
