"""POST /v1/tsa over real HTTP (the region's SM2 TSA), and the TSA client with its fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from core.errors import InvalidSignature
from gmpki import sm3
from gmpki.path_validation import PathValidationError
from gmpki.tsp import (
    FailureInfo,
    TimestampRejected,
    build_request,
    parse_request,
    parse_response,
    verify_token,
)
from gmpki.x509 import Certificate
from hsm_adapters.keystore import KeyStore
from seal_registry.pki import CertRole, certificate_of, current_certificate
from signer.tsa import TimeStampAuthority, TimestampClient, TimestampUnavailable, request_timestamp

from .conftest import LiveServer, Sm2Pki, run_openssl

DATA = b"time-stamp me over HTTP\n"
TSQ = {"Content-Type": "application/timestamp-query"}


def _region(server: LiveServer) -> tuple[Certificate, Certificate]:
    with server.ctx.sessions() as s:
        return (
            certificate_of(current_certificate(s, CertRole.ROOT)),
            certificate_of(current_certificate(s, CertRole.TSA)),
        )


def test_openssl_queries_over_http(live_server: LiveServer, openssl: str, tmp_path: Path) -> None:
    root, tsa_cert = _region(live_server)
    (tmp_path / "f").write_bytes(DATA)
    serials: set[int] = set()
    with live_server.client() as c:
        for digest in ("sha256", "sm3", "sha256", "sm3"):
            made = run_openssl(
                openssl,
                "ts",
                "-query",
                "-data",
                tmp_path / "f",
                f"-{digest}",
                "-cert",
                "-out",
                tmp_path / "q.tsq",
            )
            assert made.returncode == 0, made.stderr
            query = (tmp_path / "q.tsq").read_bytes()
            r = c.post("/v1/tsa", content=query, headers=TSQ)
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/timestamp-reply"
            response = parse_response(r.content)
            assert response.granted and response.token is not None
            nonce = parse_request(query).nonce
            result = verify_token(response.token, DATA, nonce=nonce, trust_anchors=[root])
            assert result.nonce == nonce and result.hash_algorithm == digest
            assert result.tsa_certificate == tsa_cert.der
            serials.add(result.serial_number)
            (tmp_path / "r.tsr").write_bytes(r.content)
            shown = run_openssl(openssl, "ts", "-reply", "-in", tmp_path / "r.tsr", "-text")
            assert shown.returncode == 0, shown.stderr
            assert b"Status: Granted." in shown.stdout
            assert f"Hash Algorithm: {digest}".encode() in shown.stdout
    assert len(serials) == 4


def test_rejections_and_http_errors(live_server: LiveServer, openssl: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(DATA)
    made = run_openssl(openssl, "ts", "-query", "-data", tmp_path / "f", "-md5", "-out", tmp_path / "q.tsq")
    assert made.returncode == 0, made.stderr
    with live_server.client() as c:
        md5 = c.post("/v1/tsa", content=(tmp_path / "q.tsq").read_bytes(), headers=TSQ)
        assert md5.status_code == 200 and md5.headers["content-type"] == "application/timestamp-reply"
        rejected = parse_response(md5.content)
        assert rejected.status == "rejection" and rejected.failure_info == {"bad_alg"}

        garbage = c.post("/v1/tsa", content=b"\x30\x05garbage", headers=TSQ)
        assert garbage.status_code == 200
        assert parse_response(garbage.content).failure_info == {"bad_data_format"}
        empty = c.post("/v1/tsa", content=b"", headers=TSQ)
        assert parse_response(empty.content).failure_info == {"bad_data_format"}

        for headers in (
            {"Content-Type": "application/octet-stream"},
            {"Content-Type": "application/json"},
            {},
        ):
            wrong = c.post("/v1/tsa", content=(tmp_path / "q.tsq").read_bytes(), headers=headers)
            assert wrong.status_code == 415
            assert wrong.headers["content-type"].startswith("application/problem+json")
            assert wrong.json()["code"] == "unsupported_media_type"
        # Parameters on the media type are allowed.
        ok = c.post("/v1/tsa", content=b"x", headers={"Content-Type": "Application/Timestamp-Query; a=b"})
        assert ok.status_code == 200

        big = c.post("/v1/tsa", content=b"\x30" * (64 * 1024 + 1), headers=TSQ)
        assert big.status_code == 413 and big.json()["code"] == "input_too_large"

        def chunks() -> object:
            for _ in range(70):
                yield b"\x00" * 1024

        streamed = c.post("/v1/tsa", content=chunks(), headers=TSQ)  # type: ignore[arg-type]
        assert streamed.status_code == 413
        assert "/v1/tsa" in c.get("/openapi.json").json()["paths"]


def test_client_against_the_service_and_fallback(
    live_server: LiveServer, keystore: KeyStore, sm2_pki: Sm2Pki
) -> None:
    root, tsa_cert = _region(live_server)
    url = f"{live_server.url}/v1/tsa"
    digest = sm3.sm3(DATA)
    token = TimestampClient([url], trust_anchors=[root]).timestamp(digest, "sm3")
    assert verify_token(token, DATA).tsa_certificate == tsa_cert.der
    sha = hashlib.sha256(DATA).digest()
    assert verify_token(request_timestamp(url, sha, "sha256", nonce=42), digest=sha).nonce == 42

    with pytest.raises(TimestampRejected) as rejected:
        request_timestamp(url, bytes(48), "sha384")
    assert rejected.value.failure is FailureInfo.BAD_ALG
    with pytest.raises(TimestampUnavailable):
        request_timestamp(f"{live_server.url}/v1/nope", digest)
    with pytest.raises(PathValidationError):  # the test root does not anchor the region's TSA
        request_timestamp(url, digest, trust_anchors=[sm2_pki.root])

    fallback = TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)
    dead = ["http://127.0.0.1:9/v1/tsa", f"{live_server.url}/v1/nope"]
    via_fallback = TimestampClient(dead, fallback, timeout=2).timestamp(digest)
    assert verify_token(via_fallback, digest=digest).tsa_certificate == sm2_pki.tsa.der
    # The first URL that works wins; the fallback is not used.
    mixed = TimestampClient([*dead, url], fallback, timeout=2).timestamp(digest)
    assert verify_token(mixed, digest=digest).tsa_certificate == tsa_cert.der
    with pytest.raises(TimestampUnavailable) as unavailable:
        TimestampClient(dead, timeout=2).timestamp(digest)
    assert len(unavailable.value.details["failures"]) == 2


def test_client_rejects_a_reply_with_the_wrong_nonce(sm2_pki: Sm2Pki, keystore: KeyStore) -> None:
    tsa = TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)

    def replay(request: httpx.Request) -> httpx.Response:
        query = parse_request(request.content)
        token = tsa.timestamp(query.digest, "sm3", nonce=(query.nonce or 0) + 1)
        from gmpki.tsp import build_response

        return httpx.Response(
            200, content=build_response(token), headers={"Content-Type": "application/timestamp-reply"}
        )

    with pytest.raises(InvalidSignature, match="nonce"):
        request_timestamp("http://tsa.invalid/", sm3.sm3(DATA), transport=httpx.MockTransport(replay))


def test_uninitialised_region_answers_system_failure(tmp_path: Path) -> None:
    from api.context import open_context
    from api.routes.tsa import _respond
    from core.settings import Settings

    settings = Settings(var_dir=tmp_path / "var", keystore_passphrase="test passphrase")
    ctx = open_context(settings)
    try:
        response = parse_response(_respond(ctx, build_request(sm3.sm3(DATA))))
    finally:
        ctx.close()
    assert response.status == "rejection" and response.failure_info == {"system_failure"}
    assert "eseal init" in response.status_text[1]
