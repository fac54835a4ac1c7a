"""What a domain takes from fs.aio-max-nr: the demand model.

QEMU (block/linux-aio.c) opens one Linux AIO context per AioContext that does
native I/O, each of MAX_EVENTS events: 128 up to QEMU 4.2, 1024 since 5.0.
Measured on QEMU 7.2 / libvirt 9.0 (docs/aio-facts.md section 3, re-measured by
tests/test_budget_libvirt.py on this host):

- the main loop's context appears as soon as any native disk opens, at start,
  whatever iothread the disk is later bound to;
- a virtio-scsi controller bound to an iothread moves its disks there when the
  device realizes: that iothread's context exists at start;
- a virtio-blk disk's iothread (``<driver iothread=...>`` or the libvirt 10
  per-queue ``<iothreads>`` mapping) gets its context only when the guest first
  does I/O on it: counted in ``events_max`` only;
- io='threads', io='io_uring', no io attribute, network/nvme/vhost disks and
  drives without a source take nothing.

``events_at_start`` is exact for ``virsh start --paused``; ``events_max`` is the
upper bound a guest using every disk reaches.
"""

from __future__ import annotations

from aiohook.facts import version_tuple

EVENTS_OLD = 128  # QEMU <= 4.2
EVENTS_NEW = 1024  # QEMU >= 5.0 (commit 2558cb8dd4, MAX_EVENTS)
_IO_TYPES = ("file", "block", "volume")  # where io= reaches QEMU's file driver


def events_per_context(qemu_version: str | None) -> int:
    """MAX_EVENTS of that QEMU; an unknown version is taken as the larger, safe side."""
    if qemu_version:
        v = version_tuple(qemu_version)
        if v and v < (5, 0):
            return EVENTS_OLD
    return EVENTS_NEW


def _scsi_controller_iothreads(doc) -> dict[str, str]:
    """virtio-scsi controller index -> iothread id, for controllers bound to one."""
    out = {}
    for ctl in doc.controllers("scsi"):
        if (ctl.get("model") or "") != "virtio-scsi":
            continue
        drv = ctl.find("driver")
        iot = drv.get("iothread") if drv is not None else None
        if iot:
            out[ctl.get("index") or "0"] = iot
    return out


def _disk_controller(disk) -> str:
    addr = disk.element.find("address")
    if addr is not None and addr.get("type") == "drive":
        return addr.get("controller") or "0"
    return "0"


def native_disks(doc, io_override: list[str | None] | None = None) -> list[dict]:
    """Each disk that opens a Linux AIO context: target, where its context lives.

    io_override, when given, is the io of each disk of doc.disks() in order
    (e.g. the io as found, before aiohook rewrote the document).
    """
    scsi = _scsi_controller_iothreads(doc)
    out = []
    for i, disk in enumerate(doc.disks()):
        io = io_override[i] if io_override is not None else disk.io
        if io != "native" or disk.type not in _IO_TYPES or not disk.has_source:
            continue
        at_start: list[str] = []  # iothreads whose context exists at start
        later: list[str] = []  # iothreads whose context appears on guest I/O
        bus = disk.bus
        if bus == "scsi":
            iot = scsi.get(_disk_controller(disk))
            if iot:
                at_start.append(iot)
        elif bus == "virtio":
            later.extend(disk.queue_iothreads or ([disk.iothread] if disk.iothread else []))
        out.append({"target": disk.target, "device": disk.device, "bus": bus,
                    "iothreads_at_start": at_start, "iothreads_later": later})
    return out


def demand_for_document(doc, qemu_version: str | None,
                        io_override: list[str | None] | None = None) -> dict:
    """The AIO demand of a domain document (see the module docstring for the model)."""
    per = events_per_context(qemu_version)
    disks = native_disks(doc, io_override)
    start_threads: set[str] = set()
    all_threads: set[str] = set()
    for d in disks:
        start_threads.update(d["iothreads_at_start"])
        all_threads.update(d["iothreads_at_start"])
        all_threads.update(d["iothreads_later"])
    main = 1 if disks else 0
    ctx_start = main + len(start_threads)
    ctx_max = main + len(all_threads)
    return {
        "events_at_start": ctx_start * per,
        "events_max": ctx_max * per,
        "contexts_at_start": ctx_start,
        "contexts_max": ctx_max,
        "events_per_context": per,
        "qemu_version": qemu_version,
        "native_disks": [d["target"] for d in disks],
        "iothreads_at_start": sorted(start_threads, key=_num),
        "iothreads_max": sorted(all_threads, key=_num),
    }


def _num(text: str):
    return (0, int(text)) if text.isdigit() else (1, text)


def demand_for(plan, *, as_found: bool = False) -> dict:
    """Demand of a DomainPlan: of the domain as rewritten (plan.document), or,
    with as_found=True, with each disk's io as it was before aiohook's decision
    (what QEMU gets at prepare, where libvirt ignores any rewrite)."""
    override = None
    if as_found and plan.disks:
        override = [d.decision.io_before for d in plan.disks]
        if len(override) != len(plan.document.disks()):
            override = None
    return demand_for_document(plan.document, plan.host.qemu_version, override)
