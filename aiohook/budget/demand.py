"""What a domain takes from fs.aio-max-nr: the demand model, per QEMU generation.

QEMU opens one Linux AIO context (io_setup) per AioContext, that is per thread
(the main loop, each iothread), that does native I/O; each takes MAX_EVENTS
events: 128 up to QEMU 4.2, 1024 since 5.0. *When* it opens them depends on the
generation (docs/aio-accounting.md has the measurements behind each line):

- ``open-time`` (QEMU < 9.0): the main loop's context as soon as any native
  disk opens, at start, whatever thread the disk later runs in; a virtio-scsi
  controller's iothread when the device realizes, at start; a virtio-blk
  disk's iothread (``<driver iothread>`` or a per-queue mapping) when the
  guest's driver starts it. A failure at start refuses the start.
- ``lazy`` (QEMU >= 9.0, "block/file-posix: set up Linux AIO and io_uring in
  the current thread"): each thread's context at its first native request. A
  main-loop context only for disks whose I/O runs in the main loop, or whose
  image format reads metadata when it opens (qcow2, vmdk, luks...: the read is
  submitted from the main loop at start); nothing else at start. A failure
  falls back to the thread pool with one log line.

A disk's I/O runs in: the iothreads of its per-queue mapping that the guest
uses (Linux uses min(queues, vCPUs) queues), else its ``<driver iothread>``
(virtio-blk), else its virtio-scsi controller's iothread(s), else the main loop.

``events_at_start``: what ``virsh start --paused`` takes. ``events_max``: what
the domain holds once a guest has used every disk. An unknown QEMU version is
taken as open-time, the larger of the two on both counts.
"""

from __future__ import annotations

from aiohook.facts import version_tuple

EVENTS_OLD = 128  # QEMU <= 4.2
EVENTS_NEW = 1024  # QEMU >= 5.0 (commit 2558cb8dd4, MAX_EVENTS)
LAZY_SINCE = (9, 0)
OPEN_TIME, LAZY = "open-time", "lazy"
MAIN = "main"
_IO_TYPES = ("file", "block", "volume")  # where io= reaches QEMU's file driver
_NO_READ_AT_OPEN = (None, "raw")  # formats whose open reads nothing through the disk


def events_per_context(qemu_version: str | None) -> int:
    """MAX_EVENTS of that QEMU; an unknown version is taken as the larger, safe side."""
    if qemu_version:
        v = version_tuple(qemu_version)
        if v and v < (5, 0):
            return EVENTS_OLD
    return EVENTS_NEW


def model_for(qemu_version: str | None) -> str:
    """open-time before QEMU 9.0 and for an unknown version; lazy from 9.0 on."""
    v = version_tuple(qemu_version) if qemu_version else ()
    return LAZY if v and v >= LAZY_SINCE else OPEN_TIME


# ------------------------------------------------------------ where I/O runs

def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _vcpus(doc) -> tuple[int, int]:
    """(possible vCPUs, vCPUs at boot) from <vcpu current=...>N</vcpu>."""
    el = doc.root.find("vcpu")
    possible = max(1, _int(el.text.strip() if el is not None and el.text else None, 1))
    boot = _int(el.get("current") if el is not None else None, possible)
    return possible, max(1, min(boot, possible))


def queue_mapping_iothreads(driver, vcpus: tuple[int, int]) -> list[str]:
    """The iothreads a guest's I/O reaches through a per-queue mapping
    (<driver queues=Q><iothreads><iothread id=N><queue id=q/>...), in order.

    QEMU's iothread-vq-mapping: listed queues go to their iothread; with no
    queue listed, queues are dealt round-robin. Q defaults to the vCPUs at
    boot. A Linux guest uses queues 0 .. min(Q, possible vCPUs) - 1."""
    if driver is None:
        return []
    threads = [(el.get("id"), [_int(q.get("id"), -1) for q in el.iterfind("queue")])
               for el in driver.iterfind("iothreads/iothread") if el.get("id")]
    if not threads:
        return []
    possible, boot = vcpus
    queues = max(1, _int(driver.get("queues"), boot))
    used = range(min(queues, possible))
    explicit = any(qs for _, qs in threads)
    out: list[str] = []
    for q in used:
        if explicit:
            owners = [tid for tid, qs in threads if q in qs]
        else:
            owners = [threads[q % len(threads)][0]]
        for tid in owners:
            if tid not in out:
                out.append(tid)
    return out


def _scsi_controllers(doc, vcpus) -> dict[str, list[str]]:
    """virtio-scsi controller index -> the iothreads its disks' I/O runs in."""
    out = {}
    for ctl in doc.controllers("scsi"):
        if (ctl.get("model") or "") != "virtio-scsi":
            continue
        drv = ctl.find("driver")
        mapped = queue_mapping_iothreads(drv, vcpus)
        single = drv.get("iothread") if drv is not None else None
        out[ctl.get("index") or "0"] = mapped or ([single] if single else [])
    return out


def _disk_controller(disk) -> str:
    addr = disk.element.find("address")
    if addr is not None and addr.get("type") == "drive":
        return addr.get("controller") or "0"
    return "0"


def native_disks(doc, io: list[str | None] | None = None) -> list[dict]:
    """Each disk that does native AIO, and the threads its I/O runs in.

    io is the io of each disk of doc.disks(), in order (DomainDocument.disk_io);
    None: as the document has it. "bound_at_realize" marks the disks whose
    threads a virtio-scsi controller binds at realize (open-time)."""
    vcpus = _vcpus(doc)
    scsi = None
    out = []
    for i, disk in enumerate(doc.disks()):
        if (io[i] if io is not None else disk.io) != "native" or disk.type not in _IO_TYPES or not disk.has_source:
            continue
        threads: list[str] = []
        realize = False
        bus = disk.bus
        if bus == "virtio":
            threads = queue_mapping_iothreads(disk.driver, vcpus)
            if not threads and disk.iothread:
                threads = [disk.iothread]
        elif bus == "scsi":
            if scsi is None:
                scsi = _scsi_controllers(doc, vcpus)
            threads = list(scsi.get(_disk_controller(disk), []))
            realize = bool(threads)
        out.append({"target": disk.target, "device": disk.device, "bus": bus,
                    "threads": threads or [MAIN], "bound_at_realize": realize,
                    "reads_at_open": disk.format not in _NO_READ_AT_OPEN or _encrypted(disk)})
    return out


def _encrypted(disk) -> bool:
    """LUKS (<encryption> in <source>, or on the disk): QEMU reads its header at open."""
    el = disk.element
    return el.find("source/encryption") is not None or el.find("encryption") is not None


# ------------------------------------------------------------ demand

def contexts_for(disks: list[dict], model: str) -> list[dict]:
    """One entry per AIO context: thread, the disks using it, and when it opens
    ("start" or "first-io"), by the generation's model."""
    by_thread: dict[str, dict] = {}

    def ctx(thread: str, opens: str) -> dict:
        c = by_thread.setdefault(thread, {"thread": thread, "disks": [], "opens": opens})
        if opens == "start":
            c["opens"] = "start"
        return c

    for d in disks:
        if model == OPEN_TIME:
            ctx(MAIN, "start")  # the file is opened, and its context set up, in the main loop
            opens = "start" if d["bound_at_realize"] else "first-io"
        else:
            if d["reads_at_open"]:  # the format's metadata read, from the main loop
                ctx(MAIN, "start")
            opens = "first-io"
        for thread in d["threads"]:
            c = ctx(thread, opens)
            if d["target"] not in c["disks"]:
                c["disks"].append(d["target"])
    return sorted(by_thread.values(), key=lambda c: _num(c["thread"]))


def demand_for_document(doc, qemu_version: str | None,
                        io: list[str | None] | None = None) -> dict:
    """The AIO demand of a domain document (see the module docstring) with each
    disk's io as in `io` (None: as the document has it)."""
    per = events_per_context(qemu_version)
    model = model_for(qemu_version)
    disks = native_disks(doc, io)
    contexts = contexts_for(disks, model)
    at_start = [c for c in contexts if c["opens"] == "start"]
    ctx_start, ctx_max = len(at_start), len(contexts)
    return {
        "events_at_start": ctx_start * per,
        "events_max": ctx_max * per,
        "contexts_at_start": ctx_start,
        "contexts_max": ctx_max,
        "events_per_context": per,
        "model": model,
        "qemu_version": qemu_version,
        "native_disks": [d["target"] for d in disks],
        "iothreads_at_start": [c["thread"] for c in at_start if c["thread"] != MAIN],
        "iothreads_max": [c["thread"] for c in contexts if c["thread"] != MAIN],
        "contexts": contexts,
    }


def _num(text: str):
    if text == MAIN:
        return (-1, 0)
    return (0, int(text)) if text.isdigit() else (1, text)


def demand_for(plan, *, as_found: bool = False) -> dict:
    """Demand of a DomainPlan: of the domain as rewritten (its document with the
    plan's edits), or, with as_found=True, as found (what QEMU gets at prepare,
    where libvirt ignores any rewrite)."""
    io = None if as_found else plan.document.disk_io(plan.edits)
    return demand_for_document(plan.document, plan.host.qemu_version, io)
