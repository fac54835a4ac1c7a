"""`aiohook doctor`: is this host's AIO limit big enough for the domains it defines?

Compares fs.aio-max-nr with the sum of events_max (by each domain's QEMU
generation, aiohook.budget.demand) over every defined domain
(/etc/libvirt/qemu/*.xml) plus running transient ones (/run/libvirt/qemu/*.xml),
the reserve and what non-QEMU processes hold now; checks io_uring, the QEMU and
libvirt versions, and whether aiohook's hook is installed. `--apply` writes
/etc/sysctl.d/60-aiohook.conf atomically and applies it (never lowers the limit).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from aiohook.budget import procscan
from aiohook.budget.demand import demand_for_document
from aiohook.budget.gate import SYSCTL_FILE, suggested_limit
from aiohook.budget.supply import read_supply
from aiohook.budget.usage import status_domain
from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR, installed_hook

CONFIG_DIR = "/etc/libvirt/qemu"


@dataclass
class DoctorReport:
    aio_max_nr: int = 0
    aio_nr: int = 0
    reserve: int = 0
    domains: list[dict] = field(default_factory=list)
    other_events: int = 0
    needed: int = 0
    suggested: int = 0
    io_uring: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    hook: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def load_domain(path: str):
    from aiohook.domxml import parse_domain
    from aiohook.fsutil import read_bounded

    return parse_domain(read_bounded(path, 10 << 20), path)


def hook_status(hooks_dir: str, libvirt_version: str | None) -> dict:
    """aiohook's hook files and whether libvirt runs one (aiohook.probe.hookfiles)."""
    found = installed_hook(hooks_dir, libvirt_version)
    return {"installed": found["installed"],
            "files": [{"path": p, "executable": os.access(p, os.X_OK)} for p in found["ours"]]}


def examine(config_dir: str = CONFIG_DIR, hooks_dir: str = DEFAULT_HOOKS_DIR, reserve: int = 0,
            run_dir: str | None = None) -> DoctorReport:
    from aiohook.probe.linux import LinuxProbe

    probe = LinuxProbe()
    rep = DoctorReport(reserve=reserve)
    versions: dict[str, str | None] = {}
    seen = set()
    sources = [(p, load_domain) for p in sorted(glob.glob(os.path.join(config_dir, "*.xml")))]
    sources += [(p, status_domain) for p in
                sorted(glob.glob(os.path.join(run_dir or procscan.LIBVIRT_RUN_DIR, "*.xml")))]
    host = None
    for path, loader in sources:
        try:
            doc = loader(path)
        except Exception as exc:  # noqa: BLE001 - one bad file must not hide the rest
            rep.notes.append(f"{path}: skipped: {exc}")
            continue
        if doc.name in seen:
            continue
        seen.add(doc.name)
        emu = doc.emulator or "/usr/bin/qemu-system-x86_64"
        if emu not in versions:
            host = probe.host_facts(emu)
            versions[emu] = host.qemu_version
        d = demand_for_document(doc, versions[emu])
        rep.domains.append({"name": doc.name, "file": path, "events_at_start": d["events_at_start"],
                            "events_max": d["events_max"], "qemu_version": versions[emu],
                            "model": d["model"]})
    host = host or probe.host_facts(None)
    supply = read_supply(reserve)
    rep.aio_max_nr, rep.aio_nr = supply.aio_max_nr, supply.aio_nr
    qemu_pids = set(procscan.libvirt_pids(run_dir))
    rep.other_events = sum(h.events for h in procscan.all_holders(run_dir=run_dir)
                           if h.pid not in qemu_pids and h.domain is None)
    total_max = sum(d["events_max"] for d in rep.domains)
    rep.needed = total_max + reserve + rep.other_events
    rep.suggested = suggested_limit(rep.needed)
    rep.versions = {"qemu": sorted({v for v in versions.values() if v}) or [host.qemu_version],
                    "libvirt": host.libvirt_version}
    rep.io_uring = {"kernel": host.io_uring, "qemu_liburing": host.qemu_io_uring,
                    "usable": host.io_uring_usable()}
    rep.hook = hook_status(hooks_dir, host.libvirt_version)
    if rep.needed > rep.aio_max_nr:
        rep.problems.append(
            f"fs.aio-max-nr {rep.aio_max_nr} < {rep.needed} needed: {len(rep.domains)} domain(s) "
            f"take up to {total_max} events (sum of events_max), reserve {reserve}, other "
            f"processes hold {rep.other_events}")
        rep.fixes += [f"sysctl -w fs.aio-max-nr={rep.suggested}",
                      f"echo 'fs.aio-max-nr = {rep.suggested}' > {SYSCTL_FILE}",
                      "(or: aiohook doctor --apply)"]
    if not rep.io_uring["usable"]:
        rep.notes.append("io_uring is not usable here (kernel.io_uring_disabled, kernel or QEMU "
                         "without liburing): degrade falls back to threads")
    for emu, v in versions.items():
        if v is None:
            rep.notes.append(f"{emu}: QEMU version unknown; counted as 1024 events per context")
    if not rep.hook["installed"]:
        rep.problems.append(f"the aiohook hook is not installed in {hooks_dir}/qemu.d: "
                            "nothing guards domain starts")
        rep.fixes += ["aiohook install, then restart libvirtd (it finds hooks only at start)"]
    return rep


def apply_fix(rep: DoctorReport, sysctl_file: str = SYSCTL_FILE,
              proc_file: str = "/proc/sys/fs/aio-max-nr") -> list[str]:
    """Write the sysctl.d file and the live value; only ever raises the limit."""
    from aiohook.fsutil import atomic_write

    value = max(rep.suggested, rep.aio_max_nr)
    os.makedirs(os.path.dirname(sysctl_file), exist_ok=True)
    atomic_write(sysctl_file, (
        "# written by `aiohook doctor --apply`: room for the events_max of every defined\n"
        f"# domain ({rep.needed} AIO events needed on this host)\n"
        f"fs.aio-max-nr = {value}\n").encode())
    done = [f"wrote {sysctl_file}: fs.aio-max-nr = {value}"]
    if value > rep.aio_max_nr:
        with open(proc_file, "w") as fh:
            fh.write(str(value))
        done.append(f"applied: fs.aio-max-nr {rep.aio_max_nr} -> {value}")
    else:
        done.append(f"fs.aio-max-nr is already {rep.aio_max_nr}; not lowered")
    return done


def render_text(rep: DoctorReport) -> str:
    lines = [f"fs.aio-max-nr {rep.aio_max_nr}, fs.aio-nr {rep.aio_nr}, reserve {rep.reserve}",
             f"defined/running domains: {len(rep.domains)}, sum of events_max "
             f"{sum(d['events_max'] for d in rep.domains)}, other AIO users {rep.other_events}, "
             f"needed {rep.needed}",
             f"QEMU {', '.join(str(v) for v in rep.versions['qemu'])}, libvirt "
             f"{rep.versions['libvirt']}; io_uring usable: {rep.io_uring['usable']}",
             "hook: " + (", ".join(f["path"] for f in rep.hook["files"]) or "not installed")]
    for d in sorted(rep.domains, key=lambda d: -d["events_max"])[:20]:
        lines.append(f"  {d['name']}: events_at_start {d['events_at_start']}, "
                     f"events_max {d['events_max']} (QEMU {d['qemu_version']}, {d['model']})")
    lines += [f"note: {n}" for n in rep.notes]
    lines += [f"PROBLEM: {p}" for p in rep.problems]
    if rep.fixes:
        lines.append("fix:")
        lines += [f"  {f}" for f in rep.fixes]
    else:
        lines.append("ok")
    return "\n".join(lines) + "\n"
