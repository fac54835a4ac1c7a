"""One <disk> element, read through XPath-backed properties (never edited:
edits are applied when the document is serialized, DomainDocument.serialize).

The element is lxml's (the CLI) or aiohook.domxml.lite's (the hook): this
module uses only what both have (get, find, iterfind, attrib, sourceline),
so it imports neither.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree


_UNREAD = object()
_SOURCE_ATTR = {"file": "file", "block": "dev", "dir": "dir"}


def _flag(el: etree._Element, child: str) -> bool:
    return el.find(child) is not None


class DiskElement:
    def __init__(self, element: etree._Element):
        self.element = element
        self._children: dict[str, etree._Element | None] = {}  # find() cache; see _child
        # Read once: the planner and the budget read `type` ~17 times per disk.
        self._type = element.get("type") or "file"
        self._source_path = _UNREAD

    def _child(self, tag: str) -> etree._Element | None:
        """element.find(tag), cached: planning reads driver/source/target many times."""
        try:
            return self._children[tag]
        except KeyError:
            found = self._children[tag] = self.element.find(tag)
            return found

    @property
    def type(self) -> str:
        return self._type

    @property
    def device(self) -> str:
        return self.element.get("device") or "disk"

    @property
    def target(self) -> str | None:
        return self._attr("target", "dev")

    @property
    def bus(self) -> str | None:
        return self._attr("target", "bus")

    @property
    def driver(self) -> etree._Element | None:
        return self._child("driver")

    @property
    def format(self) -> str | None:
        return self._attr("driver", "type")

    @property
    def cache(self) -> str | None:
        return self._attr("driver", "cache")

    @property
    def io(self) -> str | None:
        return self._attr("driver", "io")

    @property
    def iothread(self) -> str | None:
        return self._attr("driver", "iothread")

    @property
    def queue_iothreads(self) -> list[str]:
        """libvirt >= 10 per-queue mapping: <driver><iothreads><iothread id=.../>."""
        return [i.get("id") for i in self.element.iterfind("driver/iothreads/iothread") if i.get("id")]

    @property
    def readonly(self) -> bool:
        return _flag(self.element, "readonly")

    @property
    def shareable(self) -> bool:
        return _flag(self.element, "shareable")

    @property
    def source_element(self) -> etree._Element | None:
        return self._child("source")

    @property
    def source_path(self) -> str | None:
        """The host path of a file/block/dir source, None when there is none."""
        if self._source_path is _UNREAD:  # read once
            src = self.source_element
            if src is None:
                self._source_path = None
            else:
                attr = _SOURCE_ATTR.get(self._type)
                self._source_path = (src.get(attr) if attr else None) or None
        return self._source_path

    @property
    def protocol(self) -> str | None:
        src = self.source_element
        return src.get("protocol") if src is not None and self.type == "network" else None

    @property
    def network_name(self) -> str | None:
        src = self.source_element
        return src.get("name") if src is not None else None

    @property
    def volume(self) -> tuple[str, str] | None:
        src = self.source_element
        if self.type != "volume" or src is None:
            return None
        pool, vol = src.get("pool"), src.get("volume")
        return (pool, vol) if pool and vol else None

    @property
    def has_source(self) -> bool:
        src = self.source_element
        if src is None:
            return False
        if self.type == "network":
            return bool(src.get("protocol"))
        if self.type == "volume":
            return self.volume is not None
        if self.type in ("file", "block", "dir"):
            return self.source_path is not None
        return True  # nvme, vhostuser, vhostvdpa: their source has other attributes

    @property
    def sourceline(self) -> int | None:
        return self.element.sourceline

    def _attr(self, child: str, name: str) -> str | None:
        el = self._child(child)
        return el.get(name) if el is not None else None
