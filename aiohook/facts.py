"""Plain data shared by the layers: what the host says (probes), what the policy reads.

Nothing here imports lxml, yaml, a probe or dataclasses: the hook's hot path
loads it cheaply (aiohook/record.py says what the records keep of @dataclass).
"""

from __future__ import annotations

from aiohook.record import FrozenRecord, Record, _set

DISK_CLASSES = (
    "block",
    "file-preallocated",
    "file-sparse",
    "network",
    "empty",
    "other",
    "unknown",
)
IO_MODES = ("native", "threads", "io_uring")
CACHE_MODES = ("default", "none", "writethrough", "writeback", "directsync", "unsafe")
O_DIRECT_CACHES = ("none", "directsync")
# Disk types for which libvirt passes io= to QEMU; for the others io has no effect.
IO_CAPABLE_TYPES = ("file", "block", "volume")


class SourceRequest(FrozenRecord):
    """One source path to probe, with the image format the domain declares."""

    FIELDS = ("path", "format")

    def __init__(self, path: str, format: str | None = None):
        _set(self, "path", path)
        _set(self, "format", format)  # <driver type=...>; None means raw


class SourceFacts(Record):
    """What the host says about one source path (real probe or recorded file)."""

    FIELDS = ("path", "kind", "resolved", "size", "allocated_bytes", "virtual_size",
              "allocated", "fs", "o_direct", "transport", "error")

    def __init__(self, path: str, kind: str, resolved: str | None = None,
                 size: int | None = None, allocated_bytes: int | None = None,
                 virtual_size: int | None = None, allocated: bool | None = None,
                 fs: str | None = None, o_direct: bool | None = None,
                 transport: str | None = None, error: str | None = None):
        self.path = path
        self.kind = kind  # file | block | missing | unknown
        self.resolved = resolved  # symlinks resolved
        self.size = size  # file size or block device size, bytes
        self.allocated_bytes = allocated_bytes  # st_blocks * 512 (unwritten extents count)
        self.virtual_size = virtual_size  # qcow2 header; raw: the file size
        self.allocated = allocated  # allocated bytes cover the virtual size
        self.fs = fs  # filesystem type from mountinfo (files only)
        self.o_direct = o_direct  # an O_DIRECT open and aligned read worked
        self.transport = transport  # block: loop, lvm, dm, multipath, iscsi, fc, nvme, ...
        self.error = error  # why a fact is missing (timeout, permission, ...)

    def to_dict(self) -> dict:
        # vars(), not asdict(): every field is a scalar, and asdict deep-copies each one
        return {k: v for k, v in vars(self).items() if v is not None and k != "path"}


class VolumeTarget(FrozenRecord):
    """Where a libvirt storage volume lives, resolved through its pool definition."""

    FIELDS = ("kind", "path", "protocol", "reason")

    def __init__(self, kind: str, path: str | None = None, protocol: str | None = None,
                 reason: str | None = None):
        _set(self, "kind", kind)  # file | block | network | unknown
        _set(self, "path", path)
        _set(self, "protocol", protocol)
        _set(self, "reason", reason)


class HostFacts(Record):
    FIELDS = ("io_uring", "qemu_version", "qemu_io_uring", "libvirt_version", "aio_max_nr",
              "aio_nr")

    def __init__(self, io_uring: bool | None = None, qemu_version: str | None = None,
                 qemu_io_uring: bool | None = None, libvirt_version: str | None = None,
                 aio_max_nr: int | None = None, aio_nr: int | None = None):
        self.io_uring = io_uring  # kernel lets an unprivileged QEMU use io_uring
        self.qemu_version = qemu_version  # of the domain's <emulator>
        self.qemu_io_uring = qemu_io_uring  # that QEMU was built with liburing
        self.libvirt_version = libvirt_version
        self.aio_max_nr = aio_max_nr
        self.aio_nr = aio_nr

    def io_uring_usable(self) -> bool:
        """io_uring only when every known fact allows it; unknown kernel support is a no."""
        if self.io_uring is not True or self.qemu_io_uring is False:
            return False
        if self.libvirt_version and version_tuple(self.libvirt_version) < (6, 3):
            return False  # libvirt learned io='io_uring' in 6.3
        return self.qemu_version is None or version_tuple(self.qemu_version) >= (5, 0)

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


class DiskFacts(Record):
    """Everything the policy may look at for one <disk>: XML facts plus host facts."""

    FIELDS = ("domain", "target", "type", "device", "bus", "format", "source", "protocol",
              "iothread", "cache", "io", "readonly", "shareable", "disk_class", "class_reason",
              "host", "extra")

    def __init__(self, domain: str, target: str | None, type: str, device: str,
                 bus: str | None = None, format: str | None = None, source: str | None = None,
                 protocol: str | None = None, iothread: str | None = None,
                 cache: str | None = None, io: str | None = None, readonly: bool = False,
                 shareable: bool = False, disk_class: str = "unknown", class_reason: str = "",
                 host: SourceFacts | None = None, extra: dict | None = None):
        self.domain = domain
        self.target = target
        self.type = type  # file | block | network | volume | nvme | vhostuser | vhostvdpa | dir
        self.device = device  # disk | cdrom | floppy | lun
        self.bus = bus
        self.format = format
        self.source = source  # path, or protocol:name for network disks
        self.protocol = protocol
        self.iothread = iothread
        self.cache = cache  # as found; None = no cache attribute
        self.io = io  # as found; None = no io attribute
        self.readonly = readonly
        self.shareable = shareable
        self.disk_class = disk_class
        self.class_reason = class_reason
        self.host = host  # for file/block/volume disks with a source
        self.extra = {} if extra is None else extra

    # Host facts surfaced as attributes so conditions read them uniformly.
    @property
    def fs(self) -> str | None:
        return self.host.fs if self.host else None

    @property
    def transport(self) -> str | None:
        return self.host.transport if self.host else None

    @property
    def o_direct(self) -> bool | None:
        return self.host.o_direct if self.host else None

    @property
    def allocated(self) -> bool | None:
        return self.host.allocated if self.host else None

    def to_dict(self) -> dict:
        out = {
            "type": self.type,
            "device": self.device,
            "bus": self.bus,
            "format": self.format,
            "source": self.source,
            "protocol": self.protocol,
            "iothread": self.iothread,
            "cache": self.cache,
            "io": self.io,
            "readonly": self.readonly,
            "shareable": self.shareable,
        }
        if self.host is not None:
            out.update(self.host.to_dict())
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


def version_tuple(text: str) -> tuple[int, ...]:
    """The numbers of a version, as far as it reads as one: "9.2.0" -> (9, 2, 0),
    "6.8.0-45-generic" -> (6, 8, 0), "8.2.2 (Debian 1:8.2.2)" -> (8, 2, 2).

    Each dot-separated piece gives its leading ASCII digits; a piece without any,
    or with anything after them, ends the version. The one version parser (issue 12).
    """
    parts = []
    for piece in text.split("."):
        end = 0
        while end < len(piece) and "0" <= piece[end] <= "9":
            end += 1
        if not end:
            break
        parts.append(int(piece[:end]))
        if end < len(piece):
            break
    return tuple(parts)
