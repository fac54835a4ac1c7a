"""Plain data shared by the layers: what the host says (probes), what the policy reads.

Nothing here imports lxml, yaml or a probe: the hook's hot path loads it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SourceRequest:
    """One source path to probe, with the image format the domain declares."""

    path: str
    format: str | None = None  # <driver type=...>; None means raw


@dataclass
class SourceFacts:
    """What the host says about one source path (real probe or recorded file)."""

    path: str
    kind: str  # file | block | missing | unknown
    resolved: str | None = None  # symlinks resolved
    size: int | None = None  # file size or block device size, bytes
    allocated_bytes: int | None = None  # st_blocks * 512 (unwritten extents count)
    virtual_size: int | None = None  # qcow2 header; raw: the file size
    allocated: bool | None = None  # allocated bytes cover the virtual size
    fs: str | None = None  # filesystem type from mountinfo (files only)
    o_direct: bool | None = None  # an O_DIRECT open and aligned read worked
    transport: str | None = None  # block: loop, lvm, dm, multipath, iscsi, fc, nvme, ...
    error: str | None = None  # why a fact is missing (timeout, permission, ...)

    def to_dict(self) -> dict:
        # vars(), not asdict(): every field is a scalar, and asdict deep-copies each one
        return {k: v for k, v in vars(self).items() if v is not None and k != "path"}


@dataclass(frozen=True)
class VolumeTarget:
    """Where a libvirt storage volume lives, resolved through its pool definition."""

    kind: str  # file | block | network | unknown
    path: str | None = None
    protocol: str | None = None
    reason: str | None = None


@dataclass
class HostFacts:
    io_uring: bool | None = None  # kernel lets an unprivileged QEMU use io_uring
    qemu_version: str | None = None  # of the domain's <emulator>
    qemu_io_uring: bool | None = None  # that QEMU was built with liburing
    libvirt_version: str | None = None
    aio_max_nr: int | None = None
    aio_nr: int | None = None

    def io_uring_usable(self) -> bool:
        """io_uring only when every known fact allows it; unknown kernel support is a no."""
        if self.io_uring is not True or self.qemu_io_uring is False:
            return False
        if self.libvirt_version and version_tuple(self.libvirt_version) < (6, 3):
            return False  # libvirt learned io='io_uring' in 6.3
        return self.qemu_version is None or version_tuple(self.qemu_version) >= (5, 0)

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class DiskFacts:
    """Everything the policy may look at for one <disk>: XML facts plus host facts."""

    domain: str
    target: str | None
    type: str  # file | block | network | volume | nvme | vhostuser | vhostvdpa | dir
    device: str  # disk | cdrom | floppy | lun
    bus: str | None = None
    format: str | None = None
    source: str | None = None  # path, or protocol:name for network disks
    protocol: str | None = None
    iothread: str | None = None
    cache: str | None = None  # as found; None = no cache attribute
    io: str | None = None  # as found; None = no io attribute
    readonly: bool = False
    shareable: bool = False
    disk_class: str = "unknown"
    class_reason: str = ""
    host: SourceFacts | None = None  # for file/block/volume disks with a source
    extra: dict = field(default_factory=dict)

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
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)
