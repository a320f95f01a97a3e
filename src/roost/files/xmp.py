"""XMP sidecars: the orientation and keywords that photo libraries read beside a photo, originals untouched.

darktable, digiKam, Lightroom and Immich read ``tiff:Orientation`` and ``dc:subject`` from a sidecar
file: ``photo.jpg.xmp`` (darktable, digiKam: :attr:`Naming.APPEND`, the default) or ``photo.xmp``
(Lightroom, Capture One: :attr:`Naming.REPLACE`). :func:`merge_sidecar` takes the bytes of an existing
sidecar (or None) and returns the new ones: only the orientation is set and keywords added; every other
element, attribute, namespace, comment and processing instruction stays as it was. Parsing uses lxml
with entities, DTDs and network access off, and a sidecar declaring a DTD (XMP never does) is refused,
so a hostile sidecar cannot expand or fetch anything; one that is not well-formed XMP raises
``XmpError`` and is never overwritten. Nothing here writes a file; callers
write the result with :func:`roost.files.atomic.atomic_write`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from lxml import etree

from roost.errors import JobOptionError, XmpError

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
TIFF_NS = "http://ns.adobe.com/tiff/1.0/"
DC_NS = "http://purl.org/dc/elements/1.1/"
_ORIENTATION = f"{{{TIFF_NS}}}Orientation"
_DESCRIPTION = f"{{{RDF_NS}}}Description"
_SUBJECT = f"{{{DC_NS}}}subject"
_BAG, _LI = f"{{{RDF_NS}}}Bag", f"{{{RDF_NS}}}li"
_MAX_BYTES = 16 * 1024 * 1024  # a sidecar is kilobytes; refuse anything absurd before parsing


class Naming(StrEnum):
    """Where a photo's sidecar lives."""

    APPEND = "append"  # photo.jpg.xmp (darktable, digiKam)
    REPLACE = "replace"  # photo.xmp (Lightroom, Capture One)


def check_naming(value: object) -> Naming:
    """``value`` as a :class:`Naming`; ``JobOptionError`` naming both choices otherwise."""
    try:
        return Naming(value)
    except ValueError:
        raise JobOptionError(f"sidecar must be append (photo.jpg.xmp) or replace (photo.xmp); got {value!r}") from None


def sidecar_path(photo: str | os.PathLike[str], naming: Naming | str = Naming.APPEND) -> Path:
    """The sidecar of ``photo`` under ``naming``."""
    photo = Path(photo)
    if Naming(naming) is Naming.APPEND:
        return photo.with_name(photo.name + ".xmp")
    return photo.with_suffix(".xmp")


def read_sidecar(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes of the sidecar at ``path``; None when there is none yet."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def read_orientation(data: bytes | None) -> int | None:
    """The ``tiff:Orientation`` (1..8) of a sidecar's bytes; None when absent or out of range."""
    if data is None:
        return None
    for description in _descriptions(_parse(data)):
        value = description.get(_ORIENTATION) or description.findtext(_ORIENTATION)
        if value is not None:
            return int(value) if value.strip().isdigit() and 1 <= int(value) <= 8 else None
    return None


def read_keywords(data: bytes | None) -> list[str]:
    """The ``dc:subject`` keywords of a sidecar's bytes, in order."""
    if data is None:
        return []
    return [li.text or "" for d in _descriptions(_parse(data)) for li in d.iterfind(f"{_SUBJECT}/{_BAG}/{_LI}")]


def merge_sidecar(existing: bytes | None, *, orientation: int | None = None, keywords: Iterable[str] = ()) -> bytes:
    """A sidecar with ``orientation`` set (when given) and ``keywords`` added (those not there yet).

    ``existing`` is the current sidecar's bytes, or None for a new one. The same call on its own result
    returns it unchanged, so applying it twice changes nothing.
    """
    if orientation is not None and orientation not in range(1, 9):
        raise XmpError(f"tiff:Orientation must be 1..8, got {orientation!r}")
    tree = _parse(existing) if existing is not None else _new_tree()
    rdf = _rdf(tree.getroot())
    if orientation is not None:
        _set_orientation(rdf, orientation)
    words = list(dict.fromkeys(k for k in keywords if k))
    if words:
        _add_keywords(rdf, words)
    if existing is None:
        etree.indent(tree, space=" ")
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8") + b"\n"


def _parse(data: bytes) -> etree._ElementTree:
    if len(data) > _MAX_BYTES:
        raise XmpError(f"sidecar of {len(data)} bytes is too large to be XMP; not changed")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise XmpError(f"sidecar is not well-formed XML ({e}); not changed") from e
    if root is None or _rdf_or_none(root) is None:
        raise XmpError("sidecar holds no XMP (no rdf:RDF element); not changed")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XmpError("sidecar declares a DTD, which XMP never does; not changed")
    return tree


def _new_tree() -> etree._ElementTree:
    root = etree.Element(f"{{{X_NS}}}xmpmeta", nsmap={"x": X_NS})
    root.set(f"{{{X_NS}}}xmptk", "roost")
    rdf = etree.SubElement(root, f"{{{RDF_NS}}}RDF", nsmap={"rdf": RDF_NS})
    etree.SubElement(rdf, _DESCRIPTION).set(f"{{{RDF_NS}}}about", "")
    return root.getroottree()


def _rdf_or_none(root: etree._Element) -> etree._Element | None:
    if root.tag == f"{{{RDF_NS}}}RDF":
        return root
    return root.find(f".//{{{RDF_NS}}}RDF")


def _rdf(root: etree._Element) -> etree._Element:
    rdf = _rdf_or_none(root)
    assert rdf is not None  # _parse and _new_tree guarantee one
    return rdf


def _descriptions(tree: etree._ElementTree) -> list[etree._Element]:
    return list(_rdf(tree.getroot()).iterfind(_DESCRIPTION))


def _description(rdf: etree._Element, namespace: str, prefix: str) -> etree._Element:
    """The first rdf:Description, with ``prefix`` declared for ``namespace`` (one is added if none exists)."""
    found = rdf.find(_DESCRIPTION)
    if found is None:
        found = etree.SubElement(rdf, _DESCRIPTION)
        found.set(f"{{{RDF_NS}}}about", "")
    if namespace in found.nsmap.values() or prefix in found.nsmap:
        return found
    return _with_prefix(found, namespace, prefix)


def _with_prefix(element: etree._Element, namespace: str, prefix: str) -> etree._Element:
    """``element`` rebuilt with ``prefix`` declared on it (lxml cannot add a declaration in place)."""
    nsmap = {k: v for k, v in element.nsmap.items() if k is not None} | {prefix: namespace}
    new = etree.Element(element.tag, attrib=dict(element.attrib), nsmap=nsmap)
    new.text, new.tail = element.text, element.tail
    new.extend(list(element))
    parent = element.getparent()
    assert parent is not None
    parent.replace(element, new)
    return new


def _set_orientation(rdf: etree._Element, orientation: int) -> None:
    value = str(orientation)
    for description in rdf.iterfind(_DESCRIPTION):
        if description.get(_ORIENTATION) is not None:
            description.set(_ORIENTATION, value)
            return
        element = description.find(_ORIENTATION)
        if element is not None:
            element.text = value
            return
    _description(rdf, TIFF_NS, "tiff").set(_ORIENTATION, value)


def _add_keywords(rdf: etree._Element, words: list[str]) -> None:
    bag = next((b for b in rdf.iterfind(f"{_DESCRIPTION}/{_SUBJECT}/{_BAG}")), None)
    if bag is None:
        subject = etree.SubElement(_description(rdf, DC_NS, "dc"), _SUBJECT)
        bag = etree.SubElement(subject, _BAG)
    present = {li.text for li in bag.iterfind(_LI)}
    for word in words:
        if word not in present:
            etree.SubElement(bag, _LI).text = word
