"""OpenNebula template text and XML: parsing into the ordered multimap, rendering back."""

from __future__ import annotations

import pytest

from onetools.one.errors import InternalError
from onetools.one.template import Template, parse, render


def test_scalars_quoted_unquoted_and_case() -> None:
    template = parse('name = "web"\nMEMORY=1024\nDescription = two words here  \nEMPTY = ""\n')
    assert template.attributes == [
        ("NAME", "web"),
        ("MEMORY", "1024"),
        ("DESCRIPTION", "two words here"),
        ("EMPTY", ""),
    ]


def test_escapes_and_multiline_quoted_values() -> None:
    template = parse('A = "say \\"hi\\" \\\\ back"\nB = "line1\nline2"\nC = "C:\\path"')
    assert template.get("A") == 'say "hi" \\ back'
    assert template.get("B") == "line1\nline2"
    assert template.get("C") == "C:\\path"  # an unknown escape stays as written


def test_vectors_repeated_keys_and_comments() -> None:
    text = """
    # a comment line
    DISK = [ IMAGE_ID = 3, SIZE = "1024" ]   # trailing comment
    DISK = [
      IMAGE = "base",
      image_uname = oneadmin
    ]
    NIC = [ ]
    CONTEXT = [ NETWORK = "YES", SSH_PUBLIC_KEY = "ssh-rsa AAA, with comma" ]
    """
    template = parse(text)
    assert template.vectors("DISK") == [
        [("IMAGE_ID", "3"), ("SIZE", "1024")],
        [("IMAGE", "base"), ("IMAGE_UNAME", "oneadmin")],
    ]
    assert template.get_all("NIC") == [[]]
    assert dict(template.vectors("CONTEXT")[0])["SSH_PUBLIC_KEY"] == "ssh-rsa AAA, with comma"
    assert [key for key, _ in template.attributes] == ["DISK", "DISK", "NIC", "CONTEXT"]


def test_xml_form() -> None:
    template = parse(
        '  <TEMPLATE><NAME>web</NAME><BODY><![CDATA[{"a": "<b>"}]]></BODY>'
        "<DISK><IMAGE_ID>1</IMAGE_ID></DISK><EMPTY/></TEMPLATE>"
    )
    assert template.attributes == [
        ("NAME", "web"),
        ("BODY", '{"a": "<b>"}'),
        ("DISK", [("IMAGE_ID", "1")]),
        ("EMPTY", ""),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("NAME", "expecting EQUAL at line 1"),
        ("A = 1\nB", "at line 2"),
        ('A = "open', "unterminated"),
        ("A = [ B = 1", "expecting COMMA or CBRACKET"),
        ("A = [ B = [ C = 1 ] ]", "vectors do not nest"),
        ("= 3", "expecting VARIABLE"),
        ('A = "x" junk', "expecting new line"),
        ("<TEMPLATE><A></TEMPLATE>", "XML Template could not be parsed"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(InternalError) as caught:
        parse(text)
    assert caught.value.message.startswith("Parse error: ")
    assert fragment in caught.value.message


def test_render_round_trip() -> None:
    attributes = {
        "name": 'a "quoted" \\ value',
        "disk": [{"image_id": 1}, {"image_id": 2, "size": "10"}],
        "context": {"network": "YES"},
        "skipped": None,
    }
    template = parse(render(attributes))
    assert template.attributes == [
        ("NAME", 'a "quoted" \\ value'),
        ("DISK", [("IMAGE_ID", "1")]),
        ("DISK", [("IMAGE_ID", "2"), ("SIZE", "10")]),
        ("CONTEXT", [("NETWORK", "YES")]),
    ]


def test_merge_replaces_every_value_of_a_name() -> None:
    base = parse("CPU = 1\nDISK = [ A = 1 ]\nDISK = [ A = 2 ]\nMEMORY = 128")
    base.merge(parse("DISK = [ A = 3 ]\nVCPU = 2"))
    assert base.attributes == [
        ("CPU", "1"),
        ("MEMORY", "128"),
        ("DISK", [("A", "3")]),
        ("VCPU", "2"),
    ]


def test_sorted_is_oned_order() -> None:
    template = Template(
        [("ZETA", "1"), ("DISK", [("SIZE", "1"), ("IMAGE", "x")]), ("ALPHA", "2"), ("DISK", "s")]
    )
    assert template.sorted() == [
        ("ALPHA", "2"),
        ("DISK", [("IMAGE", "x"), ("SIZE", "1")]),
        ("DISK", "s"),
        ("ZETA", "1"),
    ]


def test_accessors() -> None:
    template = parse("A = 1\nA = 2\nV = [ X = 1 ]")
    assert template.get("A") == "1" and template.get("V") is None and template.get("Q", "d") == "d"
    assert template.pop("A") == "1" and not template.has("A")
    template.set("V", "scalar")
    assert template.attributes == [("V", "scalar")]
    copy = template.copy()
    copy.add("W", "1")
    assert not template.has("W")


def test_control_characters_refused() -> None:
    with pytest.raises(InternalError, match="invalid character '\\\\x1b' at line 2"):
        parse('A = 1\nB = "esc\x1b"')
