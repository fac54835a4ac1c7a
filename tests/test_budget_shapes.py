"""Domain shapes for the AIO demand measurements (tests/test_budget_libvirt.py).

Each shape is a function (images) -> (disks_xml, iothreads, extra_devices).
`images` maps a key to a path: raw preallocated files "f0".."f5" and a loop
block device "blk".
"""

from __future__ import annotations


def disk(src: str, target: str, io: str | None, *, bus: str = "virtio", iothread: str | None = None,
         device: str = "disk", kind: str = "file", cache: str = "none", controller: str | None = None,
         unit: str | None = None) -> str:
    attrs = f"name='qemu' type='raw' cache='{cache}'"
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


def scsi_controller(index: int, iothread: str | None) -> str:
    drv = f"<driver iothread='{iothread}'/>" if iothread else ""
    return f"<controller type='scsi' index='{index}' model='virtio-scsi'>{drv}</controller>"


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
        disk(im["f0"], "sda", "native", bus="sata", device="cdrom"), 0, ""),
    "block-loop-native": lambda im: (
        disk(im["blk"], "vda", "native", kind="block"), 0, ""),
    "scsi-iothread-plus-blk-iothread": lambda im: (
        disk(im["f0"], "sda", "native", bus="scsi", controller="0")
        + disk(im["f1"], "vda", "native", iothread="2"), 2, scsi_controller(0, "1")),
}
