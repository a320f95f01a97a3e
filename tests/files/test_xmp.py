"""XMP sidecars: well-formed (checked with the standard library's parser, not only lxml), merged into the
sidecars other programs write without losing a field, idempotent, and safe against hostile XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from roost.errors import JobOptionError, XmpError
from roost.files.xmp import (
    DC_NS,
    RDF_NS,
    TIFF_NS,
    Naming,
    check_naming,
    merge_sidecar,
    read_keywords,
    read_orientation,
    sidecar_path,
)

DARKTABLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="3"
   darktable:xmp_version="5">
   <!-- edited in darktable -->
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

LIGHTROOM = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    crs:Exposure2012="+0.50">
   <tiff:Orientation>3</tiff:Orientation>
   <dc:subject><rdf:Bag><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def stdlib(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def orientation_stdlib(data: bytes) -> str | None:
    for d in stdlib(data).iter(f"{{{RDF_NS}}}Description"):
        value = d.get(f"{{{TIFF_NS}}}Orientation") or d.findtext(f"{{{TIFF_NS}}}Orientation")
        if value is not None:
            return value
    return None


def test_a_new_sidecar_is_well_formed_xmp() -> None:
    data = merge_sidecar(None, orientation=6, keywords=["beach", "sky", "beach"])
    root = stdlib(data)
    assert root.tag == "{adobe:ns:meta/}xmpmeta"
    assert orientation_stdlib(data) == "6"
    assert [li.text for li in root.iter(f"{{{RDF_NS}}}li")] == ["beach", "sky"]
    assert root.find(f".//{{{DC_NS}}}subject/{{{RDF_NS}}}Bag") is not None
    assert (read_orientation(data), read_keywords(data)) == (6, ["beach", "sky"])
    assert b"xmlns:tiff=" in data and b"xmlns:dc=" in data  # the conventional prefixes, not ns0


def test_merging_keeps_every_other_field_of_a_darktable_sidecar() -> None:
    merged = merge_sidecar(DARKTABLE, orientation=8, keywords=["kite"])
    assert (read_orientation(merged), read_keywords(merged)) == (8, ["kite"])
    description = stdlib(merged).find(f".//{{{RDF_NS}}}Description")
    assert description is not None
    assert description.get("{http://ns.adobe.com/xap/1.0/}Rating") == "3"
    assert description.get("{http://darktable.sf.net/}xmp_version") == "5"
    step = description.find(f".//{{http://darktable.sf.net/}}history/{{{RDF_NS}}}Seq/{{{RDF_NS}}}li")
    assert step is not None and step.get("{http://darktable.sf.net/}operation") == "exposure"
    assert b"<!-- edited in darktable -->" in merged
    assert b'x:xmptk="XMP Core 4.4.0-Exiv2"' in merged


def test_merging_updates_element_form_values_and_adds_to_the_bag() -> None:
    merged = merge_sidecar(LIGHTROOM, orientation=6, keywords=["kite", "beach"])
    assert orientation_stdlib(merged) == "6"
    assert merged.count(b"Orientation") == 2  # one element, opened and closed: no second value added
    assert read_keywords(merged) == ["beach", "kite"]
    assert b'crs:Exposure2012="+0.50"' in merged
    assert b"<?xpacket begin=" in merged and b'<?xpacket end="w"?>' in merged


@pytest.mark.parametrize("existing", [None, DARKTABLE, LIGHTROOM], ids=["new", "darktable", "lightroom"])
def test_merging_twice_changes_nothing(existing: bytes | None) -> None:
    once = merge_sidecar(existing, orientation=5, keywords=["a", "b"])
    assert merge_sidecar(once, orientation=5, keywords=["b", "a"]) == once


def test_keywords_alone_leave_the_orientation() -> None:
    merged = merge_sidecar(LIGHTROOM, keywords=["kite"])
    assert read_orientation(merged) == 3


@pytest.mark.parametrize(
    "bad",
    [b"", b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>", b"<html><body/></html>", b"\x00\x01 not xml"],
    ids=["empty", "unclosed", "no-rdf", "binary"],
)
def test_a_sidecar_that_is_not_xmp_is_refused(bad: bytes) -> None:
    with pytest.raises(XmpError, match="not changed"):
        merge_sidecar(bad, orientation=6)


def test_entities_are_never_expanded_or_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    hostile = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY leak SYSTEM "file://{secret}"><!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""><note xmlns="urn:n">&leak;&b;</note></rdf:Description></rdf:RDF></x:xmpmeta>'
    ).encode()
    with pytest.raises(XmpError, match="declares a DTD") as caught:
        merge_sidecar(hostile, orientation=6)
    assert "TOP-SECRET" not in str(caught.value)
    with pytest.raises(XmpError):
        read_keywords(hostile)


def test_out_of_range_values() -> None:
    with pytest.raises(XmpError, match=r"1\.\.8"):
        merge_sidecar(None, orientation=9)
    odd = merge_sidecar(None, orientation=1).replace(b'Orientation="1"', b'Orientation="twelve"')
    assert read_orientation(odd) is None


def test_sidecar_names() -> None:
    assert sidecar_path("/p/IMG_1.HEIC") == Path("/p/IMG_1.HEIC.xmp")
    assert sidecar_path("/p/IMG_1.HEIC", Naming.REPLACE) == Path("/p/IMG_1.xmp")
    assert sidecar_path("/p/a.b.jpg", "replace") == Path("/p/a.b.xmp")
    with pytest.raises(JobOptionError, match=r"append .* or replace"):
        check_naming("lightroom")
