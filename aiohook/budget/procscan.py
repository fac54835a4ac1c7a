"""Who holds the host's AIO contexts: /[aio] mappings in /proc/PID/maps.

Each io_setup() context is one shared mapping named "/[aio] (deleted)" in its
process, so counting those lines counts a process's contexts exactly. QEMU
processes are mapped to their domain through libvirt's pid files
(/run/libvirt/qemu/NAME.pid) or, failing that, `-name guest=NAME` on the
command line. Light: no lxml.
"""

from __future__ import annotations

import os

from aiohook.budget.demand import events_per_context
from aiohook.probe import host
from aiohook.record import Record

LIBVIRT_RUN_DIR = "/run/libvirt/qemu"
_AIO_MARK = b"/[aio]"


LIBVIRT_DAEMONS = ("libvirtd", "virtqemud")


def process_start_time(pid: int, proc_root: str | None = None) -> float | None:
    """When a process started, in seconds since the epoch (/proc/PID/stat and btime,
    which has whole seconds: the result may be up to 1 s early)."""
    root = proc_root or host.PROC_ROOT
    try:
        with open(os.path.join(root, str(pid), "stat"), "rb") as fh:
            stat = fh.read()
        with open(os.path.join(root, "stat"), "rb") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def daemon_started(run_root: str = "/run", proc_root: str | None = None) -> tuple[str, float] | None:
    """(name, start time) of the running libvirtd or virtqemud, from its pid file."""
    for name in LIBVIRT_DAEMONS:
        try:
            with open(os.path.join(run_root, f"{name}.pid")) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        started = process_start_time(pid, proc_root)
        if started is not None:
            return name, started
    return None


def aio_contexts(pid: int, proc_root: str | None = None) -> int | None:
    """Number of AIO contexts of a process; None when it is gone or unreadable."""
    try:
        with open(os.path.join(proc_root or host.PROC_ROOT, str(pid), "maps"), "rb") as fh:
            return sum(1 for line in fh if _AIO_MARK in line)
    except OSError:
        return None


def _cmdline(pid: int, proc_root: str) -> list[str]:
    try:
        with open(os.path.join(proc_root, str(pid), "cmdline"), "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def guest_name(argv: list[str]) -> str | None:
    """NAME from `-name guest=NAME,debug-threads=on` (libvirt) or `-name NAME`."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-name":
            value = argv[i + 1]
            parts = value.replace(",,", "\0").split(",")
            for part in parts:
                if part.startswith("guest="):
                    return part[6:].replace("\0", ",")
            first = parts[0]
            return first.replace("\0", ",") if "=" not in first else None
    return None


def libvirt_pids(run_dir: str | None = None) -> dict[int, str]:
    """pid -> domain name from libvirt's pid files."""
    run_dir = run_dir or LIBVIRT_RUN_DIR
    out = {}
    try:
        names = os.listdir(run_dir)
    except OSError:
        return out
    for name in names:
        if not name.endswith(".pid"):
            continue
        try:
            with open(os.path.join(run_dir, name)) as fh:
                out[int(fh.read().strip())] = name[:-4]
        except (OSError, ValueError):
            continue
    return out


def domain_pid(domain: str, run_dir: str | None = None, proc_root: str | None = None) -> int | None:
    """The live QEMU pid of a domain from its pid file, None when not running."""
    try:
        with open(os.path.join(run_dir or LIBVIRT_RUN_DIR, domain + ".pid")) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(os.path.join(proc_root or host.PROC_ROOT, str(pid))) else None


class AioHolder(Record):
    FIELDS = ("pid", "contexts", "events", "domain", "command", "qemu_version")

    def __init__(self, pid: int, contexts: int, events: int, domain: str | None = None,
                 command: str = "", qemu_version: str | None = None):
        self.pid = pid
        self.contexts = contexts
        self.events = events
        self.domain = domain  # None: not a QEMU domain
        self.command = command
        self.qemu_version = qemu_version

    def to_dict(self) -> dict:
        return {k: v for k, v in self._asdict().items() if v is not None}


_VERSIONS: dict[str, str | None] = {}


def _qemu_version(exe: str) -> str | None:
    if exe not in _VERSIONS:
        try:
            from aiohook.probe.host import BinaryFacts

            _VERSIONS[exe] = BinaryFacts().qemu(exe).get("version")
        except Exception:  # noqa: BLE001 - an unknown version counts as 1024 per context
            _VERSIONS[exe] = None
    return _VERSIONS[exe]


def _is_qemu(argv: list[str]) -> bool:
    base = os.path.basename(argv[0]) if argv else ""
    return base.startswith("qemu-system") or base in ("qemu-kvm", "kvm")


def _holder(pid: int, contexts: int, domain: str | None, proc_root: str) -> AioHolder:
    argv = _cmdline(pid, proc_root)
    exe = argv[0] if argv else ""
    version = _qemu_version(exe) if exe and (domain or _is_qemu(argv) or "qemu" in exe) else None
    # A non-QEMU holder's contexts have unknown sizes; QEMU's are MAX_EVENTS each.
    per = events_per_context(version)
    return AioHolder(pid, contexts, contexts * per, domain, os.path.basename(exe), version)


def qemu_holders(proc_root: str | None = None, run_dir: str | None = None,
                 include_idle: bool = True) -> list[AioHolder]:
    """Every running QEMU (libvirt pid files first, then `qemu-system*` processes),
    sorted by events held, largest first."""
    proc_root = proc_root or host.PROC_ROOT
    # A domain's pid file names its QEMU; others there (driver.pid: libvirtd's own) don't.
    by_pid = {pid: name for pid, name in libvirt_pids(run_dir).items()
              if _is_qemu(_cmdline(pid, proc_root))}
    for entry in _pids(proc_root):
        if entry in by_pid:
            continue
        argv = _cmdline(entry, proc_root)
        if _is_qemu(argv):
            by_pid[entry] = guest_name(argv) or f"pid-{entry}"
    out = []
    for pid, name in by_pid.items():
        contexts = aio_contexts(pid, proc_root)
        if contexts is None or (contexts == 0 and not include_idle):
            continue
        out.append(_holder(pid, contexts, name, proc_root))
    out.sort(key=lambda h: (-h.events, h.domain or "", h.pid))
    return out


def _pids(proc_root: str) -> list[int]:
    try:
        return [int(n) for n in os.listdir(proc_root) if n.isdigit()]
    except OSError:
        return []


def all_holders(proc_root: str | None = None, run_dir: str | None = None) -> list[AioHolder]:
    """Every process holding at least one AIO context (QEMU or not), largest first."""
    proc_root = proc_root or host.PROC_ROOT
    names = libvirt_pids(run_dir)
    out = []
    for pid in _pids(proc_root):
        contexts = aio_contexts(pid, proc_root)
        if not contexts:
            continue
        domain = names.get(pid)
        if domain is None:
            argv = _cmdline(pid, proc_root)
            domain = guest_name(argv) if _is_qemu(argv) else None
        out.append(_holder(pid, contexts, domain, proc_root))
    out.sort(key=lambda h: (-h.events, h.domain or "", h.pid))
    return out
