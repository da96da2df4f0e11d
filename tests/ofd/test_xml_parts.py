"""Hardened XML: no DTDs or entities, bounded depth/size/elements, namespace-agnostic access."""

from __future__ import annotations

import pytest

from core.errors import InputTooLarge, MalformedData
from gmpki.ofd.xml_parts import attribute, child, child_text, children, descendants, local_name, parse_xml

STD = b'<ofd:Signatures xmlns:ofd="http://www.ofdspec.org/2016"><ofd:MaxSignId>2</ofd:MaxSignId>'
STD += b'<ofd:Signature ID="1" BaseLoc="a.xml"/><ofd:Signature ID="2" BaseLoc="b.xml"/></ofd:Signatures>'
BARE = b'<Signatures xmlns="http://www.ofdspec.org"><Signature ID="1" BaseLoc="a.xml"/>'
BARE += b'<MaxSignId>2</MaxSignId><Signature ID="2" BaseLoc="b.xml"/></Signatures>'
NONE = b'<Signatures><Signature ID="1" BaseLoc="a.xml"/><Signature ID="2" BaseLoc="b.xml"/>'
NONE += b"<MaxSignId>2</MaxSignId></Signatures>"


@pytest.mark.parametrize("document", [STD, BARE, NONE])
def test_local_names_ignore_namespace_and_order(document: bytes) -> None:
    root = parse_xml(document, name="Signatures.xml")
    assert local_name(root.tag) == "Signatures"
    assert [attribute(s, "ID") for s in children(root, "Signature")] == ["1", "2"]
    assert child_text(root, "MaxSignId") == "2"
    assert child(root, "Nothing") is None
    assert len(list(descendants(root, "Signature"))) == 2


def test_namespaced_attribute_is_found_by_local_name() -> None:
    root = parse_xml(b'<a xmlns:x="urn:x"><b x:ID="7"/></a>', name="t.xml")
    b = child(root, "b")
    assert b is not None and attribute(b, "ID") == "7"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Signatures [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Signatures><MaxSignId>&xxe;</MaxSignId></Signatures>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Signatures>&lol2;</Signatures>"""
DTD_ONLY = b'<?xml version="1.0"?><!DOCTYPE Signatures SYSTEM "http://example.invalid/x.dtd"><Signatures/>'


@pytest.mark.parametrize("document", [XXE, LAUGHS, DTD_ONLY])
def test_dtds_and_entities_are_refused(document: bytes) -> None:
    with pytest.raises(MalformedData, match=r"Signatures\.xml"):
        parse_xml(document, name="Signatures.xml")


def test_depth_limit() -> None:
    deep = b"<a>" * 100 + b"</a>" * 100
    with pytest.raises(MalformedData, match="nesting"):
        parse_xml(deep, name="deep.xml")
    very_deep = b"<a>" * 200_000 + b"</a>" * 200_000
    with pytest.raises(MalformedData):
        parse_xml(very_deep, name="deep.xml")
    parse_xml(b"<a>" * 60 + b"</a>" * 60, name="ok.xml")


def test_element_and_size_limits() -> None:
    wide = b"<a>" + b"<b/>" * 1000 + b"</a>"
    with pytest.raises(MalformedData, match="elements"):
        parse_xml(wide, name="wide.xml", max_elements=500)
    with pytest.raises(InputTooLarge):
        parse_xml(wide, name="wide.xml", max_size=100)


@pytest.mark.parametrize(
    "document", [b"", b"   ", b"<a>", b"<a></b>", b"\xff\xfe\x00", b"not xml", b"<a>\x00</a>"]
)
def test_malformed_is_typed(document: bytes) -> None:
    with pytest.raises(MalformedData):
        parse_xml(document, name="bad.xml")


def test_gbk_declared_documents_are_decoded() -> None:
    document = '<?xml version="1.0" encoding="GBK"?><a name="印章">电子印章</a>'.encode("gbk")
    root = parse_xml(document, name="gbk.xml")
    assert root.text == "电子印章"
    assert attribute(root, "name") == "印章"


def test_unknown_encoding_is_typed() -> None:
    with pytest.raises(MalformedData):
        parse_xml(b'<?xml version="1.0" encoding="no-such-codec"?><a/>', name="x.xml")


def test_declarations_are_refused_in_any_encoding() -> None:
    """The refusal reads the decoded text: a DTD in UTF-16 (bytes with NULs between the letters)
    or in GBK is found as surely as in UTF-8."""
    for encoding in ("utf-16", "utf-16-le", "gbk"):
        declared = "UTF-16" if encoding.startswith("utf-16") else "GBK"
        text = f'<?xml version="1.0" encoding="{declared}"?>' + XXE.decode().split("?>", 1)[1]
        data = text.encode(encoding)
        if encoding == "utf-16-le":
            data = b"\xff\xfe" + data
        with pytest.raises(MalformedData, match="DTD"):
            parse_xml(data, name="Signatures.xml")
    # A harmless UTF-16 part still parses.
    plain = '<?xml version="1.0" encoding="UTF-16"?><Signatures><MaxSignId>印章1</MaxSignId></Signatures>'
    root = parse_xml(plain.encode("utf-16"), name="Signatures.xml")
    assert root.findtext("MaxSignId") == "印章1"


def test_an_entity_declaration_alone_or_lower_case_is_refused() -> None:
    for document in (
        b'<?xml version="1.0"?><!ENTITY x "y"><a/>',
        b'<?xml version="1.0"?><!doctype a [<!entity x "y">]><a>&x;</a>',
        b"<a><!-- a comment quoting <!DOCTYPE is refused too: OFD parts never carry one --></a>",
    ):
        with pytest.raises(MalformedData):
            parse_xml(document, name="x.xml")


def test_limits_hold_across_chunks() -> None:
    """Limits are checked as the text is fed in chunks: a wide part is refused part-way through."""
    wide = b"<a>" + b"<b/>" * 40_000 + b"</a>"  # 160 KB: three chunks
    with pytest.raises(MalformedData, match="elements"):
        parse_xml(wide, name="wide.xml", max_elements=30_000)
    assert len(parse_xml(wide, name="wide.xml")) == 40_000
