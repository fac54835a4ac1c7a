"""Give each disk its class from what the XML says and what the host answered."""

from __future__ import annotations

from aiohook.facts import SourceFacts, VolumeTarget

OTHER_TYPES = ("nvme", "vhostuser", "vhostvdpa", "dir")


def classify(disk_type: str, has_source: bool, source: SourceFacts | None,
             volume: VolumeTarget | None = None) -> tuple[str, str]:
    """(class, reason). The reason names the fact that decided, or the one missing."""
    if disk_type in OTHER_TYPES:
        return "other", f"type {disk_type}: QEMU does the I/O without host AIO"
    if not has_source:
        return "empty", "no source (no media)"
    if disk_type == "network":
        return "network", "network disk: QEMU's own client does the I/O"
    if disk_type == "volume":
        if volume is None or volume.kind == "unknown":
            why = volume.reason if volume and volume.reason else "pool definition not readable"
            return "unknown", f"volume not resolved: {why}"
        if volume.kind == "network":
            return "network", f"volume in a {volume.protocol or 'network'} pool"
    if disk_type not in ("file", "block", "volume"):
        return "unknown", f"unsupported disk type {disk_type}"
    if source is None:
        return "unknown", "source not probed"
    if source.kind == "missing":
        return "unknown", f"source {source.path} does not exist"
    if source.kind == "block":
        return "block", "block device" + (f" ({source.transport})" if source.transport else "")
    if source.kind == "file":
        if source.allocated is True:
            return "file-preallocated", "allocated blocks cover the virtual size"
        if source.allocated is False:
            return "file-sparse", "allocated blocks do not cover the virtual size"
        return "unknown", "allocation unknown" + (f": {source.error}" if source.error else "")
    return "unknown", "source not classified" + (f": {source.error}" if source.error else "")
