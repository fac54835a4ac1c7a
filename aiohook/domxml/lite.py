"""The hook's domain XML: the same DomainDocument over a small tree built by pyexpat.

lxml costs every hook call ~7 ms to import, and the hook reads a handful of
elements (issue 11). parse_domain_lite builds, with the standard library's
pyexpat, a tree that answers what DomainDocument, DiskElement, the overrides
and the budget's demand model ask of lxml's: tags in Clark notation, attrib,
get/set, find/findtext/iterfind over child paths (`a/b`, `tag[@attr='v']`),
text as lxml reads it (up to the first child element, comment or PI),
sourceline, nsmap. The tree is never edited: serialize(edits) patches the
original bytes with the offsets expat reported (aiohook.domxml.textpatch), so
the bytes are those the lxml path writes.

Hardened as parse_domain is: the same size bound and byte checks
(document.check_bytes), no DTD (a doctype of any encoding stops the parse),
no entity but the five predefined ones, namespaces resolved by expat.

It is a fast path, never a second opinion: anything it does not fully handle
goes to lxml's parse_domain, which then accepts or refuses the document as the
CLI does. That is any expat error (lxml then gives its own error, or accepts
what expat refused), an encoding other than UTF-8/ASCII, more than
FAST_MAX_BYTES, more than MAX_DEPTH levels (libxml2 refuses more than 256),
a name longer than MAX_NAME (libxml2 refuses 50,000), a namespace name other
than a plain http(s) URL or URN (libxml2 refuses a URI it can't parse), a root that
is not <domain>. A tree it builds is the tree lxml builds: benchmarks/corpus_check.py
compares both on every domain it checks (plans and rewritten bytes).
An error in the aiohook metadata is reported from the lxml document too, so
its message and line are lxml's.
"""

from __future__ import annotations

import pyexpat

from aiohook.domxml.document import DomainDocument, check_bytes, parse_domain
from aiohook.errors import DomainXMLError

FAST_MAX_BYTES = 1 << 20
MAX_DEPTH = 200
MAX_NAME = 1000
_ASCII_COMPATIBLE = ("utf-8", "utf8", "us-ascii", "ascii")


class _Unhandled(Exception):
    """Not for the fast path: lxml decides."""


def _unhandled(*_args):
    raise _Unhandled


# ---------------------------------------------------------------- the tree


_PATHS: dict[str, tuple] = {}


def _compile(path: str) -> tuple:
    """'a/b[@c='d']' -> (('a', None, None), ('b', 'c', 'd')). Only what the callers use."""
    steps = _PATHS.get(path)
    if steps is not None:
        return steps
    out = []
    for step in path.split("/"):
        attr = value = None
        if step.endswith("]") and "[@" in step:
            step, _, pred = step[:-1].partition("[@")
            attr, eq, quoted = pred.partition("=")
            if not eq or len(quoted) < 2 or quoted[0] not in "'\"" or quoted[-1] != quoted[0]:
                raise ValueError(f"unsupported path {path!r}")
            value = quoted[1:-1]
        if not step or any(c in step for c in "*.[]@()") or ":" in step:
            raise ValueError(f"unsupported path {path!r}")
        out.append((step, attr, value))
    steps = _PATHS[path] = tuple(out)
    return steps


class Element:
    """One element of the lite tree (see the module docstring for what it offers)."""

    __slots__ = ("tag", "attrib", "get", "children", "parent", "_text", "_start", "_doc", "_ns")

    def __init__(self, tag: str, attrib: dict, parent: Element | None = None):
        self.tag = tag
        self.attrib = attrib
        self.get = attrib.get  # get(key, default=None), as lxml's: the dict's own (fast)
        self.children: list[Element] = []
        self.parent = parent
        self._text = None
        self._start = -1  # byte offset of the start tag in the document
        self._doc = None
        self._ns = None  # {prefix or None: uri} declared on this element

    # -- lxml's read API (get is the attrib dict's own get, bound in __init__)
    def keys(self):
        return self.attrib.keys()

    def items(self):
        return self.attrib.items()

    @property
    def text(self) -> str | None:
        return self._text

    def __iter__(self):
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, index):
        return self.children[index]

    def iterfind(self, path: str):
        found = [self]
        for tag, attr, value in _compile(path):
            found = [c for el in found for c in el.children if c.tag == tag
                     and (attr is None or c.attrib.get(attr) == value)]
            if not found:
                break
        return iter(found)

    def find(self, path: str) -> Element | None:
        steps = _compile(path)
        if len(steps) == 1:  # the common case, without building lists
            tag, attr, value = steps[0]
            for c in self.children:
                if c.tag == tag and (attr is None or c.attrib.get(attr) == value):
                    return c
            return None
        return next(self.iterfind(path), None)

    def findtext(self, path: str, default=None):
        el = self.find(path)
        if el is None:
            return default
        return el._text or ""

    def iter(self):
        """This element and every element below it, in document order."""
        todo = [self]
        while todo:
            el = todo.pop()
            yield el
            todo.extend(reversed(el.children))

    @property
    def sourceline(self) -> int | None:
        """The line where the start tag ends, as libxml2 (lxml) numbers it: only
        line feeds count (a lone CR does not)."""
        if self._start < 0 or self._doc is None:
            return None
        return self._doc._line_of(_tag_end(self._doc._original, self._start))

    @property
    def nsmap(self) -> dict:
        """Namespace prefixes in scope, as lxml's nsmap (None: the default namespace)."""
        chain = []
        el = self
        while el is not None:
            if el._ns:
                chain.append(el._ns)
            el = el.parent
        out: dict = {}
        for declared in reversed(chain):
            out.update(declared)
        return out

    def __repr__(self) -> str:
        return f"<lite Element {self.tag} at {id(self):#x}>"


def _tag_end(data: bytes, pos: int) -> int:
    """The offset of the '>' that ends the start tag at pos (quoted values skipped)."""
    while True:
        gt = data.find(b">", pos)
        if gt < 0:
            return gt
        quotes = [q for q in (data.find(b'"', pos, gt), data.find(b"'", pos, gt)) if q >= 0]
        if not quotes:
            return gt
        first = min(quotes)
        close = data.find(data[first:first + 1], first + 1)
        if close < 0:
            return gt
        pos = close + 1


# ---------------------------------------------------------------- parsing


_URI_HOST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_URI_PATH = _URI_HOST | frozenset("_~/")


def _plain_uri(uri: str | None) -> bool:
    """http(s)://host[:port]/path or urn:name of plain characters: a namespace
    name libxml2 takes as expat does. libxml2 refuses some others that expat
    takes (a URI it can't parse), so those go to lxml."""
    if not uri:
        return False
    if uri.startswith("urn:"):
        return uri[4:5] not in ("", "/", ":") and set(uri[4:]) <= _URI_PATH | {":"}
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("http", "https"):
        return False
    authority, _, path = rest.partition("/")
    host, colon, port = authority.partition(":")
    if not host or not set(host) <= _URI_HOST or colon and not port.isdigit():
        return False
    if not port.isascii() or host.lower() == "www.w3.org":
        return False  # the xml namespace's own URI: reserved
    return set(path) <= _URI_PATH


def _declared_encoding(data: bytes) -> str | None:
    """The encoding named in the XML declaration, lower case; None when there is none."""
    head = data[3:] if data[:3] == b"\xef\xbb\xbf" else data
    if not head.startswith(b"<?xml"):
        return None
    end = head.find(b"?>")
    decl = head[:end if end >= 0 else 200]
    at = decl.find(b"encoding")
    if at < 0:
        return None
    rest = decl[at + 8:].lstrip(b" \t\r\n")
    if not rest.startswith(b"="):
        return "?"
    rest = rest[1:].lstrip(b" \t\r\n")
    quote = rest[:1]
    if quote not in (b"'", b'"'):
        return "?"
    close = rest.find(quote, 1)
    return rest[1:close].decode("ascii", "replace").lower() if close > 0 else "?"


def _build(data: bytes, doc: LiteDocument) -> Element:
    """The lite tree of data; raises _Unhandled for anything lxml must decide."""
    if len(data) > FAST_MAX_BYTES:
        raise _Unhandled
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        raise _Unhandled  # UTF-16/32
    encoding = _declared_encoding(data)
    if encoding is not None and encoding not in _ASCII_COMPATIBLE:
        raise _Unhandled
    parser = pyexpat.ParserCreate(None, "}")
    parser.buffer_text = True
    stack: list[Element] = []
    roots: list[Element] = []
    text: list[str] = []
    current = None  # the element whose text (up to its first child node) is being read
    pending_ns: list = []

    def flush() -> None:
        nonlocal current
        if current is not None:
            if text:
                current._text = "".join(text)
                text.clear()
            current = None

    def start(name: str, attrs: dict) -> None:
        nonlocal current
        if len(name) > MAX_NAME or len(stack) >= MAX_DEPTH:
            raise _Unhandled
        if "}" in name:
            name = "{" + name
        if attrs:
            keys = "".join(attrs)
            if "}" in keys or len(keys) > MAX_NAME:
                if any(len(key) > MAX_NAME for key in attrs):
                    raise _Unhandled
                attrs = {("{" + k if "}" in k else k): v for k, v in attrs.items()}
        if current is not None:  # flush(), inlined: this runs per element
            if text:
                current._text = "".join(text)
                text.clear()
        parent = stack[-1] if stack else None
        el = current = Element(name, attrs, parent)
        el._start = parser.CurrentByteIndex
        el._doc = doc
        if pending_ns:
            el._ns = dict(pending_ns)
            pending_ns.clear()
        if parent is None:
            roots.append(el)
        else:
            parent.children.append(el)
        stack.append(el)

    def end(_name: str) -> None:
        flush()
        stack.pop()

    def chars(data: str) -> None:
        if current is not None:
            text.append(data)

    def other(*_args) -> None:  # a comment ends the text before it, as in lxml
        flush()

    def pi(target: str, _data: str) -> None:
        if len(target) > MAX_NAME:
            raise _Unhandled
        flush()

    def namespace(prefix: str | None, uri: str | None) -> None:
        if prefix is not None and len(prefix) > MAX_NAME or not _plain_uri(uri):
            raise _Unhandled
        pending_ns.append((prefix, uri))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.CommentHandler = other
    parser.ProcessingInstructionHandler = pi
    parser.StartNamespaceDeclHandler = namespace
    parser.StartDoctypeDeclHandler = _unhandled
    parser.EntityDeclHandler = _unhandled
    parser.ExternalEntityRefHandler = _unhandled
    parser.SkippedEntityHandler = _unhandled
    try:
        parser.Parse(data, True)
    except pyexpat.ExpatError:
        raise _Unhandled from None
    if len(roots) != 1 or roots[0].tag != "domain":
        raise _Unhandled
    return roots[0]


def parse_domain_lite(data: bytes, source: str = "<stdin>") -> DomainDocument:
    """parse_domain's document, from pyexpat when it can (LiteDocument), else from lxml."""
    check_bytes(data, source)
    doc = LiteDocument.__new__(LiteDocument)
    try:
        root = _build(data, doc)
    except (_Unhandled, RecursionError, UnicodeError, ValueError):
        return parse_domain(data, source)
    DomainDocument.__init__(doc, root, source, data)
    doc._lines = (0, 1)
    return doc


class LiteDocument(DomainDocument):
    """A DomainDocument over the lite tree."""

    _lines: tuple[int, int]  # (offset, line there): callers ask in document order

    def _line_of(self, offset: int) -> int:
        at, line = self._lines
        if offset < at:
            at, line = 0, 1
        line += self._original.count(b"\n", at, offset)
        self._lines = (offset, line)
        return line

    def overrides(self):
        try:
            return super().overrides()
        except DomainXMLError:
            return parse_domain(self._original, self.source).overrides()  # lxml's message

    def _patched(self, edits: dict) -> bytes:
        """DomainDocument.serialize's patch, with the offsets expat reported."""
        from aiohook.domxml.textpatch import patch_known_offsets

        disks = list(self.root.iterfind("devices/disk"))
        return patch_known_offsets(self._original, disks, edits, _offset)


def _offset(element: Element) -> int:
    return element._start
