"""What the calibration measures: operators' paths and lab images, and their state.

A CalTarget is one target as the campaign sees it; a TargetPlan is what the
campaign decided for it (modes, cells) and what its runs gave. Lab images are
recreated and filled here so sparse images are measured as the method says
(see aiohook.calibrate.runner); operators' targets are never recreated or filled.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohook.calibrate.bench import (
    QEMU_IMG,
    BenchRun,
    BenchSpec,
    CalibrateError,
    image_info,
    run_bench,
)
from aiohook.errors import AiohookError

SPARSE_KINDS = ("raw-sparse", "qcow2-off", "qcow2-metadata")


@dataclass
class CalTarget:
    """A target as the campaign sees it; has LabTarget's fields so `choose` can take it."""

    name: str
    path: str
    format: str
    disk_type: str
    expected_class: str
    origin: str = "lab"  # lab | operator
    writable: bool = False
    image_bytes: int = 0
    cache: str = "none"
    lab_target: object = None
    recipe: dict = field(default_factory=dict)
    state: str = "as-made"  # fresh | filled | dirty | as-made
    notes: list = field(default_factory=list)

    @property
    def is_sparse(self) -> bool:
        return self.expected_class == "file-sparse" or (
            self.origin == "lab" and self.name in SPARSE_KINDS
        )


Cell = tuple[str, int]  # (rw, depth)
RunKey = tuple[str, str, int]  # (mode, rw, depth)


@dataclass
class TargetPlan:
    """One target through the campaign: what runs on it, and what its runs gave."""

    target: CalTarget
    chosen: tuple[str | None, str | None]  # (the rules' mode, why asking failed)
    caps: dict  # mode -> a tiny run worked; "why" -> mode -> why it did not
    allowed: dict[str, tuple[bool, str]]  # mode -> (may be "best", why not)
    measured: list[str]  # modes that run (allowed, or disallowed shown on lab images)
    cells: list[Cell]  # reads always; writes only on a writable target
    counts: dict[RunKey, int] = field(default_factory=dict)  # requests per run
    capped: dict[RunKey, bool] = field(default_factory=dict)  # count hit the image's blocks
    startup: dict[str, float] = field(default_factory=dict)  # mode -> CPU s of a 1-request run
    runs: dict[RunKey, list[BenchRun]] = field(default_factory=dict)
    stalls: list[dict] = field(default_factory=list)  # submission latency per mode and cell


def classify_path(path: str) -> tuple[str, str, str]:
    """(format, disk_type, storage class) of an operator's path, by the engine's own probe.

    The format comes from qemu-img info; allocation, kind and class come from
    LinuxProbe and aiohook.classify, exactly as a domain's disk would get them.
    """
    from aiohook.classify import classify
    from aiohook.facts import SourceRequest
    from aiohook.probe.linux import LinuxProbe

    fmt = image_info(path).get("format", "raw")
    if fmt not in ("raw", "qcow2"):
        raise CalibrateError(f"{path}: image format {fmt} not supported (raw, qcow2)")
    facts = LinuxProbe().source_facts([SourceRequest(path, fmt)])[path]
    if facts.kind not in ("file", "block"):
        raise CalibrateError(f"{path}: not a regular file or block device ({facts.error or facts.kind})")
    cls, reason = classify(facts.kind, True, facts)
    if cls not in ("block", "file-preallocated", "file-sparse"):
        raise CalibrateError(f"{path}: cannot classify: {reason}")
    return fmt, facts.kind, cls


def operator_target(path: str, allow_write: bool) -> CalTarget:
    fmt, dtype, cls = classify_path(path)
    info = image_info(path)
    return CalTarget(
        name=path,
        path=path,
        format=fmt,
        disk_type=dtype,
        expected_class=cls,
        origin="operator",
        writable=allow_write,
        image_bytes=int(info["virtual-size"]),
    )


def lab_cal_target(lt) -> CalTarget:
    info = image_info(lt.path)
    t = CalTarget(
        name=lt.name,
        path=lt.path,
        format=lt.format,
        disk_type=lt.disk_type,
        expected_class=lt.expected_class,
        origin="lab",
        writable=True,
        image_bytes=int(info["virtual-size"]),
        lab_target=lt,
    )
    if t.is_sparse:
        prealloc = "metadata" if lt.name.endswith("metadata") else "off"
        rec = {"format": lt.format, "size": t.image_bytes, "preallocation": prealloc}
        if lt.format == "qcow2":
            rec["cluster_size"] = info.get("cluster-size")
            compat = (info.get("format-specific") or {}).get("data", {}).get("compat")
            if compat:
                rec["compat"] = compat
        t.recipe = rec
    return t


def recreate_fresh(t: CalTarget) -> None:
    """Recreate a sparse LAB image at the same path: all holes again."""
    if t.origin != "lab" or not t.recipe:
        raise CalibrateError(f"{t.path}: refusing to recreate a target the lab did not make")
    r = t.recipe
    opts = [f"preallocation={r['preallocation']}"]
    if r.get("cluster_size"):
        opts.append(f"cluster_size={r['cluster_size']}")
    if r.get("compat"):
        opts.append(f"compat={r['compat']}")
    os.unlink(t.path)
    p = subprocess.run(
        [QEMU_IMG, "create", "-q", "-f", r["format"], "-o", ",".join(opts), t.path, str(r["size"])],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise CalibrateError(f"recreate {t.path}: " + " ".join(p.stderr.split())[:200])
    t.state = "fresh"


def fill(t: CalTarget) -> None:
    """Write the whole image once, sequentially, so later reads read allocated data."""
    blk = next(b for b in (1 << 20, 64 << 10, 4096) if t.image_bytes % b == 0)
    spec = BenchSpec(
        path=t.path,
        fmt=t.format,
        mode="threads",
        rw="write",
        depth=4,
        count=t.image_bytes // blk,
        image_bytes=t.image_bytes,
        cache=t.cache,
        block=blk,
        writable=True,
        step=blk,
    )
    run_bench(spec)
    t.state = "filled"


def prepare(t: CalTarget, rw: str) -> None:
    if t.origin != "lab" or not t.is_sparse:
        return
    if rw == "write":
        recreate_fresh(t)
    elif t.state != "filled":
        recreate_fresh(t)
        fill(t)


def after_run(t: CalTarget, rw: str) -> None:
    if rw == "write" and t.origin == "lab" and t.is_sparse:
        t.state = "dirty"


def operator_targets(paths: Sequence[str], allow_write: bool, skipped: dict) -> list[CalTarget]:
    found = []
    for path in paths:
        try:
            found.append(operator_target(path, allow_write))
        except (AiohookError, OSError) as e:
            skipped[path] = str(e)
    return found


def lab_targets(lab, kinds: Sequence[str], say: Callable[[str], None],
                 skipped: dict) -> list[CalTarget]:
    say("building lab: " + ", ".join(kinds))
    made, unavailable = lab.make_all(kinds)
    skipped.update(unavailable)
    found = []
    for lt in made:
        try:
            found.append(lab_cal_target(lt))
        except (AiohookError, OSError) as e:
            skipped[lt.name] = str(e)
    return found
