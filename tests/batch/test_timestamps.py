"""``--timestamp`` on `eseal sign ofd|ses` and time-stamped batch jobs: SES_Signature.timeStamp holds an
RFC 3161 token from the region's TSA that verifies against the region root and covers exactly the
signature value (SM3 imprint); the rest of the signature is unchanged and still verifies."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.db import transaction
from core.errors import InvalidSignature
from gmpki import seal as ses
from gmpki.sm3 import sm3
from gmpki.tsp import verify_token
from gmpki.x509 import Certificate
from seal_registry.pki import CertRole, certificate_of, current_certificate
from signer.batch import BatchInput, JobSpec, add_items, create_job, item_output, job_results, run_job
from verify import Indication, verify_bytes

from .conftest import SIGNER, BatchEnv, Local, licences

pytestmark = pytest.mark.interop


def signed_value_of(ofd: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(ofd)) as z:
        (name,) = [n for n in z.namelist() if n.endswith("SignedValue.dat")]
        return z.read(name)


def check_token(signature_der: bytes, root: Certificate, *, near: dt.datetime) -> None:
    """The token verifies against ``root`` and its imprint is SM3(signature value), nothing else."""
    parsed = ses.parse_ses_signature(signature_der)
    assert parsed.time_stamp is not None
    verified = verify_token(parsed.time_stamp, parsed.signature, trust_anchors=[root])
    assert verified.hash_algorithm == "sm3" and verified.hashed_message == sm3(parsed.signature)
    assert abs(verified.gen_time - near) < dt.timedelta(minutes=5)
    assert parsed.time_info is not None and abs(verified.gen_time - parsed.time_info) < dt.timedelta(
        minutes=1
    )
    flipped = bytearray(parsed.signature)
    flipped[-1] ^= 1
    with pytest.raises(InvalidSignature):
        verify_token(parsed.time_stamp, bytes(flipped), trust_anchors=[root])
    with pytest.raises(InvalidSignature):
        verify_token(parsed.time_stamp, parsed.tbs_bytes, trust_anchors=[root])


def _root(local: Local) -> Certificate:
    with local.reg.sessions() as s:
        return certificate_of(current_certificate(s, CertRole.ROOT))


def test_cli_timestamp_flag(local: Local, helloworld: bytes, tmp_path: Path) -> None:
    source = tmp_path / "hello.ofd"
    source.write_bytes(helloworld)
    base = ["--seal", local.es_id, "--department", local.department_id]
    now = dt.datetime.now(dt.UTC)

    stamped, plain = tmp_path / "stamped.ofd", tmp_path / "plain.ofd"
    result = CliRunner().invoke(app, ["sign", "ofd", str(source), *base, "--timestamp", "-o", str(stamped)])
    assert result.exit_code == 0, result.output
    check_token(signed_value_of(stamped.read_bytes()), _root(local), near=now)
    assert verify_bytes(stamped.read_bytes(), trust=local.trust).indication is Indication.PASSED
    result = CliRunner().invoke(app, ["sign", "ofd", str(source), *base, "-o", str(plain)])
    assert result.exit_code == 0, result.output
    assert ses.parse_ses_signature(signed_value_of(plain.read_bytes())).time_stamp is None

    detached = tmp_path / "detached.ses"
    result = CliRunner().invoke(app, ["sign", "ses", str(source), *base, "--timestamp", "-o", str(detached)])
    assert result.exit_code == 0, result.output
    check_token(detached.read_bytes(), _root(local), near=now)
    report = verify_bytes(detached.read_bytes(), detached_data=helloworld, trust=local.trust)
    assert report.indication is Indication.PASSED

    remote = CliRunner().invoke(
        app,
        ["sign", "ses", str(source), "--seal", local.es_id, "--timestamp", "--server", "http://x", "-o", "y"],
    )
    assert remote.exit_code == 2 and "--timestamp" in remote.stderr


def test_time_stamped_batch_jobs(env: BatchEnv, helloworld: bytes) -> None:
    now = dt.datetime.now(dt.UTC)
    with env.reg.sessions() as s:
        root = certificate_of(current_certificate(s, CertRole.ROOT))
    data = [BatchInput(f"doc-{n}.bin", f"doc-{n}.bin", f"payload {n}".encode()) for n in range(3)]
    with transaction(env.reg.sessions) as s:
        ofd_job = create_job(s, JobSpec(env.department_id, env.seal.es_id, timestamp=True), actor=SIGNER)
        add_items(s, env.res.blobs, ofd_job, licences(helloworld, 2))
        ses_job = create_job(
            s, JobSpec(env.department_id, env.seal.es_id, kind="ses", timestamp=True), actor=SIGNER
        )
        add_items(s, env.res.blobs, ses_job, data)
        ids = ofd_job.id, ses_job.id
    for job_id in ids:
        assert run_job(env.res, job_id, actor=SIGNER).progress.done in (2, 3)
    with env.reg.sessions() as s:
        for r in job_results(s, ids[0]):
            _result, sealed = item_output(s, env.res.blobs, ids[0], r.key)
            check_token(signed_value_of(sealed), root, near=now)
            assert verify_bytes(sealed, trust=env.trust()).indication is Indication.PASSED
        by_key = {d.key: d.data for d in data}
        for r in job_results(s, ids[1]):
            _result, signature = item_output(s, env.res.blobs, ids[1], r.key)
            check_token(signature, root, near=now)
            assert ses.parse_ses_signature(signature).property_info == f"file:{r.key}"
            report = verify_bytes(signature, detached_data=by_key[r.key], trust=env.trust())
            assert report.indication is Indication.PASSED
