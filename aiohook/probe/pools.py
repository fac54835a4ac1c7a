"""Where a libvirt storage volume lives: <source pool= volume=> through its pool definition.

Reads the pool XML libvirt keeps (/etc/libvirt/storage/POOL.xml) with the
domain parser's hardened options (aiohook.domxml.document). Not on the hook's
hot path unless a domain has a volume disk: LinuxProbe imports it on first use.
"""

from __future__ import annotations

import os

from aiohook.facts import VolumeTarget
from aiohook.probe.sources import reason

_MAX_POOL_XML = 1 << 20

_FILE_POOLS = ("dir", "fs", "netfs", "vstorage")
_DEVICE_POOLS = ("disk", "iscsi", "scsi", "mpath")
_NETWORK_POOLS = {
    "rbd": "rbd",
    "gluster": "gluster",
    "sheepdog": "sheepdog",
    "iscsi-direct": "iscsi",
}


def _unknown(reason: str) -> VolumeTarget:
    return VolumeTarget(kind="unknown", reason=reason)


def _load_pool(pool_dir: str, pool: str):
    """The parsed <pool> root for `pool`, or a reason string."""
    from lxml import etree

    from aiohook.domxml.document import hardened_parser

    parser = hardened_parser()

    def parse(path: str):
        with open(path, "rb") as handle:
            data = handle.read(_MAX_POOL_XML + 1)
        if len(data) > _MAX_POOL_XML:
            raise ValueError("pool definition too large")
        root = etree.fromstring(data, parser)
        if root.getroottree().docinfo.doctype:
            # libvirt writes none; entities would be left unexpanded, i.e. wrong paths.
            raise ValueError("DOCTYPE not allowed in a pool definition")
        if root.tag != "pool":
            raise ValueError("not a <pool> definition")
        return root

    direct = os.path.join(pool_dir, f"{pool}.xml")
    candidates = [direct]
    if not os.path.exists(direct):
        try:
            candidates = sorted(
                os.path.join(pool_dir, n) for n in os.listdir(pool_dir) if n.endswith(".xml")
            )
        except OSError as err:
            return f"cannot read pool directory {pool_dir}: {reason(err)}"
    for path in candidates:
        try:
            root = parse(path)
        except (OSError, ValueError, etree.XMLSyntaxError) as err:
            if path == direct:
                return f"cannot read pool {pool!r} from {path}: {reason(err)}"
            continue  # a broken unrelated pool file
        if (root.findtext("name") or "").strip() == pool:
            return root
        if path == direct:
            return f"{path} defines pool {root.findtext('name')!r}, not {pool!r}"
    return f"pool {pool!r} not defined in {pool_dir}"


def resolve_pool_volume(pool_dir: str, pool: str, volume: str) -> VolumeTarget:
    if not pool or "/" in pool or pool in (".", ".."):
        return _unknown(f"invalid pool name {pool!r}")
    if not volume or "/" in volume or volume in (".", "..") or "\0" in volume:
        return _unknown(f"invalid volume name {volume!r}")
    root = _load_pool(pool_dir, pool)
    if isinstance(root, str):
        return _unknown(root)
    pool_type = root.get("type") or ""
    target = (root.findtext("target/path") or "").strip()
    source_name = (root.findtext("source/name") or "").strip()
    if pool_type in _FILE_POOLS:
        if not target:
            return _unknown(f"pool {pool!r} has no target path")
        return VolumeTarget(kind="file", path=os.path.join(target, volume))
    if pool_type == "logical":
        return VolumeTarget(kind="block", path=f"/dev/{source_name or pool}/{volume}")
    if pool_type == "zfs":
        return VolumeTarget(kind="block", path=f"/dev/zvol/{source_name or pool}/{volume}")
    if pool_type in _DEVICE_POOLS:
        path = os.path.join(target or "/dev", volume)
        if os.path.exists(path):
            return VolumeTarget(kind="block", path=path)
        return _unknown(f"{pool_type} pool {pool!r}: no device {path}")
    if pool_type in _NETWORK_POOLS:
        return VolumeTarget(kind="network", protocol=_NETWORK_POOLS[pool_type])
    return _unknown(f"pool {pool!r} has unsupported type {pool_type!r}")
