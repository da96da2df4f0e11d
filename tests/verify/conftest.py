"""Fixtures for the verifier tests: interop bytes, a throw-away region PKI with a seal, an OFD sealer.

The sealer follows ofdrw's order (seal-formats.md §5.5): point OFD.xml at a signature list, write
Seal.esl, reference every file then in the package (continue mode: not the signature list), write
Signature.xml, sign SM3 of its bytes. It exists only to give the verifier documents it has never
seen; the project's real signer lives elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gmpki import sm2, sm3
from gmpki.ca import issue_department_certificate, issue_root_ca, issue_seal_maker_certificate
from gmpki.cms import CmsAlgorithm, build_signed_data, sign_detached
from gmpki.ofd import OfdPackage
from gmpki.seal import build_seal_info, make_seal, make_ses_signature
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, now_utc
from verify import FileTrustSource

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass(frozen=True)
class Pki:
    root: Certificate
    root_signer: InMemorySigner
    maker: Certificate
    maker_signer: InMemorySigner
    department: Certificate
    department_signer: InMemorySigner
    outsider: Certificate  # issued by the same root, not in the seal's list
    outsider_signer: InMemorySigner
    seal: bytes
    created: dt.datetime
    root_pem: Path

    def trust(self) -> FileTrustSource:
        return FileTrustSource.from_paths([self.root_pem])

    def sign(self, data_hash: bytes, property_info: str, when: dt.datetime | None = None) -> bytes:
        return make_ses_signature(
            self.seal,
            data_hash,
            property_info,
            self.department.der,
            self.department_signer,
            when or now_utc(),
        )


def _signer() -> InMemorySigner:
    return InMemorySigner(sm2.SM2PrivateKey.generate())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root_signer, maker_signer, dept_signer, outsider_signer = (_signer() for _ in range(4))
    root = issue_root_ca(root_signer, build_name("eseal 测试根 CA", organization="eseal tests"))
    maker = issue_seal_maker_certificate(
        root_signer, root, maker_signer.public_key, build_name("测试制章系统", organization="eseal tests")
    )
    department = issue_department_certificate(
        root_signer, root, dept_signer.public_key, build_name("测试局办公室", organization="eseal tests")
    )
    outsider = issue_department_certificate(
        root_signer, root, outsider_signer.public_key, build_name("无权用章部门", organization="eseal tests")
    )
    created = now_utc() - dt.timedelta(minutes=1)
    info = build_seal_info(
        es_id="TEST-3301-0001",
        name="测试局公章",
        seal_type=1,
        certs=[department.der],
        create_date=created,
        valid_start=created,
        valid_end=created + dt.timedelta(days=365),
        picture_type="PNG",
        picture_data=PICTURE,
        picture_width=40,
        picture_height=40,
        vid="eseal-tests",
    )
    seal = make_seal(info, maker.der, maker_signer)
    root_pem = tmp_path_factory.mktemp("trust") / "root.pem"
    root_pem.write_text(root.to_pem())
    return Pki(
        root,
        root_signer,
        maker,
        maker_signer,
        department,
        dept_signer,
        outsider,
        outsider_signer,
        seal,
        created,
        root_pem,
    )


@pytest.fixture(scope="session")
def interop_file(interop_dir: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        return (interop_dir / name).read_bytes()

    return read


def rewrite_entry(ofd: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    """A copy of the package with one entry's bytes changed (all others byte-identical)."""
    pkg = OfdPackage(ofd)
    return pkg.rewrite({name: change(pkg.read(name))})


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


NS = 'xmlns:ofd="http://www.ofdspec.org/2016"'
SIGN_DIR = "Doc_0/Signs/Sign_0"


def seal_ofd(
    ofd: bytes,
    pki: Pki,
    *,
    when: dt.datetime | None = None,
    signer_cert: str = "department",
    time_stamp: bytes | Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Seal an unsigned single-document OFD the way ofdrw does (continue mode); ``time_stamp`` is
    passed to make_ses_signature (a token, or a function of the signature value)."""
    pkg = OfdPackage(ofd)
    ofd_xml = pkg.read("OFD.xml").decode("utf-8")
    assert "Signatures>" not in ofd_xml
    ofd_xml = ofd_xml.replace(
        "</ofd:DocBody>", "<ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures></ofd:DocBody>"
    )
    signatures = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signatures {NS}><ofd:MaxSignId>2</ofd:MaxSignId>'
        f'<ofd:Signature ID="1" Type="Seal" BaseLoc="/{SIGN_DIR}/Signature.xml"/></ofd:Signatures>'
    ).encode()
    files = {name: pkg.read(name) for name in pkg.names}
    files["OFD.xml"] = ofd_xml.encode("utf-8")
    files[f"{SIGN_DIR}/Seal.esl"] = pki.seal
    references = "".join(
        f'<ofd:Reference FileRef="/{name}"><ofd:CheckValue>{base64.b64encode(sm3.sm3(data)).decode()}'
        "</ofd:CheckValue></ofd:Reference>"
        for name, data in files.items()
    )
    signature_xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signature {NS}><ofd:SignedInfo>'
        '<ofd:Provider ProviderName="eseal-tests" Version="0.1" Company="eseal"/>'
        "<ofd:SignatureMethod>1.2.156.10197.1.501</ofd:SignatureMethod>"
        f'<ofd:References CheckMethod="1.2.156.10197.1.401">{references}</ofd:References>'
        '<ofd:StampAnnot ID="2" PageRef="1" Boundary="50 50 40 40"/>'
        f"<ofd:Seal><ofd:BaseLoc>/{SIGN_DIR}/Seal.esl</ofd:BaseLoc></ofd:Seal>"
        f"</ofd:SignedInfo><ofd:SignedValue>/{SIGN_DIR}/SignedValue.dat</ofd:SignedValue></ofd:Signature>"
    ).encode()
    cert, key = (
        (pki.department, pki.department_signer)
        if signer_cert == "department"
        else (pki.outsider, pki.outsider_signer)
    )
    signed_value = make_ses_signature(
        pki.seal,
        sm3.sm3(signature_xml),
        f"/{SIGN_DIR}/Signature.xml",
        cert.der,
        key,
        when or now_utc(),
        time_stamp=time_stamp,
        require_listed_signer=signer_cert == "department",
    )
    return pkg.rewrite(
        {
            "OFD.xml": files["OFD.xml"],
            "Doc_0/Signs/Signatures.xml": signatures,
            f"{SIGN_DIR}/Seal.esl": pki.seal,
            f"{SIGN_DIR}/Signature.xml": signature_xml,
            f"{SIGN_DIR}/SignedValue.dat": signed_value,
        }
    )


def sign_type_ofd(
    ofd: bytes,
    cert: Certificate,
    signer: InMemorySigner,
    *,
    when: dt.datetime | None = None,
    embedded: bool = False,
    signature_timestamp: Callable[[bytes], bytes] | None = None,
    chain: tuple[Certificate, ...] = (),
) -> bytes:
    """Sign an unsigned single-document OFD with a Type="Sign" signature (GM/T 0099 §7.2.2): a
    GB/T 35275 SignedData over Signature.xml in SignedValue.dat, either detached with messageDigest
    = SM3(Signature.xml) (ofdrw's PKCS#9 container) or embedding that digest as its content."""
    pkg = OfdPackage(ofd)
    ofd_xml = pkg.read("OFD.xml").decode("utf-8")
    ofd_xml = ofd_xml.replace(
        "</ofd:DocBody>", "<ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures></ofd:DocBody>"
    )
    signatures = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signatures {NS}><ofd:MaxSignId>1</ofd:MaxSignId>'
        f'<ofd:Signature ID="1" Type="Sign" BaseLoc="/{SIGN_DIR}/Signature.xml"/></ofd:Signatures>'
    ).encode()
    files = {name: pkg.read(name) for name in pkg.names}
    files["OFD.xml"] = ofd_xml.encode("utf-8")
    references = "".join(
        f'<ofd:Reference FileRef="/{name}"><ofd:CheckValue>{base64.b64encode(sm3.sm3(data)).decode()}'
        "</ofd:CheckValue></ofd:Reference>"
        for name, data in files.items()
    )
    signed_at = when or now_utc()
    signature_xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signature {NS}><ofd:SignedInfo>'
        '<ofd:Provider ProviderName="eseal-tests" Version="0.1" Company="eseal"/>'
        "<ofd:SignatureMethod>1.2.156.10197.1.501</ofd:SignatureMethod>"
        f"<ofd:SignatureDateTime>{signed_at.strftime('%Y%m%d%H%M%SZ')}</ofd:SignatureDateTime>"
        f'<ofd:References CheckMethod="1.2.156.10197.1.401">{references}</ofd:References>'
        f"</ofd:SignedInfo><ofd:SignedValue>/{SIGN_DIR}/SignedValue.dat</ofd:SignedValue></ofd:Signature>"
    ).encode()
    certificates = [cert.der, *(c.der for c in chain)]
    if embedded:
        digest = sm3.sm3(signature_xml)
        signed_value = build_signed_data(
            sign=signer.sign,
            algorithm=CmsAlgorithm.SM2,
            certificates=certificates,
            content_digest=sm3.sm3(digest),
            econtent=digest,
            signing_time=signed_at,
            signature_timestamp=signature_timestamp,
        )
    else:
        signed_value = sign_detached(
            signature_xml,
            sign=signer.sign,
            algorithm=CmsAlgorithm.SM2,
            certificates=certificates,
            signing_time=signed_at,
            signature_timestamp=signature_timestamp,
        )
    return pkg.rewrite(
        {
            "OFD.xml": files["OFD.xml"],
            "Doc_0/Signs/Signatures.xml": signatures,
            f"{SIGN_DIR}/Signature.xml": signature_xml,
            f"{SIGN_DIR}/SignedValue.dat": signed_value,
        }
    )
