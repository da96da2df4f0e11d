"""Verification throughput, as ratios to OpenSSL's SM2 verify and SM3 rates measured in the same run.

Usage: python bench/verify.py [--seconds N] [--big-mib M]

* one-seal OFD: ofdrw's helloworld.ofd sealed here (a throw-away root, seal maker and department
  certificate; the seal made with gmpki and the OFD sealed with ``signer.ofd_sealing``), verified
  with the root as trust anchor. A verification involves four SM2 signatures (the maker's over the
  seal, the signer's over the signed value, and one per certificate of the two paths) and hashes
  every file. Warm: the verifier's content caches (parsed certificates, certificate signature
  checks, the maker check by seal SM3) already hold this seal and its certificates, as they do in
  a running service after its first request; only the signer's signature, which is new with every
  document, is verified again. Cold: every cache is emptied before each verification (the cost of
  a seal and certificates never seen before). The ratio to OpenSSL's SM2 verify rate says how many
  SM2 verifies one verification costs.
* large OFD: the same document with a ``--big-mib`` (default 100) random attachment added before
  sealing, so that a Reference covers it. Verifying it inflates and SM3-hashes that entry as a
  stream: its time is printed as MiB/s next to ``openssl speed -evp sm3``, and the verification
  runs in a child process whose peak RSS is compared with its RSS once the file is loaded, to show
  that memory stays flat (the input itself is held once; nothing proportional is added).

Single core, so the OpenSSL figures are single-core too. For the HTTP API under concurrent load
(``eseal serve`` with several workers, driven by wrk) see ``bench/verify_load.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.native_reference import openssl_sm2, openssl_sm3_mib_s
from gmpki import sm2
from gmpki.ca import issue_department_certificate, issue_root_ca, issue_seal_maker_certificate
from gmpki.ofd import OfdPackage, read_signature_list, read_signature_xml
from gmpki.seal import build_seal_info, make_seal, make_ses_signature
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, now_utc
from verify import FileTrustSource, Indication, clear_caches, verify_bytes

HELLOWORLD = Path(__file__).resolve().parents[2] / "shared" / "interop" / "ofdrw-sign__helloworld.ofd"
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
MIB = 1024 * 1024


def _signer() -> InMemorySigner:
    return InMemorySigner(sm2.SM2PrivateKey.generate())


def _pki() -> tuple[Certificate, bytes, Certificate, InMemorySigner]:
    root_key, maker_key, dept_key = _signer(), _signer(), _signer()
    root = issue_root_ca(root_key, build_name("bench root", organization="eseal bench"))
    maker = issue_seal_maker_certificate(root_key, root, maker_key.public_key, build_name("bench maker"))
    dept = issue_department_certificate(root_key, root, dept_key.public_key, build_name("bench department"))
    created = now_utc() - dt.timedelta(minutes=1)
    info = build_seal_info(
        es_id="11000002000001",
        name="基准测试专用章",
        seal_type=2,
        certs=[dept.der],
        create_date=created,
        valid_start=created,
        valid_end=created + dt.timedelta(days=30),
        picture_type="PNG",
        picture_data=PICTURE,
        picture_width=40,
        picture_height=40,
        vid="eseal-bench",
    )
    return root, make_seal(info, maker.der, maker_key), dept, dept_key


def seal_document(ofd: bytes, seal: bytes, cert: Certificate, key: InMemorySigner) -> bytes:
    from signer.ofd_sealing import analyse_ofd, finish_seal, prepare_seal

    when = now_utc().replace(microsecond=0)
    prepared = prepare_seal(analyse_ofd(ofd, placement=None), seal, when)
    signed = make_ses_signature(seal, prepared.data_hash, prepared.property_info, cert.der, key, when)
    return finish_seal(prepared, signed)


def rate(fn: object, seconds: float) -> float:
    assert callable(fn)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now - start >= seconds:
            return n / (now - start)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_big(out_dir: str, mib: int) -> None:
    """Build and seal the large OFD in a process of its own, so the verifying process (which
    inherits its parent's peak RSS through fork and exec on Linux) starts from a small parent."""
    root, seal, dept, key = _pki()
    big_name = "Doc_0/Attachs/big.bin"
    with_big = OfdPackage(HELLOWORLD.read_bytes()).rewrite({big_name: os.urandom(mib * MIB)})
    sealed = seal_document(with_big, seal, dept, key)
    entry = read_signature_list(OfdPackage(sealed), "Doc_0/Signs/Signatures.xml").entries[0]
    assert entry.path is not None
    xml = read_signature_xml(OfdPackage(sealed), entry.path)
    assert big_name in {r.path for r in xml.references}, "the attachment must be covered"
    Path(out_dir, "big.ofd").write_bytes(sealed)
    Path(out_dir, "root.pem").write_text(root.to_pem())


def child(path: str, root_pem: str) -> None:
    """Verify one file in a fresh process; print the time and the peak RSS at each stage as JSON."""
    started = rss_mib()
    trust = FileTrustSource.from_paths([root_pem])
    data = Path(path).read_bytes()
    loaded = rss_mib()
    start = time.perf_counter()
    report = verify_bytes(data, trust=trust)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "indication": report.indication.value,
                "seconds": seconds,
                "rss_started_mib": started,
                "rss_loaded_mib": loaded,
                "rss_peak_mib": rss_mib(),
                "file_mib": len(data) / MIB,
            }
        )
    )


def _run_self(*args: str) -> str:
    return subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    ).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=100)
    ap.add_argument("--child", nargs=2, metavar=("OFD", "ROOT_PEM"), help=argparse.SUPPRESS)
    ap.add_argument("--make-big", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.make_big:
        make_big(args.make_big, args.big_mib)
        return
    secs = args.seconds

    with tempfile.TemporaryDirectory() as tmp:
        _run_self("--make-big", tmp, "--big-mib", str(args.big_mib))
        big = json.loads(_run_self("--child", str(Path(tmp, "big.ofd")), str(Path(tmp, "root.pem"))))
    assert big["indication"] == "PASSED", big
    big_rate = big["file_mib"] / big["seconds"]

    root, seal, dept, key = _pki()
    sealed = seal_document(HELLOWORLD.read_bytes(), seal, dept, key)
    trust = FileTrustSource((root,))
    report = verify_bytes(sealed, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()

    def cold() -> None:
        clear_caches()
        verify_bytes(sealed, trust=trust)

    ref_before = openssl_sm2(secs)
    verify_rate = rate(lambda: verify_bytes(sealed, trust=trust), secs)
    cold_rate = rate(cold, secs)
    ref_after = openssl_sm2(secs)
    ref_verify = (ref_before[1] + ref_after[1]) / 2
    sm3_ref = openssl_sm3_mib_s(secs)

    print(f"{'measure':<34}{'eseal':>12}{'openssl':>12}{'ratio':>8}")
    for label, value in (("one-seal OFD verifications /s", verify_rate), ("  same, cold caches", cold_rate)):
        print(
            f"{label:<34}{value:>12.1f}{ref_verify:>12.0f}"
            f"{value / ref_verify:>8.3f}   (one costs {ref_verify / value:.1f} SM2 verifies)"
        )
    print(
        f"{f'{args.big_mib} MiB OFD, MiB/s':<34}{big_rate:>12.1f}{sm3_ref:>12.1f}"
        f"{big_rate / sm3_ref:>8.2f}   ({big['seconds']:.2f} s; inflate + SM3 vs openssl SM3 alone)"
    )
    extra = big["rss_peak_mib"] - big["rss_loaded_mib"]
    print(
        f"peak RSS verifying it: {big['rss_peak_mib']:.0f} MiB (ru_maxrss): {big['rss_started_mib']:.0f} MiB "
        f"at start, {big['rss_loaded_mib']:.0f} MiB with the {big['file_mib']:.0f} MiB file read, "
        f"+{extra:.0f} MiB during verification"
    )


if __name__ == "__main__":
    main()
