"""Did a running domain lose native AIO (or io_uring) to QEMU's thread-pool fallback?

Only evidence counts:
- QEMU's own line in the domain log (/var/log/libvirt/qemu/NAME.log), read only
  from the "starting up" header of the QEMU process that runs now, never an
  earlier run's. QEMU >= 9: "Unable to use Linux AIO, falling back to thread
  pool" (once per disk, at its first native request; that disk then uses
  threads everywhere) and its io_uring twin; QEMU < 9: "Unable to use native
  AIO, falling back to thread pool" (a context set up after start, e.g. an
  iothread's). The line names no disk.
- the contexts the QEMU holds (/proc/PID/maps) against those the domain's live
  XML makes it open once every disk was used (aiohook.budget.demand).

States: "fallback" (a line since start), "native" (holds every context
expected), "partial" (holds some: threads not used yet), "not-opened-yet"
(holds none and no line: on QEMU >= 9 contexts come with the first I/O),
"no-native" (nothing to open), "unknown" (no live XML to compare with).
"""

from __future__ import annotations

import datetime
import os

from aiohook.budget.demand import demand_for_document
from aiohook.budget.procscan import process_start_time

LIBVIRT_LOG_DIR = "/var/log/libvirt/qemu"
STATES = ("fallback", "native", "partial", "not-opened-yet", "no-native", "unknown")
LINES = (  # what QEMU writes -> the io mode that was lost
    (b"Unable to use Linux AIO, falling back to thread pool", "native"),  # QEMU >= 9
    (b"Unable to use native AIO, falling back to thread pool", "native"),  # QEMU < 9
    (b"Unable to use linux io_uring, falling back to thread pool", "io_uring"),
)
START_MARK = b": starting up libvirt version:"
MAX_LOG_TAIL = 4 << 20  # bytes of a domain log read, from its end
_HEADER_SLACK_S = 5.0  # libvirt writes the header just before it runs QEMU


def _header_time(line: bytes) -> float | None:
    """'2026-12-01 05:45:55.755+0000: starting up libvirt ...' -> epoch seconds."""
    stamp = line.split(START_MARK, 1)[0].decode("ascii", "replace").strip()
    try:
        return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def current_run(log: bytes, started: float | None) -> bytes | None:
    """The part of a domain log written by the QEMU that started at `started`:
    from the last "starting up" header not after that start. None: no header."""
    lines = log.split(b"\n")
    begin = None
    for i, line in enumerate(lines):
        if START_MARK not in line:
            continue
        when = _header_time(line)
        if started is not None and when is not None and when > started + _HEADER_SLACK_S:
            break  # a later run's header: not this process
        begin = i
    if begin is None:
        return None
    return b"\n".join(lines[begin:])


def read_log_tail(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - MAX_LOG_TAIL))
            return fh.read(MAX_LOG_TAIL)
    except OSError:
        return None


def evidence(text: bytes | None) -> list[dict]:
    """QEMU's fallback lines in a run's log: [{"lost": native|io_uring, "line": ...}]."""
    out = []
    for line in (text or b"").split(b"\n"):
        for needle, lost in LINES:
            if needle in line:
                out.append({"lost": lost, "line": line.decode("utf-8", "replace").strip()})
                break
    return out


def examine(holder, status_doc, log_dir: str | None = None, proc_root: str = "/proc") -> dict:
    """The AIO state of one running domain: holder is a procscan.AioHolder,
    status_doc its live XML as a DomainDocument (None when unreadable)."""
    log = read_log_tail(os.path.join(log_dir or LIBVIRT_LOG_DIR, f"{holder.domain}.log"))
    run = current_run(log, process_start_time(holder.pid, proc_root)) if log else None
    lines = evidence(run)
    out = {"state": "unknown", "held_contexts": holder.contexts, "fallback_lines": lines}
    if status_doc is None:
        if lines:
            out["state"] = "fallback"
        return out
    d = demand_for_document(status_doc, holder.qemu_version)
    expected = d["contexts_max"]
    uring = [t.target for t in status_doc.disks() if t.io == "io_uring"]
    out.update(expected_contexts=expected, model=d["model"], native_disks=d["native_disks"])
    if lines:
        out["state"] = "fallback"
        out["disks"] = _suspects(lines, d, uring)
    elif expected == 0:
        out["state"] = "no-native"
    elif holder.contexts >= expected:
        out["state"] = "native"
    elif holder.contexts == 0:
        out["state"] = "not-opened-yet"
    else:
        out["state"] = "partial"
    return out


def _suspects(lines: list[dict], demand: dict, uring: list) -> dict:
    """Which disks a run's lines can be: QEMU writes one line per disk that fell
    back and names none, so a line is matched to a disk only when one disk can
    have written it."""
    out = {}
    for lost, candidates in (("native", demand["native_disks"]), ("io_uring", uring)):
        n = sum(1 for entry in lines if entry["lost"] == lost)
        if n:
            exact = len(candidates) <= n
            out[lost] = {"lines": n, "candidates": [t or "?" for t in candidates],
                         "matched": exact}
    return out
