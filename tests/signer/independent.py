"""An independent reader of sealed OFD packages, written from seal-formats.md §4–5 alone.

It shares no code with eseal: zipfile, ElementTree, hashlib's SM3, a twenty-line DER walker and the
OpenSSL command line for SM2. The signer's output is judged by this reader as well as by
``verify.verify_bytes``, so a mistake shared by the signer and the project's verifier still shows.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

NS = {"ofd": "http://www.ofdspec.org/2016"}
SM2_WITH_SM3_DER = bytes.fromhex("06082a811ccf55018375")
DEFAULT_ID = "1234567812345678"


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


# --- a tiny DER walker ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tlv:
    tag: int
    start: int
    content: int
    end: int

    def raw(self, data: bytes) -> bytes:
        return data[self.start : self.end]

    def value(self, data: bytes) -> bytes:
        return data[self.content : self.end]


def tlv(data: bytes, pos: int) -> Tlv:
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        length, header = first, 2
    else:
        n = first & 0x7F
        length, header = int.from_bytes(data[pos + 2 : pos + 2 + n], "big"), 2 + n
    end = pos + header + length
    assert end <= len(data), "truncated DER"
    return Tlv(tag, pos, pos + header, end)


def kids(data: bytes, node: Tlv) -> list[Tlv]:
    out, pos = [], node.content
    while pos < node.end:
        item = tlv(data, pos)
        out.append(item)
        pos = item.end
    return out


@dataclass(frozen=True)
class SesParts:
    tbs: bytes  # signed by the signer
    data_hash: bytes
    property_info: str
    time_info: str
    seal: bytes
    seal_info: bytes  # signed by the maker
    maker_cert: bytes
    maker_signature: bytes
    signer_cert: bytes
    signer_signature: bytes
    algorithms_ok: bool


def split_ses(data: bytes) -> SesParts:
    """The v4 SES_Signature fields by position (§2.7), every slice as it is in the file."""
    root = tlv(data, 0)
    assert root.tag == 0x30 and root.end == len(data)
    tbs, cert, alg, sig = kids(data, root)[:4]
    version, eseal, time_info, data_hash, prop = kids(data, tbs)[:5]
    assert (version.tag, eseal.tag, time_info.tag, data_hash.tag, prop.tag) == (0x02, 0x30, 0x18, 0x03, 0x16)
    seal_info, maker_cert, maker_alg, maker_sig = kids(data, eseal)[:4]
    hash_bits = data_hash.value(data)
    assert hash_bits[0] == 0 and len(hash_bits) == 33
    return SesParts(
        tbs=tbs.raw(data),
        data_hash=hash_bits[1:],
        property_info=prop.value(data).decode("ascii"),
        time_info=time_info.value(data).decode("ascii"),
        seal=eseal.raw(data),
        seal_info=seal_info.raw(data),
        maker_cert=maker_cert.value(data),
        maker_signature=maker_sig.value(data)[1:],
        signer_cert=cert.value(data),
        signer_signature=sig.value(data)[1:],
        algorithms_ok=alg.raw(data) == SM2_WITH_SM3_DER and maker_alg.raw(data) == SM2_WITH_SM3_DER,
    )


# --- SM2 through the OpenSSL CLI ---------------------------------------------------------------------------
def openssl_sm2_verify(cert_der: bytes, message: bytes, signature_der: bytes, work: Path) -> bool:
    work.mkdir(parents=True, exist_ok=True)
    (work / "cert.der").write_bytes(cert_der)
    (work / "msg").write_bytes(message)
    (work / "sig").write_bytes(signature_der)
    pub = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(work / "cert.der"), "-pubkey", "-noout"],
        capture_output=True,
        check=True,
    ).stdout
    (work / "pub.pem").write_bytes(pub)
    result = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(work / "pub.pem"),
            "-rawin",
            "-in",
            str(work / "msg"),
            "-sigfile",
            str(work / "sig"),
            "-digest",
            "sm3",
            "-pkeyopt",
            f"distid:{DEFAULT_ID}",
        ],
        capture_output=True,
    )
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


# --- the package ------------------------------------------------------------------------------------------
def _path(loc: str, base: str = "") -> str:
    if loc.startswith("/"):
        return loc.lstrip("/")
    directory = base.rsplit("/", 1)[0] if "/" in base else ""
    return f"{directory}/{loc}" if directory else loc


@dataclass
class SignatureCheck:
    signature_xml: str
    references: dict[str, bool] = field(default_factory=dict)
    check_method: str | None = None
    data_hash_ok: bool = False
    property_info: str = ""
    maker_signature_ok: bool = False
    signer_signature_ok: bool = False
    seal_file_equal: bool | None = None
    algorithms_ok: bool = False
    stamps: list[dict[str, str]] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        return (
            bool(self.references)
            and all(self.references.values())
            and self.check_method == "1.2.156.10197.1.401"
            and self.data_hash_ok
            and self.property_info == "/" + self.signature_xml
            and self.maker_signature_ok
            and self.signer_signature_ok
            and self.seal_file_equal is not False
            and self.algorithms_ok
        )


def check_sealed_ofd(data: bytes, work: Path) -> list[SignatureCheck]:
    """Every signature of the first DocBody, checked as §4.4 chains them."""
    z = zipfile.ZipFile(io.BytesIO(data))
    names = set(z.namelist())
    ofd = ET.fromstring(z.read("OFD.xml"))
    loc = ofd.findtext("ofd:DocBody/ofd:Signatures", namespaces=NS)
    assert loc, "OFD.xml names no signature list"
    list_path = _path(loc.strip(), "OFD.xml")
    listing = ET.fromstring(z.read(list_path))
    results: list[SignatureCheck] = []
    for n, entry in enumerate(listing.findall("ofd:Signature", NS)):
        assert entry.get("Type", "Seal") == "Seal"
        xml_path = _path(entry.attrib["BaseLoc"], list_path)
        raw = z.read(xml_path)
        sig = ET.fromstring(raw)
        check = SignatureCheck(xml_path)
        refs = sig.find("ofd:SignedInfo/ofd:References", NS)
        assert refs is not None
        check.check_method = refs.get("CheckMethod")
        for ref in refs.findall("ofd:Reference", NS):
            target = _path(ref.attrib["FileRef"], xml_path)
            expected = base64.b64decode(ref.findtext("ofd:CheckValue", namespaces=NS) or "")
            check.references[target] = target in names and sm3(z.read(target)) == expected
        check.stamps = [dict(s.attrib) for s in sig.findall("ofd:SignedInfo/ofd:StampAnnot", NS)]
        value_path = _path((sig.findtext("ofd:SignedValue", namespaces=NS) or "").strip(), xml_path)
        parts = split_ses(z.read(value_path))
        check.data_hash_ok = parts.data_hash == sm3(raw)
        check.property_info = parts.property_info
        check.algorithms_ok = parts.algorithms_ok
        here = work / f"sig{n}"
        check.maker_signature_ok = openssl_sm2_verify(
            parts.maker_cert, parts.seal_info, parts.maker_signature, here / "m"
        )
        check.signer_signature_ok = openssl_sm2_verify(
            parts.signer_cert, parts.tbs, parts.signer_signature, here / "s"
        )
        seal_loc = sig.findtext("ofd:SignedInfo/ofd:Seal/ofd:BaseLoc", namespaces=NS)
        if seal_loc:
            check.seal_file_equal = z.read(_path(seal_loc.strip(), xml_path)) == parts.seal
        results.append(check)
    return results
