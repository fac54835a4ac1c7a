"""Hardened parsing of libvirt domain XML and the accessors over it.

parse_domain builds an lxml tree (the CLI). The hook builds the same document
over aiohook.domxml.lite's expat tree instead (parse_domain_lite), so this
module imports lxml only where an lxml tree is parsed or serialized.
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


def _parser() -> etree.XMLParser:
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
        root = etree.fromstring(data, _parser())
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


class DomainDocument:
    """A parsed domain. Edits go through DiskElement; everything else is untouched."""

    def __init__(self, root: etree._Element, source: str, original: bytes):
        self.root = root
        self.source = source
        self._original = original
        self._created: list[etree._Element] = []  # <driver> elements this run added

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
        return [DiskElement(el, self._created) for el in self.root.iterfind("devices/disk")]

    def controllers(self, kind: str | None = None) -> list[etree._Element]:
        path = "devices/controller" + (f"[@type='{kind}']" if kind else "")
        return list(self.root.iterfind(path))

    def overrides(self) -> DomainOverrides:
        try:
            return read_overrides(self.root)
        except DomainXMLError as exc:  # raised with a line only: add the file
            raise DomainXMLError(exc.message, file=exc.file or self.source, line=exc.line) from None

    def serialize(self) -> bytes:
        """The document as bytes: the original with only the edited <driver> tags changed.

        Falls back to a full lxml serialization when the original can't be patched.
        """
        from aiohook.domxml.textpatch import PatchUnavailable, patch_driver_tags

        disks = list(self.root.iterfind("devices/disk"))
        try:
            return patch_driver_tags(self._original, self.root, disks, self._created)
        except (PatchUnavailable, UnicodeError):
            pass
        if not self._created and self._drivers_as_parsed():
            return self._original  # nothing edited: never re-serialize (e.g. UTF-16 input)
        from lxml import etree

        has_decl = self._original.lstrip().startswith(b"<?xml")
        body = etree.tostring(self.root.getroottree(), encoding="UTF-8", xml_declaration=has_decl)
        if not body.endswith(b"\n"):
            body += b"\n"
        return body

    def _drivers_as_parsed(self) -> bool:
        """True when every disk <driver> still has the attributes of the original bytes."""
        from lxml import etree

        def drivers(root):
            return [None if d is None else dict(d.attrib)
                    for d in (disk.find("driver") for disk in root.iterfind("devices/disk"))]
        try:
            return drivers(etree.fromstring(self._original, _parser())) == drivers(self.root)
        except (etree.XMLSyntaxError, ValueError):
            return False
