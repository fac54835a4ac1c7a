"""Domain shapes for the AIO demand measurements (tests/test_budget_libvirt.py).

Each shape is a function (images) -> (disks_xml, iothreads, extra_devices).
`images` maps a key to a path: raw preallocated files "f0".."f5" and a loop
block device "blk", and preallocated qcow2 images "q0", "q1". Domains have VCPUS vCPUs (per-queue mappings depend on it).
NEEDS_LIBVIRT names the shapes that an older libvirt refuses to define.
"""

from __future__ import annotations


def disk(src: str, target: str, io: str | None, *, bus: str = "virtio", iothread: str | None = None,
         device: str = "disk", kind: str = "file", cache: str = "none", controller: str | None = None,
         unit: str | None = None, fmt: str = "raw") -> str:
    attrs = f"name='qemu' type='{fmt}' cache='{cache}'"
    if io:
        attrs += f" io='{io}'"
    if iothread:
        attrs += f" iothread='{iothread}'"
    key = "dev" if kind == "block" else "file"
    ro = "<readonly/>" if device == "cdrom" else ""
    addr = ""
    if controller is not None:
        addr = f"<address type='drive' controller='{controller}' bus='0' target='0' unit='{unit or 0}'/>"
    return (f"<disk type='{kind}' device='{device}'><driver {attrs}/>"
            f"<source {key}='{src}'/><target dev='{target}' bus='{bus}'/>{ro}{addr}</disk>")


def scsi_controller(index: int, iothread: str | None, mapping: str = "") -> str:
    drv = f"<driver iothread='{iothread}'/>" if iothread else ""
    if mapping:
        drv = f"<driver{mapping}</driver>"
    return f"<controller type='scsi' index='{index}' model='virtio-scsi'>{drv}</controller>"


def queue_mapping(queues: int | None, *iothreads: str, explicit: dict | None = None) -> str:
    """The rest of a <driver ...> tag with a per-queue iothread mapping (libvirt >= 10)."""
    q = f" queues='{queues}'" if queues else ""
    inner = ""
    for iot in iothreads:
        qs = "".join(f"<queue id='{n}'/>" for n in (explicit or {}).get(iot, []))
        inner += f"<iothread id='{iot}'>{qs}</iothread>" if qs else f"<iothread id='{iot}'/>"
    return f"{q}><iothreads>{inner}</iothreads>"


def mapped_disk(src: str, target: str, mapping: str) -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' "
            f"io='native'{mapping}</driver><source file='{src}'/>"
            f"<target dev='{target}' bus='virtio'/></disk>")


VCPUS = 2
NEEDS_LIBVIRT = {  # shape -> the libvirt version that can define it
    "blk-queues-2-iothreads-1-2": (10, 0),
    "blk-queues-4-explicit-1-2-3": (10, 0),
    "scsi-queues-mapped-iothreads-1-2": (11, 2),
}


SHAPES = {
    "main-1native": lambda im: (disk(im["f0"], "vda", "native"), 0, ""),
    "main-2native-1iouring": lambda im: (
        disk(im["f0"], "vda", "native") + disk(im["f1"], "vdb", "native")
        + disk(im["f2"], "vdc", "io_uring"), 0, ""),
    "blk-iothread1-plus-main": lambda im: (
        disk(im["f0"], "vda", "native", iothread="1") + disk(im["f1"], "vdb", "native"), 1, ""),
    "blk-iothreads-1-2-3": lambda im: (
        disk(im["f0"], "vda", "native", iothread="1") + disk(im["f1"], "vdb", "native", iothread="2")
        + disk(im["f2"], "vdc", "native", iothread="3"), 3, ""),
    "scsi-2ctl-iothreads-1-2": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0")
        + disk(im["f1"], "sdb", "native", bus="scsi", controller="1"), 2,
        scsi_controller(0, "1") + scsi_controller(1, "2")),
    "scsi-2ctl-same-iothread": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0")
        + disk(im["f1"], "sdb", "native", bus="scsi", controller="1"), 1,
        scsi_controller(0, "1") + scsi_controller(1, "1")),
    "scsi-ctl-no-iothread": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0"), 0, scsi_controller(0, None)),
    "mixed-native-threads-iouring": lambda im: (
        disk(im["f0"], "vda", "native", iothread="1") + disk(im["f1"], "vdb", "threads", iothread="2")
        + disk(im["f2"], "vdc", "io_uring") + disk(im["f3"], "vdd", None, cache="writeback"), 2, ""),
    "threads-iouring-only": lambda im: (
        disk(im["f0"], "vda", "threads") + disk(im["f1"], "vdb", "io_uring"), 0, ""),
    "cdrom-native": lambda im: (
        disk(im["f0"], "hdc", "native", bus="ide", device="cdrom"), 0, ""),
    "block-loop-native": lambda im: (
        disk(im["blk"], "vda", "native", kind="block"), 0, ""),
    "scsi-iothread-plus-blk-iothread": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0")
        + disk(im["f1"], "vda", "native", iothread="2"), 2, scsi_controller(0, "1")),
    # qcow2 reads its header at open, from the main loop: a context at start on QEMU >= 9 too
    "qcow2-iothread1-plus-raw-iothread2": lambda im: (
        disk(im["q0"], "vda", "native", iothread="1", fmt="qcow2")
        + disk(im["f1"], "vdb", "native", iothread="2"), 2, ""),
    "qcow2-2-main-loop": lambda im: (
        disk(im["q0"], "vda", "native", fmt="qcow2") + disk(im["q1"], "vdb", "native", fmt="qcow2"),
        0, ""),
    "blk-queues-2-iothreads-1-2": lambda im: (
        mapped_disk(im["f0"], "vda", queue_mapping(2, "1", "2")), 2, ""),
    # 4 queues, a 2-vCPU guest uses queues 0 and 1 only: iothreads 1 and 2, not 3
    "blk-queues-4-explicit-1-2-3": lambda im: (
        mapped_disk(im["f0"], "vda", queue_mapping(4, "1", "2", "3", explicit={
            "1": [0], "2": [1], "3": [2, 3]})), 3, ""),
    "scsi-queues-mapped-iothreads-1-2": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0")
        + disk(im["f1"], "sdb", "native", bus="scsi", controller="0", unit="1"), 2,
        scsi_controller(0, None, queue_mapping(2, "1", "2"))),
}
