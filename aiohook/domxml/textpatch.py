"""Make edits in the original bytes, so everything not edited stays byte-for-byte.

lxml re-serializes every attribute with double quotes and normalizes markup;
a disk edit would then show up as a diff of the whole document. Instead we
locate each element's start tag with expat (exact byte offsets, same
document order as lxml) and rewrite, in the <driver> tags of the edited
disks, only the attributes the edits name (DomainDocument.serialize).
The hook's expat tree (aiohook.domxml.lite) knows those offsets from its own
parse, and patches through the same code (patch_known_offsets).

No regular expressions: a start tag is scanned byte by byte, exactly as the
patterns `\\s+([^\\s=/>]+)\\s*=\\s*("[^"]*"|'[^']*')` (an attribute), `\\s*(/?)>`
(the end) and `[^\\s/>]+` (the name) match it, where \\s is bytes whitespace
(space, \\t, \\n, \\r, \\f, \\v): importing re costs the hook ~4 ms.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

_WS = frozenset(b" \t\n\r\f\v")
_NAME_STOP = _WS | frozenset(b"/>")
_ATTR_NAME_STOP = _WS | frozenset(b"=/>")
_QUOTES = frozenset(b"'\"")


class PatchUnavailable(Exception):
    """The original bytes can't be patched safely; serialize with lxml instead."""


def start_tag_offsets(data: bytes) -> list[int]:
    import xml.parsers.expat

    offsets: list[int] = []
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = lambda name, attrs: offsets.append(parser.CurrentByteIndex)
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise PatchUnavailable(str(exc)) from None
    return offsets


def _skip_ws(data: bytes, pos: int) -> int:
    """The first position from pos that is not whitespace (`\\s*`)."""
    end = len(data)
    while pos < end and data[pos] in _WS:
        pos += 1
    return pos


def _until(data: bytes, pos: int, stop: frozenset) -> int:
    """The first position from pos whose byte is in stop (`[^stop]*`)."""
    end = len(data)
    while pos < end and data[pos] not in stop:
        pos += 1
    return pos


def _match_attr(data: bytes, pos: int) -> tuple[bytes, bytes, int] | None:
    """`\\s+([^\\s=/>]+)\\s*=\\s*("[^"]*"|'[^']*')` at pos: (name, quoted value, end)."""
    start = _skip_ws(data, pos)
    if start == pos:
        return None
    stop = _until(data, start, _ATTR_NAME_STOP)
    if stop == start:
        return None
    at = _skip_ws(data, stop)
    if data[at:at + 1] != b"=":
        return None
    at = _skip_ws(data, at + 1)
    if at >= len(data) or data[at] not in _QUOTES:
        return None
    close = data.find(data[at:at + 1], at + 1)
    if close < 0:
        return None
    return data[start:stop], data[at:close + 1], close + 1


def parse_start_tag(data: bytes, offset: int) -> tuple[int, list[tuple[bytes, bytes, bytes]], bytes]:
    """(end offset, [(name, quote, raw value)], closing b'>' or b'/>') of the tag at offset."""
    if data[offset:offset + 1] != b"<":
        raise PatchUnavailable(f"no tag at byte {offset}")
    pos = _until(data, offset + 1, _NAME_STOP)
    attrs = []
    while True:
        m = _match_attr(data, pos)
        if not m:
            break
        name, raw, pos = m
        attrs.append((name, raw[:1], raw[1:-1]))
    at = _skip_ws(data, pos)
    closing = b"/>" if data[at:at + 2] == b"/>" else b">" if data[at:at + 1] == b">" else None
    if closing is None:
        raise PatchUnavailable(f"unparsable tag at byte {offset}")
    return at + len(closing), attrs, closing


def _escape(value: str, quote: bytes) -> bytes:
    out = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace('"', "&quot;") if quote == b'"' else out.replace("'", "&apos;")
    return out.encode("utf-8")


def _render_tag(name: bytes, attrs: list[tuple[bytes, bytes, bytes]], closing: bytes) -> bytes:
    body = b"".join(b" " + n + b"=" + q + v + q for n, q, v in attrs)
    return b"<" + name + body + closing


def _check_encoding(data: bytes) -> None:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        raise PatchUnavailable("UTF-16/32: byte edits need an ASCII-compatible encoding")


def patch_driver_tags(data: bytes, root: etree._Element, disks: list[etree._Element],
                      edits: dict) -> bytes:
    """The original bytes with the edits (DomainDocument.serialize) made to the disks' <driver> tags."""
    _check_encoding(data)
    offsets = start_tag_offsets(data)
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    if len(elements) != len(offsets):
        raise PatchUnavailable("element count differs from the original")
    index = {id(el): i for i, el in enumerate(elements)}
    return _patch(data, disks, edits, lambda el: offsets[index[id(el)]])


def patch_known_offsets(data: bytes, disks: list, edits: dict, offset_of) -> bytes:
    """patch_driver_tags for a tree that knows where each element's start tag
    is in `data` (offset_of(element)): aiohook.domxml.lite's."""
    _check_encoding(data)
    return _patch(data, disks, edits, offset_of)


def _patch(data: bytes, disks: list, edits: dict, offset_of) -> bytes:
    changes: list[tuple[int, int, bytes]] = []
    for i, edit in edits.items():
        disk = disks[i]
        driver = disk.find("driver")
        if driver is None:
            new = [(name, value) for name, value in edit.items() if value is not None]
            if new:  # <driver name='qemu' .../> only to set something
                changes.append(_insert_driver(data, offset_of(disk), [("name", "qemu")] + new))
            continue
        start = offset_of(driver)
        end, attrs, closing = parse_start_tag(data, start)
        new_attrs = _merge(attrs, edit)
        if new_attrs != attrs:
            changes.append((start, end, _render_tag(b"driver", new_attrs, closing)))
    for start, end, text in sorted(changes, reverse=True):
        data = data[:start] + text + data[end:]
    return data


def _merge(attrs, edit: dict) -> list:
    """The tag's attributes with the edit made: {name: value, or None to remove}.

    Only the attributes the edit names change, each in its place and quoting
    (kept as written when the value is the same); new ones go after the others.
    Namespace declarations and prefixed attributes are never named by an edit."""
    quote = attrs[0][1] if attrs else b"'"
    todo = {name.encode("utf-8"): value for name, value in edit.items()}
    out = []
    for name, q, raw in attrs:
        if name not in todo:
            out.append((name, q, raw))
            continue
        value = todo.pop(name)
        if value is None:
            continue  # removed
        out.append((name, q, raw if _unescaped(raw.decode("utf-8")) == value else _escape(value, q)))
    for name, value in todo.items():
        if value is not None:
            out.append((name, quote, _escape(value, quote)))
    return out


def _unescaped(raw: str) -> str:
    if "&" not in raw:
        return raw  # nothing to unescape (and no need for re)
    import re

    raw = re.sub(r"&#(x[0-9a-fA-F]+|[0-9]+);", lambda m: chr(
        int(m.group(1)[1:], 16) if m.group(1)[0] == "x" else int(m.group(1))), raw)
    return (raw.replace("&quot;", '"').replace("&apos;", "'").replace("&lt;", "<")
            .replace("&gt;", ">").replace("&amp;", "&"))


def _insert_driver(data: bytes, disk_start: int,
                   attrs: list[tuple[str, str]]) -> tuple[int, int, bytes]:
    """<driver .../> with attrs as the <disk>'s first child, indented as the next child is."""
    end, disk_attrs, closing = parse_start_tag(data, disk_start)
    if closing == b"/>":
        raise PatchUnavailable("a self-closing <disk/> has no place for <driver>")
    quote = disk_attrs[0][1] if disk_attrs else b"'"
    tag = _render_tag(b"driver", [(k.encode(), quote, _escape(v, quote)) for k, v in attrs], b"/>")
    following = data[end:]
    gap = following[: len(following) - len(following.lstrip())]
    indent = gap if gap and b"<" not in gap else b""
    return end, end, indent + tag
