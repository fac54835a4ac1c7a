"""The rule conditions: one small unit each, in one explicit registry.

A condition reads one fact of a disk and tests it against the rule's argument.
`unset` stands for a fact that is absent (no cache attribute, no transport...).
"""

from __future__ import annotations

from aiohook.facts import CACHE_MODES, DISK_CLASSES, IO_MODES
from aiohook.record import FrozenRecord, _set

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from aiohook.facts import DiskFacts

UNSET = "unset"


class Condition(FrozenRecord):
    FIELDS = ("key", "doc", "read", "kind", "values")

    def __init__(self, key: str, doc: str, read: Callable[[DiskFacts], Any], kind: str,
                 values: tuple[str, ...] = ()):
        _set(self, "key", key)
        _set(self, "doc", doc)
        _set(self, "read", read)
        _set(self, "kind", kind)  # "enum" (fixed values), "word" (open set of words), "glob", "bool"
        _set(self, "values", values)

    def normalize(self, arg: Any) -> Any:
        """The canonical argument: a sorted tuple of words/globs, or a bool."""
        if self.kind == "bool":
            return bool(arg)
        items = arg if isinstance(arg, list) else [arg]
        return tuple(dict.fromkeys(str(i) for i in items))

    def fact(self, facts: DiskFacts) -> Any:
        value = self.read(facts)
        if self.kind == "bool":
            return value
        return UNSET if value is None else value

    def test(self, facts: DiskFacts, arg: Any) -> bool:
        value = self.read(facts)  # self.fact(facts), inlined: rules run it per disk
        kind = self.kind
        if kind == "bool":
            return value is arg
        if value is None:
            value = UNSET
        if kind == "glob":
            return value != UNSET and any(_glob(value, pattern) for pattern in arg)
        return value in arg

    def describe_fact(self, facts: DiskFacts) -> str:
        value = self.fact(facts)
        if value is None:
            return "unknown"
        return str(value).lower() if isinstance(value, bool) else str(value)

    def possible(self) -> tuple[str, ...] | None:
        """Every value the fact can take, for enum conditions (contradiction checks)."""
        return self.values + (UNSET,) if self.kind == "enum" else None


def _glob(value: str, pattern: str) -> bool:
    """fnmatch.fnmatchcase, without importing fnmatch (and re) for a plain pattern."""
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        return value == pattern
    from fnmatch import fnmatchcase

    return fnmatchcase(value, pattern)


def _c(key, doc, read, kind, values=()):
    return Condition(key, doc, read, kind, tuple(values))


CONDITIONS: dict[str, Condition] = {
    c.key: c
    for c in (
        _c("class", "The disk's class, as classified from XML and host probes.",
           lambda f: f.disk_class, "enum", DISK_CLASSES),
        _c("type", "The <disk type=...> attribute.",
           lambda f: f.type, "enum",
           ("file", "block", "network", "volume", "nvme", "vhostuser", "vhostvdpa", "dir")),
        _c("device", "The <disk device=...> attribute.",
           lambda f: f.device, "enum", ("disk", "cdrom", "floppy", "lun")),
        _c("bus", "The <target bus=...> attribute (virtio, scsi, sata, ide, usb, fdc, ...).",
           lambda f: f.bus, "word"),
        _c("format", "The image format, <driver type=...> (raw, qcow2, ...).",
           lambda f: f.format, "word"),
        _c("transport", "Block device transport from sysfs (loop, lvm, dm, multipath, iscsi, fc, "
           "nvme, krbd, nbd, virtio, ata, scsi, ...).",
           lambda f: f.transport, "word"),
        _c("fs", "Filesystem type holding a file source (ext4, xfs, nfs4, tmpfs, ...).",
           lambda f: f.fs, "word"),
        _c("protocol", "Network disk protocol (rbd, gluster, iscsi, nbd, http, ...).",
           lambda f: f.protocol, "word"),
        _c("cache", "The cache mode as found in the XML; unset when absent.",
           lambda f: f.cache, "enum", CACHE_MODES),
        _c("io", "The io mode as found in the XML; unset when absent.",
           lambda f: f.io, "enum", IO_MODES),
        _c("readonly", "The disk has <readonly/>.", lambda f: f.readonly, "bool"),
        _c("shareable", "The disk has <shareable/>.", lambda f: f.shareable, "bool"),
        _c("o_direct", "An O_DIRECT open and aligned read of the source worked; an unknown "
           "result matches neither true nor false.",
           lambda f: f.o_direct, "bool"),
        _c("iothread", "The disk is bound to an iothread (<driver iothread=...>).",
           lambda f: f.iothread is not None, "bool"),
        _c("domain", "Glob over the domain name.", lambda f: f.domain, "glob"),
        _c("source", "Glob over the source path (or protocol:name for network disks).",
           lambda f: f.source, "glob"),
        _c("target", "Glob over the target device name (vda, sdb, ...).",
           lambda f: f.target, "glob"),
    )
}
