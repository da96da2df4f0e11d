"""The OpenSSL 3 SM2 verification backend (gmpki.openssl_sm2) and its use by gmpki.sm2."""

from __future__ import annotations

import ctypes
import gc
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gmssl_pyx
import pytest

from core.errors import CryptoError, InvalidInput
from gmpki import openssl_sm2, sm2
from tests.conftest import require_or_skip

# GB/T 32918.5-2017 Annex A, signer ID 1234567812345678.
STD_SECRET = bytes.fromhex("3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8")
STD_MESSAGE = b"message digest"
STD_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
STD_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA


@pytest.fixture(autouse=True)
def _backend() -> Iterator[None]:
    require_or_skip(openssl_sm2.AVAILABLE, "OpenSSL 3 libcrypto with SM2 not available")
    openssl_sm2.clear_cache()
    yield
    openssl_sm2.clear_cache()


@pytest.fixture(scope="module")
def key() -> sm2.SM2PrivateKey:
    return sm2.SM2PrivateKey.generate()


def gmssl_verify(pub: sm2.SM2PublicKey, digest: bytes, sig: bytes) -> bool:
    try:
        return bool(gmssl_pyx.sm2_verify_sm3_digest(pub.xy, digest, sig))
    except gmssl_pyx.GmsslInnerError:
        return False


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def der_int_padded(v: int) -> bytes:
    """A non-minimal DER INTEGER (an extra leading zero byte): BER-valid, DER-invalid."""
    body = b"\x00" + v.to_bytes(v.bit_length() // 8 + 1, "big")
    return b"\x02" + bytes([len(body)]) + body


# --- known answer and basic behaviour --------------------------------------------------------------
def test_standard_vector_verifies() -> None:
    pub = sm2.SM2PrivateKey(STD_SECRET).public_key
    digest = sm2.message_digest(pub, STD_MESSAGE)
    sig = sm2.encode_signature(STD_R, STD_S)
    assert openssl_sm2.verify_digest(pub.point, digest, sig) is True
    assert openssl_sm2.verify_digest(pub.point, flip(digest, 31), sig) is False
    assert openssl_sm2.verify_digest(pub.point, digest, sm2.encode_signature(STD_R, STD_S ^ 1)) is False


def test_loaded_library_is_openssl_3() -> None:
    assert openssl_sm2.OPENSSL_VERSION is not None
    assert openssl_sm2.OPENSSL_VERSION.startswith("OpenSSL 3.")


def test_gmpki_signature_verifies(key: sm2.SM2PrivateKey) -> None:
    msg = b"seal TBS bytes"
    sig = sm2.sign(key, msg)
    digest = sm2.message_digest(key.public_key, msg)
    assert openssl_sm2.verify_digest(key.public_key.point, digest, sig) is True
    # And through gmpki.sm2, which routes to this backend.
    assert sm2.verify(key.public_key, msg, sig) is True
    assert sm2.verify(key.public_key, msg + b"!", sig) is False


def test_signer_id_is_gmpki_business(key: sm2.SM2PrivateKey) -> None:
    # OpenSSL only sees e, so a non-default ID works as long as gmpki computes Z with it.
    uid = b"ALICE123@YAHOO.COM"
    sig = sm2.sign_digest(key, sm2.message_digest(key.public_key, b"m", uid))
    assert sm2.verify(key.public_key, b"m", sig, uid=uid) is True
    assert sm2.verify(key.public_key, b"m", sig) is False


@pytest.mark.parametrize(
    "tamper",
    [
        "digest",
        "r_zero",
        "s_zero",
        "s_plus_n",
        "r_plus_n",
        "r_is_n",
        "wrong_key",
        "non_minimal_der",
        "raw_rs",
    ],
)
def test_invalid_signatures_rejected(key: sm2.SM2PrivateKey, tamper: str) -> None:
    msg = b"document"
    digest = sm2.message_digest(key.public_key, msg)
    sig = sm2.sign_digest(key, digest)
    r, s = sm2.decode_signature(sig)
    point = key.public_key.point
    assert openssl_sm2.verify_digest(point, digest, sig) is True  # the untampered baseline
    if tamper == "digest":
        digest = flip(digest, 7)
    elif tamper == "r_zero":
        sig = sm2.encode_signature(0, s)
    elif tamper == "s_zero":
        sig = sm2.encode_signature(r, 0)
    elif tamper == "s_plus_n":
        sig = sm2.encode_signature(r, s + sm2.N)
    elif tamper == "r_plus_n":
        sig = sm2.encode_signature(r + sm2.N, s)
    elif tamper == "r_is_n":
        sig = sm2.encode_signature(sm2.N, s)
    elif tamper == "wrong_key":
        point = sm2.SM2PrivateKey.generate().public_key.point
    elif tamper == "non_minimal_der":
        body = der_int_padded(r) + sm2._der_int(s)
        sig = b"\x30" + bytes([len(body)]) + body
    elif tamper == "raw_rs":
        sig = sm2.der_to_raw(sig)
    # The backend alone rejects (defence in depth) ...
    assert openssl_sm2.verify_digest(point, digest, sig) is False
    # ... and so does the public entry point, which decodes strictly first.
    assert sm2.verify_digest(sm2.SM2PublicKey(point), digest, sig) is False


@pytest.mark.parametrize(
    ("point", "digest", "sig"),
    [
        (b"\x04" + bytes(64), bytes(32), b"0\x06\x02\x01\x01\x02\x01\x01"),  # (0, 0) not on the curve
        (b"\x02" + bytes(32), bytes(32), b"0\x06\x02\x01\x01\x02\x01\x01"),  # compressed form refused
        (b"", bytes(32), b"0\x06\x02\x01\x01\x02\x01\x01"),
        (None, bytes(31), None),
        (None, bytes(33), None),
        (None, bytes(32), b""),
        (None, bytes(32), b"\x30" * 81),
        (None, bytes(32), b"\xff" * 72),
    ],
)
def test_bad_inputs_are_false_not_errors(
    key: sm2.SM2PrivateKey, point: bytes | None, digest: bytes, sig: bytes | None
) -> None:
    good_sig = sm2.sign_digest(key, bytes(32))
    assert openssl_sm2.verify_digest(key.public_key.point, bytes(32), good_sig) is True
    result = openssl_sm2.verify_digest(
        key.public_key.point if point is None else point, digest, good_sig if sig is None else sig
    )
    assert result is False


def test_off_curve_point_rejected_by_public_key_class(key: sm2.SM2PrivateKey) -> None:
    bad = bytearray(key.public_key.point)
    bad[64] ^= 0x01
    with pytest.raises(InvalidInput):
        sm2.SM2PublicKey(bytes(bad))
    # OpenSSL's decoder refuses the same point on its own, and such a key is not cached.
    sig = sm2.sign_digest(key, bytes(32))
    assert openssl_sm2.verify_digest(bytes(bad), bytes(32), sig) is False
    assert openssl_sm2.cache_len() == 0


# --- OpenSSL CLI interop ---------------------------------------------------------------------------
def _openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def cli_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sm2.SM2PublicKey]:
    require_or_skip(shutil.which("openssl") is not None, "openssl CLI not installed")
    path = tmp_path_factory.mktemp("cli") / "key.pem"
    _openssl("genpkey", "-algorithm", "SM2", "-out", str(path))
    spki = _openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")
    # Our assembled SPKI must be byte-for-byte what OpenSSL itself emits for an SM2 key.
    assert spki[:-65] == openssl_sm2._SPKI_PREFIX
    return path, sm2.SM2PublicKey(spki[-65:])


@pytest.mark.parametrize("uid", [b"1234567812345678", b"ALICE123@YAHOO.COM"])
@pytest.mark.parametrize("tool", ["pkeyutl", "dgst"])
def test_openssl_cli_signatures_verify(
    cli_key: tuple[Path, sm2.SM2PublicKey], tmp_path: Path, tool: str, uid: bytes
) -> None:
    key_path, pub = cli_key
    msg = random.Random(f"{tool}{uid!r}").randbytes(3000)
    msg_path = tmp_path / "msg.bin"
    msg_path.write_bytes(msg)
    distid = f"distid:{uid.decode()}"
    if tool == "pkeyutl":
        sig = _openssl(
            "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", distid,
            "-inkey", str(key_path), "-in", str(msg_path),
        )  # fmt: skip
    else:
        sig = _openssl("dgst", "-sm3", "-sign", str(key_path), "-sigopt", distid, str(msg_path))
    digest = sm2.message_digest(pub, msg, uid)
    assert openssl_sm2.verify_digest(pub.point, digest, sig) is True
    assert sm2.verify(pub, msg, sig, uid=uid) is True
    assert sm2.verify(pub, flip(msg, 1500), sig, uid=uid) is False
    other_uid = b"1234567812345678" if uid != b"1234567812345678" else b"ALICE123@YAHOO.COM"
    assert sm2.verify(pub, msg, sig, uid=other_uid) is False


# --- agreement with gmssl-pyx ----------------------------------------------------------------------
def test_cross_check_with_gmssl_1000_messages() -> None:
    rng = random.Random(20240601)
    keys = [sm2.SM2PrivateKey.generate() for _ in range(8)]
    outcomes = {True: 0, False: 0}
    for i in range(1000):
        k = keys[i % len(keys)]
        digest = sm2.message_digest(k.public_key, rng.randbytes(rng.randrange(0, 2048)))
        sig = sm2.sign_digest(k, digest)
        pub = k.public_key
        choice = rng.randrange(4)
        if choice == 1:
            digest = flip(digest, rng.randrange(32))
        elif choice == 2:
            r, s = sm2.decode_signature(sig)
            sig = sm2.encode_signature(r, s ^ (1 << rng.randrange(250)))
        elif choice == 3:
            pub = keys[(i + 1) % len(keys)].public_key
        ours = openssl_sm2.verify_digest(pub.point, digest, sig)
        assert ours == gmssl_verify(pub, digest, sig), f"disagreement at {i} (tamper {choice})"
        assert ours == (choice == 0)
        outcomes[ours] += 1
    assert outcomes[True] > 150 and outcomes[False] > 450


# --- fallback and availability ---------------------------------------------------------------------
def test_sm2_falls_back_to_gmssl_when_unavailable(
    key: sm2.SM2PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    sig = sm2.sign(key, b"x")
    monkeypatch.setattr(openssl_sm2, "AVAILABLE", False)
    assert sm2.verify(key.public_key, b"x", sig) is True
    assert sm2.verify(key.public_key, b"y", sig) is False
    assert openssl_sm2.cache_len() == 0  # the OpenSSL path was not taken


def test_unavailable_backend_raises_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openssl_sm2, "_lib", None)
    with pytest.raises(CryptoError):
        openssl_sm2.verify_digest(b"\x04" + bytes(64), bytes(32), b"0")


def test_failed_verifies_print_nothing_and_leave_no_errors(
    key: sm2.SM2PrivateKey, capfd: pytest.CaptureFixture[str]
) -> None:
    lib = openssl_sm2._lib
    assert lib is not None
    peek = ctypes.CFUNCTYPE(ctypes.c_ulong)(("ERR_peek_error", lib))
    sig = sm2.sign(key, b"a")
    bad_point = b"\x04" + bytes(64)
    for _ in range(50):
        assert sm2.verify(key.public_key, b"b", sig) is False
        assert openssl_sm2.verify_digest(bad_point, bytes(32), sig) is False  # decoder error path
        assert openssl_sm2.verify_digest(key.public_key.point, bytes(32), b"\x30\x03\x02\x01") is False
        assert peek() == 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --- cache -----------------------------------------------------------------------------------------
def test_cache_is_bounded_and_frees_evicted_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openssl_sm2, "CACHE_SIZE", 3)
    keys = [sm2.SM2PrivateKey.generate() for _ in range(5)]
    sigs = [sm2.sign_digest(k, bytes(32)) for k in keys]
    assert openssl_sm2.verify_digest(keys[0].public_key.point, bytes(32), sigs[0])
    first = openssl_sm2._cache[keys[0].public_key.point]
    finalizer = first._finalizer
    del first
    for k, sig in zip(keys[1:], sigs[1:], strict=True):
        assert openssl_sm2.verify_digest(k.public_key.point, bytes(32), sig)
    assert openssl_sm2.cache_len() == 3
    assert keys[0].public_key.point not in openssl_sm2._cache
    gc.collect()
    assert not finalizer.alive  # EVP_PKEY_free ran for the evicted key
    # Re-verifying with the evicted key decodes it again and still works.
    assert openssl_sm2.verify_digest(keys[0].public_key.point, bytes(32), sigs[0])
    assert openssl_sm2.verify_digest(keys[0].public_key.point, bytes(32), sigs[1]) is False


def test_cache_hit_reuses_key(key: sm2.SM2PrivateKey) -> None:
    sig = sm2.sign_digest(key, bytes(32))
    openssl_sm2.verify_digest(key.public_key.point, bytes(32), sig)
    first = openssl_sm2._cache[key.public_key.point]
    openssl_sm2.verify_digest(key.public_key.point, bytes(32), sig)
    assert openssl_sm2._cache[key.public_key.point] is first
    assert openssl_sm2.cache_len() == 1


# --- threads ---------------------------------------------------------------------------------------
def _cases(n_keys: int, per_key: int) -> list[tuple[bytes, bytes, bytes, bool]]:
    rng = random.Random(n_keys * 1000 + per_key)
    out: list[tuple[bytes, bytes, bytes, bool]] = []
    for _ in range(n_keys):
        k = sm2.SM2PrivateKey.generate()
        for j in range(per_key):
            digest = rng.randbytes(32)
            sig = sm2.sign_digest(k, digest)
            valid = j % 2 == 0
            out.append((k.public_key.point, digest if valid else flip(digest, j % 32), sig, valid))
    rng.shuffle(out)
    return out


def _run_threads(cases: list[tuple[bytes, bytes, bytes, bool]], n_threads: int) -> list[str]:
    barrier = threading.Barrier(n_threads)
    failures: list[str] = []

    def work(offset: int) -> None:
        barrier.wait()
        for i in range(offset, len(cases), n_threads):
            point, digest, sig, expected = cases[i]
            try:
                got = openssl_sm2.verify_digest(point, digest, sig)
            except Exception as exc:  # a failure in a thread must reach the assertion below
                failures.append(f"{i}: {exc!r}")
                continue
            if got is not expected:
                failures.append(f"{i}: expected {expected}, got {got}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_two_threads_verify_correctly() -> None:
    assert _run_threads(_cases(n_keys=4, per_key=100), n_threads=2) == []


def test_threads_with_constant_cache_eviction(monkeypatch: pytest.MonkeyPatch) -> None:
    # A cache of 2 with 12 keys evicts on almost every call, so keys are freed while other threads
    # may hold them: the finaliser must wait until no thread uses the key.
    monkeypatch.setattr(openssl_sm2, "CACHE_SIZE", 2)
    assert _run_threads(_cases(n_keys=12, per_key=20), n_threads=4) == []
    assert openssl_sm2.cache_len() <= 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")
def test_forked_child_verifies_with_inherited_cache(key: sm2.SM2PrivateKey) -> None:
    sig = sm2.sign_digest(key, bytes(32))
    assert openssl_sm2.verify_digest(key.public_key.point, bytes(32), sig)
    with openssl_sm2._cache_lock:  # a fork while the lock is held must not deadlock the child
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            ok = openssl_sm2.verify_digest(key.public_key.point, bytes(32), sig) and not (
                openssl_sm2.verify_digest(key.public_key.point, bytes(32), sig[:-1] + bytes([sig[-1] ^ 1]))
            )
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child deadlocked on the key cache lock")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(waited[1]) == 0
