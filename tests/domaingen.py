"""Hypothesis strategy: libvirt domain XML plus a recorded-facts file that goes with it.

`domains()` draws a GeneratedDomain: the XML bytes (rendered as text so quoting,
attribute order, indentation, comments and namespaces vary the way real tools
vary them), the facts YAML that RecordedProbe reads for it (so every disk class
shows up: block, file-preallocated, file-sparse, network, empty, other,
unknown), and what was generated. Most drawn domains are valid against
libvirt's domain.rng; `invalid=True` marks the ones deliberately made invalid
(a foreign attribute or element where the schema forbids it).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from hypothesis import strategies as st

AIOHOOK_NS = "http://aiohook.org/xmlns/policy/1"
NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
FOREIGN_NS = "http://example.org/xmlns/foreign/7"

DISK_TYPES = ("file", "block", "network", "volume", "nvme", "vhostuser", "vhostvdpa", "dir")
DEVICES = ("disk", "cdrom", "floppy", "lun")
CACHES = ("none", "directsync", "writeback", "writethrough", "unsafe", "default")
IOS = ("native", "threads", "io_uring")
PROTOCOLS = ("rbd", "gluster", "iscsi", "nbd", "http", "https", "nfs", "ssh", "ftp", "sheepdog")
_TYPE_WEIGHTS = tuple(t for t in DISK_TYPES if t != "vhostvdpa") * 4 + ("vhostvdpa",)
BUS_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd", "fdc": "fd"}
BUSES_FOR = {
    "disk": ("virtio", "scsi", "sata", "ide", "usb"),
    "cdrom": ("sata", "scsi", "ide", "usb"),
    "floppy": ("fdc",),
    "lun": ("scsi",),
}
SOURCE_CLASSES = (
    "block", "prealloc", "sparse", "no-odirect", "missing", "unknown-kind", "alloc-unknown", "absent",
)
TRANSPORTS = ("lvm", "iscsi", "fc", "multipath", "nvme", "loop", "krbd", "nbd", "virtio", None)
FILE_FS = ("ext4", "xfs", "nfs4", "nfs", "tmpfs", "btrfs", None)

_SAFE = string.ascii_lowercase + string.digits
_COMMENT_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + " .,:;/=<>&'\"é日", min_size=0, max_size=30
).map(lambda s: s.replace("-", " "))


@dataclass
class GenDisk:
    type: str
    device: str
    bus: str
    target: str
    source_class: str | None  # for file/block/volume sources: how the facts describe it
    path: str | None
    io: str | None
    cache: str | None
    has_driver: bool


@dataclass
class GeneratedDomain:
    xml: bytes
    facts: str
    name: str
    disks: list[GenDisk] = field(default_factory=list)
    skip: bool = False
    pins: dict[str, str] = field(default_factory=dict)
    invalid: bool = False  # deliberately made invalid against domain.rng


def _q(value: str, quote: str) -> str:
    """An attribute value in the chosen quote style."""
    if quote == '"':
        return quoteattr(value, {'"': "&quot;"}) if '"' in value else f'"{escape(value)}"'
    return "'" + escape(value, {"'": "&apos;"}) + "'"


def _attrs(pairs: list[tuple[str, str]], quote: str) -> str:
    return "".join(f" {k}={_q(v, quote)}" for k, v in pairs)


def _one_in(draw, n: int) -> bool:
    """True with probability ~1/(n+1); not 0, which hypothesis draws far more often."""
    return draw(st.integers(0, n)) == n // 2 + 1


@st.composite
def _word(draw, min_size=1, max_size=10):
    return draw(st.text(alphabet=_SAFE, min_size=min_size, max_size=max_size))


@st.composite
def _host_facts(draw) -> dict:
    host = {}
    io_uring = draw(st.sampled_from([True, True, False, None]))
    if io_uring is not None:
        host["io_uring"] = io_uring
    version = draw(st.sampled_from(["7.2.0", "8.2.2", "4.2.1", "5.0.0", "9.1.0-rc1", None]))
    if version:
        host["qemu_version"] = version
    qiu = draw(st.sampled_from([True, False, None, None]))
    if qiu is not None:
        host["qemu_io_uring"] = qiu
    return host


def _source_facts(draw, cls: str, kind: str) -> dict | None:
    """Recorded facts for one path in class `cls` (None: left out of the file)."""
    if cls == "absent":
        return None
    if cls == "missing":
        return {"kind": "missing"}
    if cls == "unknown-kind":
        return {"kind": "unknown", "error": "timed out after 2.0 s"}
    if kind == "block" or cls == "block":
        out = {"kind": "block", "o_direct": draw(st.sampled_from([True, True, False, None]))}
        transport = draw(st.sampled_from(TRANSPORTS))
        if transport:
            out["transport"] = transport
        return {k: v for k, v in out.items() if v is not None}
    out = {"kind": "file", "fs": draw(st.sampled_from(FILE_FS))}
    if cls == "prealloc":
        out.update(allocated=True, o_direct=True)
    elif cls == "sparse":
        out.update(allocated=False, o_direct=draw(st.sampled_from([True, False, None])))
    elif cls == "no-odirect":
        out.update(allocated=draw(st.booleans()), o_direct=False)
    elif cls == "alloc-unknown":
        out.update(o_direct=True, error="FIEMAP not supported")
    return {k: v for k, v in out.items() if v is not None}


@st.composite
def domains(draw, max_disks: int = 8) -> GeneratedDomain:
    quote = draw(st.sampled_from(["'", '"']))
    pretty = draw(st.sampled_from([True, True, True, False]))
    nl, ind = ("\n", "  ") if pretty else ("", "")
    name = draw(_word(1, 12)) + draw(st.sampled_from(["", "-é", "_x", ".test"]))
    invalid = False

    sources: dict[str, dict] = {}
    volumes: dict[str, dict] = {}
    used_targets: set[str] = set()
    n_iothreads = draw(st.integers(0, 4))
    disks_xml: list[str] = []
    gen_disks: list[GenDisk] = []

    n_disks = draw(st.integers(0, max_disks))
    for i in range(n_disks):
        # vhostvdpa (not in older domain.rng) is rarer so most domains stay valid
        dtype = draw(st.sampled_from(_TYPE_WEIGHTS))
        # domain.rng: device='lun' only on block, network and volume disks
        device = draw(st.sampled_from(DEVICES if dtype in ("block", "network", "volume")
                                      else ("disk", "cdrom", "floppy") if dtype == "file"
                                      else ("disk",)))
        bus = draw(st.sampled_from(BUSES_FOR[device]))
        prefix = BUS_PREFIX[bus]
        letters = string.ascii_lowercase
        target = next(prefix + a + b for b in [""] + list(letters) for a in letters
                      if prefix + a + b not in used_targets)
        used_targets.add(target)

        # <source>
        path, source_class, source_xml = None, None, None
        empty = device in ("cdrom", "floppy") and _one_in(draw, 3)
        if dtype == "file" and not empty:
            path = "/var/lib/libvirt/images/" + draw(_word()) + draw(st.sampled_from([".qcow2", ".raw", ".img", ".iso", ""]))
            source_xml = f"<source{_attrs([('file', path)], quote)}/>"
        elif dtype == "block" and not empty:
            path = draw(st.sampled_from(["/dev/vg0/", "/dev/mapper/", "/dev/disk/by-id/wwn-0x", "/dev/sd"])) + draw(_word())
            source_xml = f"<source{_attrs([('dev', path)], quote)}/>"
        elif dtype == "network":
            proto = draw(st.sampled_from(PROTOCOLS + ("rbd", "iscsi", "nbd", "gluster") * 3))
            host = f"<host{_attrs([('name', 'stor' + draw(_word(1, 4)) + '.lan'), ('port', str(draw(st.integers(1, 65535))))], quote)}/>"
            vol_name = draw(_word()) + "/" + draw(_word())
            if proto in ("http", "https", "ftp", "ssh", "nfs"):
                vol_name = "/" + vol_name
            if proto == "nfs":  # domain.rng: nfs takes a host without port, and <identity>
                host = (f"<host{_attrs([('name', 'nfs.lan')], quote)}/>"
                        f"<identity{_attrs([('user', '+107'), ('group', '+107')], quote)}/>")
            if proto == "ssh":
                invalid = True  # real libvirt XML, but libvirt 9.0's domain.rng has no ssh
            source_xml = f"<source{_attrs([('protocol', proto), ('name', vol_name)], quote)}>{host}</source>"
        elif dtype == "volume" and not empty:
            pool, vol = draw(_word()), draw(_word()) + ".img"
            source_xml = f"<source{_attrs([('pool', pool), ('volume', vol)], quote)}/>"
            resolved = draw(st.sampled_from(["file", "block", "network", "unknown", "absent"]))
            key = f"{pool}/{vol}"
            if resolved == "file":
                path = f"/srv/pools/{pool}/{vol}"
                volumes[key] = {"kind": "file", "path": path}
            elif resolved == "block":
                path = f"/dev/{pool}/{vol}"
                volumes[key] = {"kind": "block", "path": path}
            elif resolved == "network":
                volumes[key] = {"kind": "network", "protocol": "rbd"}
            elif resolved == "unknown":
                volumes[key] = {"kind": "unknown", "reason": "pool inactive"}
        elif dtype == "nvme":
            addr = f"<address{_attrs([('domain', '0x0000'), ('bus', '0x5e'), ('slot', '0x00'), ('function', '0x0')], quote)}/>"
            source_xml = f"<source{_attrs([('type', 'pci'), ('managed', 'yes'), ('namespace', str(draw(st.integers(1, 9))))], quote)}>{addr}</source>"
        elif dtype == "vhostuser":
            source_xml = f"<source{_attrs([('type', 'unix'), ('path', '/var/tmp/vhost.' + str(i))], quote)}/>"
        elif dtype == "vhostvdpa":
            invalid = True  # libvirt >= 9.8; the installed domain.rng may predate it
            source_xml = f"<source{_attrs([('dev', f'/dev/vhost-vdpa-{i}')], quote)}/>"
        elif dtype == "dir":
            source_xml = f"<source{_attrs([('dir', '/srv/dirs/' + draw(_word()))], quote)}/>"
        if path is not None:
            source_class = draw(st.sampled_from(SOURCE_CLASSES))
            kind = "block" if (dtype == "block" or path.startswith("/dev/")) else "file"
            if source_class == "block" and kind == "file":
                source_class = "prealloc"
            if kind == "block" and source_class in ("prealloc", "sparse", "no-odirect", "alloc-unknown"):
                source_class = "block"
            facts = _source_facts(draw, source_class, kind)
            if facts is not None and path not in sources:
                sources[path] = facts

        # <driver>
        io = draw(st.sampled_from(IOS + (None, None)))
        cache = draw(st.sampled_from(CACHES + (None, None)))
        has_driver = not _one_in(draw, 3)  # a quarter of the disks have no <driver> at all
        driver_xml = None
        if has_driver:
            attrs = [("name", "qemu")]
            fmt = draw(st.sampled_from(["raw", "qcow2", None]))
            if dtype in ("vhostuser", "vhostvdpa", "nvme"):
                fmt = "raw"
            if dtype == "dir":
                fmt = "fat"
            if fmt:
                attrs.append(("type", fmt))
            if cache:
                attrs.append(("cache", cache))
            if io:
                attrs.append(("io", io))
            if n_iothreads and draw(st.booleans()):
                attrs.append(("iothread", str(draw(st.integers(1, n_iothreads)))))
            if draw(st.booleans()):
                attrs.append(("discard", draw(st.sampled_from(["unmap", "ignore"]))))
            attrs = draw(st.permutations(attrs))
            driver_xml = f"<driver{_attrs(attrs, quote)}/>"
        else:
            io = cache = None

        children = []
        if driver_xml:
            children.append(driver_xml)
        if source_xml:
            children.append(source_xml)
        children.append(f"<target{_attrs([('dev', target), ('bus', bus)], quote)}/>")
        if device in ("cdrom", "floppy") or _one_in(draw, 5):
            children.append("<readonly/>")
        if device != "cdrom" and _one_in(draw, 7):
            children.append("<shareable/>")
        if _one_in(draw, 4):
            children.append(f"<serial>{escape(draw(_word()))}</serial>")
        if _one_in(draw, 5):
            children.insert(draw(st.integers(0, len(children))), f"<!--{draw(_COMMENT_TEXT)}-->")
        if _one_in(draw, 40):
            children.append(f"<f:tag xmlns:f='{FOREIGN_NS}'/>")  # not allowed in <disk>
            invalid = True
        children = draw(st.permutations(children)) if _one_in(draw, 3) else children
        disk_attrs = [("type", dtype), ("device", device)]
        if _one_in(draw, 3):
            disk_attrs.reverse()
        if _one_in(draw, 60):
            disk_attrs.append(("bogus", "1"))  # not in the schema
            invalid = True
        sep = nl + ind * 3
        body = "".join(sep + c for c in children)
        if not pretty and draw(st.booleans()):
            body = " ".join(children)  # text content between children without newlines
        disks_xml.append(f"<disk{_attrs(disk_attrs, quote)}>{body}{nl + ind * 2}</disk>")
        gen_disks.append(GenDisk(dtype, device, bus, target, source_class, path, io, cache, has_driver))

    # controllers: virtio-scsi, with an iothread when the domain has some
    controllers = []
    if any(d.bus == "scsi" for d in gen_disks) or draw(st.booleans()):
        drv = ""
        if n_iothreads and draw(st.booleans()):
            drv = f"<driver{_attrs([('iothread', str(draw(st.integers(1, n_iothreads))))], quote)}/>"
        controllers.append(
            f"<controller{_attrs([('type', 'scsi'), ('index', '0'), ('model', 'virtio-scsi')], quote)}>{drv}</controller>"
        )

    # metadata: aiohook overrides, nova, a foreign namespace, comments
    skip = _one_in(draw, 6)
    pins: dict[str, str] = {}
    metadata_parts = []
    if draw(st.booleans()):
        metadata_parts.append(
            f"<nova:instance xmlns:nova={_q(NOVA_NS, quote)}><nova:name>{escape(name)}</nova:name>"
            f"<nova:flavor name={_q('m1.small', quote)}><nova:memory>2048</nova:memory></nova:flavor></nova:instance>"
        )
    if skip or _one_in(draw, 2):
        pol = []
        if skip:
            pol.append("<aiohook:skip/>")
        targets = [d.target for d in gen_disks] + ["vdzz"]
        for t in draw(st.lists(st.sampled_from(targets), max_size=3, unique=True)):
            pins[t] = draw(st.sampled_from(["native", "threads", "io_uring", "keep"]))
            pol.append(f"<aiohook:disk{_attrs([('target', t), ('io', pins[t])], quote)}/>")
        if _one_in(draw, 4):
            pol.insert(0, f"<!--{draw(_COMMENT_TEXT)}-->")
        metadata_parts.append(f"<aiohook:policy xmlns:aiohook={_q(AIOHOOK_NS, quote)}>{''.join(pol)}</aiohook:policy>")
    if draw(st.booleans()):
        metadata_parts.append(f"<f:any xmlns:f={_q(FOREIGN_NS, quote)} f:attr={_q('x&y', quote)}>text<f:deep/></f:any>")

    lines = []
    decl = draw(st.sampled_from([None, "<?xml version='1.0' encoding='UTF-8'?>",
                                 '<?xml version="1.0"?>']))
    if decl:
        lines.append(decl)
    if _one_in(draw, 5):
        lines.append(f"<!--{draw(_COMMENT_TEXT)}-->")
    qemu_cmdline = _one_in(draw, 4)
    root_attrs = [("type", "kvm")]
    if qemu_cmdline:
        root_attrs.append(("xmlns:qemu", QEMU_NS))
    lines.append(f"<domain{_attrs(root_attrs, quote)}>")
    inner = [f"<name>{escape(name)}</name>", f"<memory{_attrs([('unit', 'KiB')], quote)}>1048576</memory>",
             "<vcpu>2</vcpu>"]
    if n_iothreads:
        inner.append(f"<iothreads>{n_iothreads}</iothreads>")
    if metadata_parts:
        inner.insert(1, "<metadata>" + "".join(metadata_parts) + "</metadata>")
    inner.append(f"<os><type{_attrs([('arch', 'x86_64'), ('machine', 'q35')], quote)}>hvm</type></os>")
    if _one_in(draw, 3):
        inner.append(f"<!--{draw(_COMMENT_TEXT)}-->")
    devs = ["<emulator>/usr/bin/qemu-system-x86_64</emulator>"] + disks_xml + controllers
    if _one_in(draw, 3):
        devs.insert(draw(st.integers(1, len(devs))), f"<!--{draw(_COMMENT_TEXT)}-->")
    devs.append(f"<console{_attrs([('type', 'pty')], quote)}/>")
    inner.append("<devices>" + "".join(nl + ind * 2 + d for d in devs) + nl + ind + "</devices>")
    if qemu_cmdline:
        inner.append(f"<qemu:commandline><qemu:arg{_attrs([('value', '-S')], quote)}/></qemu:commandline>")
    lines.extend(ind + part for part in inner)
    lines.append("</domain>")
    xml = (nl if pretty else "\n").join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))

    facts = "version: 1\n"
    host = draw(_host_facts())
    facts += "host: " + json.dumps(host) + "\n"
    facts += "sources:\n" + "".join(f"  {json.dumps(p)}: {json.dumps(v)}\n" for p, v in sources.items())
    if not sources:
        facts = facts.replace("sources:\n", "sources: {}\n")
    if volumes:
        facts += "volumes:\n" + "".join(f"  {json.dumps(k)}: {json.dumps(v)}\n" for k, v in volumes.items())
    return GeneratedDomain(xml.encode("utf-8"), facts, name, gen_disks, skip, pins, invalid)
