"""Hardened parsing of libvirt domain XML and the accessors over it.

parse_domain builds an lxml tree (the CLI). The hook builds the same document
over aiohook.domxml.lite's expat tree instead (parse_domain_lite), so this
module imports lxml only where an lxml tree is parsed or serialized.

A parsed document is never edited. Edits are data, applied when the document
is serialized: {disk index (in disks() order): {<driver> attribute: value, or
None to remove it}}. A disk without <driver> gains <driver name='qemu'/>, as
its first child, only to set an attribute.
"""

from __future__ import annotations

from aiohook.domxml.disk import DiskElement
from aiohook.domxml.overrides import DomainOverrides, read_overrides
from aiohook.errors import DomainXMLError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

MAX_XML_BYTES = 10 * 1024 * 1024  # libvirt's own domain XML limit is 10 MiB

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
    remove_comments=False,
    remove_pis=False,
    strip_cdata=False,
    collect_ids=False,
)


_resolver_class = None


def _no_external_resources():
    """A resolver by which every external entity or DTD resolves to nothing: libxml2
    still opens external parameter entities (file:///dev/..., FIFOs) with the
    options above. (A class made on first use: lxml is imported only then.)"""
    global _resolver_class
    if _resolver_class is None:
        from lxml import etree

        class _NoExternalResources(etree.Resolver):
            def resolve(self, url, pubid, context):
                return self.resolve_string("", context)

        _resolver_class = _NoExternalResources
    return _resolver_class()


def hardened_parser() -> etree.XMLParser:
    """lxml's parser with the options above and no external resource."""
    from lxml import etree

    parser = etree.XMLParser(**_PARSER_OPTIONS)
    parser.resolvers.add(_no_external_resources())
    return parser


def check_bytes(data: bytes, source: str) -> None:
    """The checks on the raw bytes that come before any parser sees them."""
    if len(data) > MAX_XML_BYTES:
        raise DomainXMLError(
            f"XML is {len(data)} bytes, over the {MAX_XML_BYTES} byte limit", file=source
        )
    if not data.strip():
        raise DomainXMLError("empty input, expected a <domain> document", file=source)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DomainXMLError("DTDs and entity declarations are not allowed", file=source)


def parse_domain(data: bytes, source: str = "<stdin>") -> DomainDocument:
    """Parse untrusted domain XML; every failure is a one-line DomainXMLError."""
    import re

    from lxml import etree

    check_bytes(data, source)
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno and exc.lineno > 0 else None
        msg = re.sub(r", line \d+, column \d+$", "", (exc.msg or "malformed XML").splitlines()[0])
        raise DomainXMLError(f"malformed XML: {msg}", file=source, line=line) from None
    except ValueError as exc:  # e.g. unicode strings with encoding declarations
        raise DomainXMLError(f"malformed XML: {exc}", file=source) from None
    if root is None:
        raise DomainXMLError("no root element", file=source)
    # The byte check above misses a DOCTYPE in UTF-16/UTF-7/... encodings.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise DomainXMLError("DTDs and entity declarations are not allowed", file=source)
    if root.tag != "domain":
        tag = etree.QName(root).localname if isinstance(root.tag, str) else "?"
        raise DomainXMLError(
            f"root element is <{tag}>, expected <domain>", file=source, line=root.sourceline
        )
    return DomainDocument(root, source, data)


def merge_edits(edits: dict, more: dict) -> dict:
    """edits, then more: one set of edits (more wins where both name an attribute)."""
    out = {i: dict(edit) for i, edit in edits.items()}
    for i, edit in more.items():
        out.setdefault(i, {}).update(edit)
    return out


def _edited(attrs: dict | None, edit: dict) -> dict | None:
    """A <driver>'s attributes (None: no <driver>) once the edit is made."""
    out = dict(attrs) if attrs is not None else None
    for name, value in edit.items():
        if value is None:
            if out is not None:
                out.pop(name, None)
        else:
            if out is None:
                out = {"name": "qemu"}
            out[name] = value
    return out


class DomainDocument:
    """A parsed domain, read through properties; never edited (see the module docstring)."""

    def __init__(self, root: etree._Element, source: str, original: bytes):
        self.root = root
        self.source = source
        self._original = original
    @property
    def original(self) -> bytes:
        """The bytes this document was parsed from."""
        return self._original

    @property
    def name(self) -> str:
        text = self.root.findtext("name")
        return text.strip() if text else ""

    @property
    def domain_type(self) -> str | None:
        return self.root.get("type")

    @property
    def emulator(self) -> str | None:
        text = self.root.findtext("devices/emulator")
        return text.strip() if text else None

    @property
    def iothreads(self) -> int:
        text = self.root.findtext("iothreads")
        try:
            return int(text) if text else 0
        except ValueError:
            return 0

    @property
    def iothread_ids(self) -> list[str]:
        ids = [el.get("id") for el in self.root.iterfind("iothreadids/iothread")]
        ids = [i for i in ids if i]
        return ids or [str(i) for i in range(1, self.iothreads + 1)]

    def disks(self) -> list[DiskElement]:
        return [DiskElement(el) for el in self.root.iterfind("devices/disk")]

    def disk_io(self, edits: dict | None = None) -> list[str | None]:
        """Each disk's io, in disks() order, once the edits are made."""
        edits = edits or {}
        return [edits[i]["io"] if "io" in edits.get(i, ()) else disk.io
                for i, disk in enumerate(self.disks())]

    def controllers(self, kind: str | None = None) -> list[etree._Element]:
        path = "devices/controller" + (f"[@type='{kind}']" if kind else "")
        return list(self.root.iterfind(path))

    def overrides(self) -> DomainOverrides:
        try:
            return read_overrides(self.root)
        except DomainXMLError as exc:  # raised with a line only: add the file
            raise DomainXMLError(exc.message, file=exc.file or self.source, line=exc.line) from None

    def serialize(self, edits: dict | None = None) -> bytes:
        """The document as bytes with the edits made: the original bytes with only the
        edited <driver> attributes changed (aiohook.domxml.textpatch).

        Falls back to lxml's serialization of a tree of its own when the original
        can't be patched (the original bytes when the edits change nothing)."""
        from aiohook.domxml.textpatch import PatchUnavailable

        edits = edits or {}
        try:
            return self._patched(edits)
        except (PatchUnavailable, UnicodeError):
            pass
        if not self._changed_by(edits):
            return self._original  # never re-serialize for nothing (e.g. UTF-16 input)
        return _serialized_by_lxml(self._original, self.source, edits)

    def _patched(self, edits: dict) -> bytes:
        from aiohook.domxml.textpatch import patch_driver_tags

        disks = list(self.root.iterfind("devices/disk"))
        return patch_driver_tags(self._original, self.root, disks, edits)

    def _changed_by(self, edits: dict) -> bool:
        """True when the edits change some <driver>'s attributes."""
        disks = self.disks()
        for i, edit in edits.items():
            driver = disks[i].driver
            attrs = dict(driver.attrib) if driver is not None else None
            if _edited(attrs, edit) != attrs:
                return True
        return False


def _serialized_by_lxml(original: bytes, source: str, edits: dict) -> bytes:
    """lxml's serialization of the document with the edits made, on a tree parsed
    for it: the caller's document stays as read."""
    from lxml import etree

    root = parse_domain(original, source).root
    disks = list(root.iterfind("devices/disk"))
    for i, edit in edits.items():
        _edit_driver(disks[i], edit)
    has_decl = original.lstrip().startswith(b"<?xml")
    body = etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=has_decl)
    if not body.endswith(b"\n"):
        body += b"\n"
    return body


def _edit_driver(disk: etree._Element, edit: dict) -> None:
    """Make the edit in an lxml <disk> element (attributes keep their places, new ones
    go last); a <driver name='qemu'/> made here is the first child, indented as the
    next one is."""
    driver = disk.find("driver")
    for name, value in edit.items():
        if value is None:
            if driver is not None and name in driver.attrib:
                del driver.attrib[name]
            continue
        if driver is None:
            driver = disk.makeelement("driver", {})
            driver.set("name", "qemu")
            indent = disk.text if disk.text is not None and not disk.text.strip() else None
            disk.insert(0, driver)
            if len(disk) > 1:
                driver.tail = indent
        driver.set(name, value)
