"""Batch signing throughput on 2 cores, as ratios to the 2-core SM2 sign bound measured in the same run.

Usage: python bench/sign.py [--n 2000] [--workers 2] [--group-size 64] [--database-url URL]
                            [--seconds 3] [--compare-groups 1,4,16,64] [--profile [--profile-n 400]]

* OFD: ``--n`` one-page licence-like OFDs (ofdrw's helloworld from ../shared/interop with the page
  replaced by a licence, every one different; a minimal one-page OFD built here when the sample is
  absent), sealed by a batch job through :func:`signer.batch.run_job` with ``--workers`` processes
  on a fresh region (SQLite under a temporary directory unless ``--database-url``, e.g. an empty
  PostgreSQL schema). Every item goes the whole way: authorised, signed, assembled, re-read, stored
  durably, recorded and audited.
* SES: the same count of small inputs (1 KiB, all different) signed by an SES batch job.
* Bound: ``openssl speed -multi 2 sm2`` before and after (its mean), i.e. what two cores of OpenSSL
  sign per second. The goal is >= 1,000 OFDs/s, >= 25 % of that bound.

Rates are given end to end (pool start-up included: two spawned interpreters importing the
service and opening the key store) and in steady state (from the first committed group to the
last). The phase split sums, over all groups, the time spent preparing, authorising and signing
documents (no lock held while signing), waiting for the recording turn (SQLite: one writer at a
time) and inside the recording transaction (the serial part on SQLite).

``--compare-groups`` seals N/4 more OFDs at each listed group size (items per transaction: 1 is one
transaction per item). ``--profile`` also runs ``--profile-n`` items inline (one process) under
cProfile and prints where an item's time goes, by stage, and the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.native_reference import openssl_sm2
from core import migrate
from core.blobstore import BlobStore
from core.db import make_engine, make_session_factory, transaction
from core.settings import Settings
from hsm_adapters.soft import SoftKeyStore
from seal_registry import seals
from seal_registry.departments import create_department
from seal_registry.pki import init_region, issue_department_certificate
from seal_registry.uscc import check_character
from signer.batch import (
    DEFAULT_GROUP_SIZE,
    BatchInput,
    JobProgress,
    JobSpec,
    WorkerResources,
    add_items,
    create_job,
    run_job,
)

HELLOWORLD = Path(__file__).resolve().parents[2] / "shared" / "interop" / "ofdrw-sign__helloworld.ofd"
ACTOR = "bench:sign"
NS = "http://www.ofdspec.org/2016"


# --- documents ------------------------------------------------------------------------------------------
def _minimal_base() -> dict[str, bytes]:
    """A one-page OFD without the interop sample: OFD.xml, Document.xml, PublicRes.xml."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return {
        "OFD.xml": (
            f'{head}<ofd:OFD xmlns:ofd="{NS}" Version="1.0" DocType="OFD"><ofd:DocBody><ofd:DocInfo>'
            "<ofd:DocID>00000000000000000000000000000000</ofd:DocID></ofd:DocInfo>"
            "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
        ).encode(),
        "Doc_0/Document.xml": (
            f'{head}<ofd:Document xmlns:ofd="{NS}"><ofd:CommonData>'
            "<ofd:PublicRes>PublicRes.xml</ofd:PublicRes>"
            "<ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea>"
            "<ofd:MaxUnitID>20</ofd:MaxUnitID></ofd:CommonData><ofd:Pages>"
            '<ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/></ofd:Pages></ofd:Document>'
        ).encode(),
        "Doc_0/PublicRes.xml": (
            f'{head}<ofd:Res xmlns:ofd="{NS}" BaseLoc="Res"><ofd:Fonts>'
            '<ofd:Font FontName="宋体" FamilyName="宋体" ID="3"/></ofd:Fonts></ofd:Res>'
        ).encode(),
    }


def _base() -> tuple[str, dict[str, bytes]]:
    if HELLOWORLD.is_file():
        with zipfile.ZipFile(HELLOWORLD) as z:
            entries = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
        return "ofdrw helloworld, page replaced by a licence", entries
    return "minimal one-page OFD built by the bench", _minimal_base()


def _text(object_id: int, x: float, y: float, text: str) -> str:
    deltas = " ".join(["4"] * (len(text) - 1))
    return (
        f'<ofd:TextObject ID="{object_id}" Boundary="{x} {y} 170 6" Font="3" Size="4">'
        f'<ofd:TextCode X="0" Y="4" DeltaX="{deltas}">{text}</ofd:TextCode></ofd:TextObject>'
    )


def licence_page(n: int) -> bytes:
    lines = [
        "营业执照",
        f"统一社会信用代码 91110000MA{n:07d}X",
        f"名称 演示科技有限公司第{n}分公司",
        "类型 有限责任公司",
        f"登记机关 演示市市场监督管理局 编号 LIC-{n:010d}",
    ]
    body = "".join(_text(4 + i, 20, 30 + 12 * i, line) for i, line in enumerate(lines))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ofd:Page xmlns:ofd="{NS}"><ofd:Content><ofd:Layer ID="2">{body}</ofd:Layer>'
        "</ofd:Content></ofd:Page>"
    ).encode()


def licence_ofd(base: dict[str, bytes], n: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in base.items():
            z.writestr(name, licence_page(n) if name.endswith("Page_0/Content.xml") else data)
        if "Doc_0/Pages/Page_0/Content.xml" not in base:
            z.writestr("Doc_0/Pages/Page_0/Content.xml", licence_page(n))
    return out.getvalue()


# --- a region -------------------------------------------------------------------------------------------
def _picture() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((8, 8, 152, 152), outline=(230, 0, 18, 255), width=10)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def setup_region(database_url: str | None, var_dir: Path) -> tuple[WorkerResources, str, str]:
    """A fresh region with one department and an issued seal: (worker resources, department, esID)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{var_dir / 'bench.db'}"
    settings = Settings(var_dir=var_dir, database_url=url, keystore_passphrase=secrets.token_urlsafe(16))
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    keystore = SoftKeyStore(sessions, settings.resolved_passphrase() or "")
    with transaction(sessions) as s:
        init_region(s, keystore, settings, actor=ACTOR)
    uscc17 = "91110000MA" + secrets.token_hex(4).upper()[:7]
    with transaction(sessions) as s:
        dept = create_department(
            s,
            name="基准测试市场监督管理局",
            uscc=uscc17 + check_character(uscc17),
            region_code="110000",
            actor=ACTOR,
        )
    with transaction(sessions) as s:
        issue_department_certificate(s, keystore, dept, actor=ACTOR)
    with transaction(sessions) as s:
        seal = seals.apply_seal(
            s,
            department_id=dept.id,
            seal_type_key="official",
            picture=seals.PictureUpload(_picture(), "png"),
            actor=ACTOR,
        )
    for step in ("review", "make", "file", "issue"):
        with transaction(sessions) as s:
            if step == "make":
                seals.make_seal(s, keystore, seal.id, actor=ACTOR)
            else:
                {"review": seals.review, "file": seals.file_seal, "issue": seals.issue_seal}[step](
                    s, seal.id, actor=ACTOR
                )
    res = WorkerResources(settings, sessions, keystore, BlobStore(var_dir / "blobs"), engine)
    return res, dept.id, seal.es_id


# --- running --------------------------------------------------------------------------------------------
def make_job(
    res: WorkerResources, department_id: str, es_id: str, kind: str, inputs: list[BatchInput]
) -> tuple[str, float]:
    started = time.perf_counter()
    with transaction(res.sessions) as s:
        job = create_job(s, JobSpec(department_id, es_id, kind=kind), actor=ACTOR)
        add_items(s, res.blobs, job, inputs)
        return job.id, time.perf_counter() - started


def run(res: WorkerResources, job_id: str, workers: int, group_size: int) -> dict[str, float]:
    marks: list[tuple[float, int]] = []

    def progress(p: JobProgress) -> None:
        marks.append((time.perf_counter(), p.done + p.failed))

    summary = run_job(
        res, job_id, actor=ACTOR, workers=workers, group_size=group_size, inline_below=0, on_progress=progress
    )
    if summary.errors or summary.progress.pending or summary.failed:
        raise SystemExit(f"bench run failed: {summary.errors} {summary.progress}")
    committed = [(t, n) for t, n in marks if n > 0]
    (t0, n0), (t1, n1) = committed[0], committed[-1]
    prep, wait, locked = summary.phase_seconds
    return {
        "n": summary.signed,
        "end_to_end": summary.signed / summary.seconds,
        "steady": (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan"),
        "seconds": summary.seconds,
        "startup": t0 - (marks[0][0] if marks else t0),
        "prep": prep,
        "wait": wait,
        "locked": locked,
        "caller_groups": summary.caller_groups,
        "cpu": summary.cpu_seconds,
        "groups": -(-summary.signed // group_size),
    }


# --- profile --------------------------------------------------------------------------------------------
_STAGES: list[tuple[str, str, str]] = [
    ("read inputs (blob store, SM3 check)", "signer/batch_worker.py", "_load_inputs"),
    ("analyse OFD (ZIP open, XML, placement, SM3 of entries)", "signer/ofd_sealing.py", "analyse_ofd"),
    ("prepare (Signatures.xml, OFD.xml edit, Signature.xml)", "signer/ofd_sealing.py", "prepare_seal"),
    ("  of which: OFD.xml edit re-read", "signer/ofd_sealing.py", "add_signatures_to_ofd_xml"),
    ("  of which: written parts read back", "signer/ofd_sealing.py", "check_prepared"),
    ("package laid out but the signed value", "signer/ofd_sealing.py", "draft_sealed"),
    ("TBS_Sign (template)", "signer/batch_worker.py", "tbs"),
    ("authorize_use, twice (seal row lock, checks)", "seal_registry/seals.py", "authorize_use"),
    ("SM2 sign", "gmpki/sm2.py", "sign"),
    ("SM2 verify (self-check)", "gmpki/sm2.py", "verify"),
    ("package finished (SignedValue.dat, central directory)", "gmpki/ofd/container.py", "finish"),
    ("self-check of the sealed package (ZIP re-read)", "signer/ofd_sealing.py", "check_sealed_package"),
    ("outputs into the group's pack (SM3, ZIP entry)", "core/blobstore.py", "put"),
    ("pack installed, one syncfs per group", "core/blobstore.py", "sync"),
    ("item rows (bulk UPDATE)", "signer/batch_worker.py", "_record"),
    ("audit entries (one head move per group)", "core/audit.py", "append_many"),
    ("commit", "sqlalchemy/orm/session.py", "commit"),
]


def profile(
    res: WorkerResources, department_id: str, es_id: str, inputs: list[BatchInput], group_size: int
) -> None:
    job_id, _ = make_job(res, department_id, es_id, "ofd", inputs)
    profiler = cProfile.Profile()
    profiler.enable()
    started = time.perf_counter()
    summary = run_job(res, job_id, actor=ACTOR, workers=1, group_size=group_size)
    elapsed = time.perf_counter() - started
    profiler.disable()
    n = summary.signed
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    print(f"\nprofile: {n} OFDs inline in one process, {elapsed:.2f} s under cProfile ({n / elapsed:.0f}/s)")
    print(f"{'stage':<62}{'ms/item':>9}{'share':>8}")
    for label, path, function in _STAGES:
        # max, not sum: same-named functions of one file call each other (Session/SessionTransaction.commit).
        matches = [v[3] for (file, _line, fn), v in raw.items() if fn == function and file.endswith(path)]
        cumulative = max(matches, default=0.0)
        print(f"{label:<62}{cumulative / n * 1000:>9.3f}{cumulative / elapsed:>8.1%}")
    print(f"{'total per item':<62}{elapsed / n * 1000:>9.3f}{1:>8.0%}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print("\ntop functions by own time:")
    print("\n".join(out.getvalue().splitlines()[6:24]))


# --- main -----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE)
    ap.add_argument("--database-url", default=None, help="an empty database (default: SQLite in a temp dir)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per openssl speed run")
    ap.add_argument(
        "--compare-groups",
        default="",
        help="also seal N/4 OFDs at each of these group sizes, e.g. 1,4,16,64 (1: a transaction per item)",
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-n", type=int, default=400)
    args = ap.parse_args()

    described, base = _base()
    with tempfile.TemporaryDirectory(prefix="eseal-bench-sign-") as tmp:
        res, department_id, es_id = setup_region(args.database_url, Path(tmp) / "var")
        backend = (args.database_url or "sqlite").split(":", 1)[0]
        ofds = [
            BatchInput(f"licence-{n:06d}.ofd", f"licence-{n:06d}.ofd", licence_ofd(base, n))
            for n in range(args.n)
        ]
        data = [BatchInput(f"data-{n:06d}.bin", f"data-{n:06d}.bin", os.urandom(1024)) for n in range(args.n)]
        size = sum(len(i.data) for i in ofds) / len(ofds)

        bound_before = openssl_sm2(args.seconds, args.workers)[0]
        ofd_job, ofd_ingest = make_job(res, department_id, es_id, "ofd", ofds)
        ofd = run(res, ofd_job, args.workers, args.group_size)
        ses_job, ses_ingest = make_job(res, department_id, es_id, "ses", data)
        ses = run(res, ses_job, args.workers, args.group_size)
        bound_after = openssl_sm2(args.seconds, args.workers)[0]
        bound = (bound_before + bound_after) / 2

        print(f"documents: {described}, {size:.0f} bytes each; database: {backend}; cores: {os.cpu_count()}")
        print(f"workers {args.workers}, group size {args.group_size}, N = {args.n}")
        print(f"2-core SM2 sign bound (openssl speed -multi {args.workers} sm2): {bound:.0f}/s")
        print(
            f"{'':<26}{'items/s':>10}{'steady/s':>10}{'of bound':>10}{'steady':>8}"
            f"{'startup s':>11}{'ingest s':>10}"
        )
        for name, r, ingest in (
            ("OFD sealed (batch)", ofd, ofd_ingest),
            ("SES signed (batch)", ses, ses_ingest),
        ):
            print(
                f"{name:<26}{r['end_to_end']:>10.0f}{r['steady']:>10.0f}{r['end_to_end'] / bound:>10.1%}"
                f"{r['steady'] / bound:>8.1%}{r['startup']:>11.2f}{ingest:>10.2f}"
            )
        for name, r in (("OFD", ofd), ("SES", ses)):
            cpu_ms = r["cpu"] / r["n"] * 1000
            print(
                f"{name} CPU per item (all processes): {cpu_ms:.2f} ms, i.e. at most "
                f"{args.workers / cpu_ms * 1000:.0f}/s on {args.workers} otherwise idle cores "
                f"({args.workers / cpu_ms * 1000 / bound:.0%} of the bound)"
            )
        for name, r in (("OFD", ofd), ("SES", ses)):
            busy = r["prep"] + r["wait"] + r["locked"]
            print(
                f"{name} phases (all processes, ms/item): prepare and sign {r['prep'] / r['n'] * 1000:.2f}, "
                f"wait for recording turn {r['wait'] / r['n'] * 1000:.2f}, "
                f"recording transaction {r['locked'] / r['n'] * 1000:.2f} "
                f"({r['locked'] / busy:.0%} of busy time); "
                f"caller sealed {r['caller_groups']:.0f} of {r['groups']:.0f} groups while the pool started"
            )
        print("goal: >= 1,000 OFDs/s on 2 cores (>= 25 % of the bound)")
        sizes = [int(v) for v in args.compare_groups.split(",") if v.strip()]
        if sizes:
            print(f"\ngroup size comparison ({args.n // 4} OFDs each, {args.workers} workers):")
            print(f"{'items per transaction':<24}{'items/s':>10}{'steady/s':>10}{'in txn ms/item':>16}")
            for k, size in enumerate(sizes):
                count = args.n // 4
                inputs = [
                    BatchInput(
                        f"g{size}-{n:06d}.ofd",
                        f"g{size}-{n:06d}.ofd",
                        licence_ofd(base, (k + 1) * 1_000_000 + n),
                    )
                    for n in range(count)
                ]
                job_id, _ = make_job(res, department_id, es_id, "ofd", inputs)
                r = run(res, job_id, args.workers, size)
                in_txn = r["locked"] / r["n"] * 1000
                print(f"{size:<24}{r['end_to_end']:>10.0f}{r['steady']:>10.0f}{in_txn:>16.2f}")
        if args.profile:
            inputs = [
                BatchInput(f"p-{n:06d}.ofd", f"p-{n:06d}.ofd", licence_ofd(base, 10_000_000 + n))
                for n in range(args.profile_n)
            ]
            profile(res, department_id, es_id, inputs, args.group_size)
        res.close()


if __name__ == "__main__":
    main()
