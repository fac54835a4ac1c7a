"""The calibration campaign: targets, safety filter, pilot counts, interleaved rounds, regret.

Method (also written into every result's "method" key):
- every run is one `qemu-img bench` child with `-t none` (O_DIRECT) for ALL modes,
  so the AIO engine (-i native|threads|io_uring) is the only variable; a target
  that refuses O_DIRECT falls back to `-t writeback` for threads/io_uring and
  native is then not allowed (native needs O_DIRECT);
- 4 KiB requests, queue depth 1 and 32, reads and writes, scattered offsets
  (golden-ratio stride permutation, see aiohook.calibrate.bench);
- a pilot run per (target, mode, rw, depth) sizes -c so a run lasts >= ~1 s; a
  measured run that still ends sooner (the noisy machine got faster) raises the
  count for that cell and is redone (up to 3 times; "redone" per run);
- `runs` rounds; in each round every target and cell runs every mode once, the
  mode order rotated by one per round; medians with min/max and IQR are kept;
- CPU per I/O = (user+sys of the qemu-img child, from os.wait4, minus the
  median CPU of a 1-request run of the same target and mode) / requests;
- file-sparse lab images are recreated fresh (all holes) before every write run,
  and recreated + filled once (sequential 1 MiB writes) before read runs, so
  writes really allocate and reads read data; other lab images are filled once
  before the pilots (fallocate leaves unwritten extents, whose reads return
  zeros without device I/O), so they are measured in their steady state;
  operators' targets are never recreated or filled, and are only read unless
  allow_write.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiohook.calibrate.bench import (
    DEPTHS,
    MODES,
    QEMU_IMG,
    RWS,
    BenchRun,
    BenchSpec,
    CalibrateError,
    WriteRefused,
    image_info,
    io_uring_host_allowed,
    percentile,
    qemu_img_version,
    run_bench,
    trace_stalls,
    try_bench,
)
from aiohook.errors import AiohookError

SPARSE_KINDS = ("raw-sparse", "qcow2-off", "qcow2-metadata")
DEFAULT_SIZE = 512 << 20  # 131072 4 KiB blocks: a >= 1 s sparse write run never wraps
WORKLOAD = (
    "geometric mean of the median IOPS of the four cells {read, write} x {QD1, QD32}, "
    "4 KiB, scattered offsets, O_DIRECT"
)
WORKLOAD_WHY = (
    "a VM disk class serves no single known workload; the geometric mean weighs a "
    "relative change in each cell equally, so the fast QD32-read cell cannot drown the "
    "latency-bound QD1 cells, and a mode that is bad at any one cell pays for it"
)


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


# ------------------------------------------------------------------ safety filter


def mode_allowed(mode: str, storage_class: str, cache: str, caps: dict) -> tuple[bool, str]:
    """Whether "best" may be this mode: the engine's safety checks, asked about a disk of
    this class and cache that sets no io, then whether the mode runs here at all.

    caps: {"native": bool, "io_uring": bool} (a tiny run worked on this target/host); it
    stands for the host's io_uring support, so the engine is asked with io_uring allowed.
    """
    from aiohook.facts import IO_MODES, DiskFacts, HostFacts
    from aiohook.policy.safety import Candidate, refusals

    if mode not in IO_MODES:
        return False, f"unknown mode {mode}"
    disk_type = "block" if storage_class == "block" else "file"
    disk = DiskFacts("calibrate", None, disk_type, "disk", cache=cache, disk_class=storage_class)
    refused = refusals(Candidate(mode, cache), disk, HostFacts(io_uring=True))
    if refused:
        return False, refused[0][1]
    if mode in UNAVAILABLE and not caps.get(mode, False):
        return False, UNAVAILABLE[mode]
    return True, ""


UNAVAILABLE = {
    "native": "native unavailable on this target (tiny run failed)",
    "io_uring": "io_uring unavailable (host disabled or qemu-img without liburing)",
}


# ------------------------------------------------------------------ math


def geomean(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    if not xs or any(x <= 0 for x in xs):
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def regret(score_chosen: float | None, score_best: float | None) -> float | None:
    """1 - score(chosen)/score(best); None when either is unknown."""
    if not score_chosen or not score_best:
        return None
    return 1.0 - score_chosen / score_best


def _spread(xs: list[float], nd: int = 1) -> dict:
    return {
        "min": round(min(xs), nd),
        "max": round(max(xs), nd),
        "q1": round(percentile(xs, 0.25), nd),
        "q3": round(percentile(xs, 0.75), nd),
    }


# ------------------------------------------------------------------ targets


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


# ------------------------------------------------------------------ host


def host_info(workdir: str) -> dict:
    def read(p):
        try:
            with open(p) as f:
                return f.read()
        except OSError:
            return ""

    model = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ok, why = io_uring_host_allowed()
    fstype = ""
    try:
        fstype = subprocess.run(
            ["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    mem = next(
        (ln.split()[1] for ln in read("/proc/meminfo").splitlines() if ln.startswith("MemTotal")),
        "0",
    )
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "qemu_img": qemu_img_version(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(int(mem) / (1 << 20), 1),
        "io_uring_host": {"allowed": ok, "why": why},
        "aio_max_nr": read("/proc/sys/fs/aio-max-nr").strip(),
        "workdir": workdir,
        "workdir_fs": fstype,
        "python": platform.python_version(),
        "loadavg_start": read("/proc/loadavg").split()[:3],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ------------------------------------------------------------------ campaign


def _spec(t: CalTarget, mode: str, rw: str, depth: int, count: int) -> BenchSpec:
    return BenchSpec(
        path=t.path,
        fmt=t.format,
        mode=mode,
        rw=rw,
        depth=depth,
        count=count,
        image_bytes=t.image_bytes,
        cache=t.cache,
        writable=t.writable,
    )


def _probe(t: CalTarget, modes: Sequence[str], uring_host: bool) -> dict:
    """Which engines work on this target (tiny read runs); sets t.cache."""
    caps: dict = {"why": {}}
    why = try_bench(_spec(t, "threads", "read", 1, 1))
    if why:
        t.notes.append(f"O_DIRECT (-t none) failed, using -t writeback: {why}")
        t.cache = "writeback"
        why2 = try_bench(_spec(t, "threads", "read", 1, 1))
        if why2:
            raise CalibrateError(f"{t.path}: qemu-img bench cannot read it: {why2}")
    caps["threads"] = True
    if "native" in modes:
        if t.cache == "none":
            why = try_bench(_spec(t, "native", "read", 1, 1))
            caps["native"] = why is None
            if why:
                caps["why"]["native"] = why
        else:
            caps["native"] = False
            caps["why"]["native"] = "no O_DIRECT on this target"
    if "io_uring" in modes:
        if not uring_host:
            caps["io_uring"] = False
            caps["why"]["io_uring"] = "host: io_uring disabled"
        else:
            why = try_bench(_spec(t, "io_uring", "read", 1, 1))
            caps["io_uring"] = why is None
            if why:
                caps["why"]["io_uring"] = why
    return caps


def _pilot_count(t: CalTarget, mode: str, rw: str, depth: int, target_s: float) -> tuple[int, bool]:
    """Requests for a run of about target_s seconds (x1.2 margin); (count, capped)."""
    blocks = t.image_bytes // 4096
    fresh_cap = blocks if (rw == "write" and t.origin == "lab" and t.is_sparse) else None
    pilot_s = min(0.25, target_s * 0.25)
    c = 256 if depth == 1 else 2048
    if fresh_cap:
        c = min(c, fresh_cap)
    while True:
        prepare(t, rw)
        run = run_bench(_spec(t, mode, rw, depth, c))
        after_run(t, rw)
        if run.seconds >= pilot_s or (fresh_cap and c >= fresh_cap) or c >= 4_000_000:
            break
        grow = 1.25 * pilot_s / max(run.seconds, 0.005)
        c = int(min(max(c * 2, c * grow), 4_000_000))
        if fresh_cap:
            c = min(c, fresh_cap)
    count = max(64, math.ceil(run.iops * target_s * 1.3))
    if fresh_cap and count > fresh_cap:
        return fresh_cap, True
    return count, False


def _timed_run(t: CalTarget, m: str, rw: str, d: int, p: dict, target_s: float) -> BenchRun:
    """One measured run lasting >= target_s: a shorter one (the machine got faster than
    the pilot saw) raises the cell's count for this and later rounds and is redone."""
    key = (m, rw, d)
    cap = t.image_bytes // 4096 if (rw == "write" and t.origin == "lab" and t.is_sparse) else None
    for attempt in range(4):
        prepare(t, rw)
        run = run_bench(_spec(t, m, rw, d, p["counts"][key]))
        after_run(t, rw)
        run.extra["redone"] = attempt
        if run.seconds >= target_s or (cap and p["counts"][key] >= cap) or attempt == 3:
            return run
        grown = math.ceil(p["counts"][key] * 1.25 * target_s / max(run.seconds, 0.01))
        p["counts"][key] = min(grown, cap) if cap else grown
        p["capped"][key] = bool(cap and grown >= cap)
    return run


def _startup_cpu(t: CalTarget, mode: str) -> float:
    xs = []
    for _ in range(3):
        xs.append(run_bench(_spec(t, mode, "read", 1, 1)).cpu_s)
    return statistics.median(xs)


def _lab_factory_default():
    from aiohook.lab.storage import StorageLab

    return StorageLab


def _lab_kinds_default() -> tuple[str, ...]:
    from aiohook.lab.storage import LAB_KINDS

    return tuple(LAB_KINDS)


def run_calibration(
    workdir: str,
    kinds: Sequence[str] | None = None,
    runs: int = 5,
    modes: Sequence[str] = MODES,
    depths: Sequence[int] = DEPTHS,
    rws: Sequence[str] = RWS,
    choose: Callable[[object], str | None] | None = None,
    targets: Sequence[str] = (),
    allow_write: bool = False,
    progress: Callable[[str], None] | None = None,
    *,
    stalls: bool = False,
    size_bytes: int = DEFAULT_SIZE,
    target_seconds: float = 1.0,
    measure_disallowed: bool = True,
    lab_factory: Callable | None = None,
) -> dict:
    """Benchmark io modes per storage class; return the JSON-able result dict.

    kinds: lab kinds to build under workdir (None: all of LAB_KINDS; () or []: no
    lab, only `targets`). targets: operators' paths; read-only unless allow_write.
    choose(target) -> the io mode the rules pick for it (or None); it receives the
    lab's LabTarget, or for an operator path a CalTarget with the same fields.
    measure_disallowed: also measure (never rank) native on sparse LAB images, to
    show what the safety rule costs; never done on operators' targets.
    """
    say = progress or (lambda _m: None)
    for m in modes:
        if m not in MODES:
            raise CalibrateError(f"unknown io mode {m!r} (use {', '.join(MODES)})")
    for rw in rws:
        if rw not in RWS:
            raise CalibrateError(f"unknown rw {rw!r}")
    if runs < 1:
        raise CalibrateError("runs must be >= 1")
    os.makedirs(workdir, exist_ok=True)
    result: dict = {
        "classes": [],
        "host": host_info(workdir),
        "skipped": {},
        "method": {
            "tool": "qemu-img bench",
            "cache": "-t none (O_DIRECT) for every mode unless a target refuses O_DIRECT",
            "request": "4 KiB (-s 4096)",
            "pattern": "scattered offsets: -S k*4096, k odd ~0.618*blocks, coprime with "
            "blocks (permutation of all 4 KiB blocks, consecutive requests far apart)",
            "write_data": "--pattern=0xa5",
            "rws": list(rws),
            "depths": list(depths),
            "modes": list(modes),
            "runs": runs,
            "run_seconds_target": target_seconds,
            "order": "rounds; per round each target/cell runs every mode, order rotated per round",
            "sparse": "lab file-sparse images recreated fresh before every write run; "
            "recreated and filled (sequential 1 MiB writes) before read runs",
            "preallocated": "other lab images filled once (sequential 1 MiB writes) before "
            "the pilots: reads read written data, writes overwrite it",
            "cpu": "user+sys of the qemu-img child (os.wait4 rusage), minus median CPU of "
            "a 1-request run, divided by requests; kernel loop/xfs worker threads "
            "outside the process are not counted",
            "workload": WORKLOAD,
            "workload_why": WORKLOAD_WHY,
            "image_bytes": size_bytes,
        },
    }
    uring_host, _ = io_uring_host_allowed()
    cells = [(rw, d) for rw in rws for d in depths]  # reads first: one fill per round

    def campaign(cal_targets: list[CalTarget]) -> None:
        plans = []
        for t in cal_targets:
            say(f"probe {t.name}")
            try:
                caps = _probe(t, modes, uring_host)
            except AiohookError as e:
                result["skipped"][t.name] = str(e)
                continue
            allowed = {m: mode_allowed(m, t.expected_class, t.cache, caps) for m in modes}
            measured = []
            for m in modes:
                ok, _ = allowed[m]
                if not caps.get(m, False):
                    continue
                if ok or (measure_disallowed and t.origin == "lab"):
                    measured.append(m)
            t_cells = [(rw, d) for rw, d in cells if rw == "read" or t.writable]
            plans.append(
                {
                    "t": t,
                    # asked now, on the storage as built: write runs later fill sparse images
                    "chosen": _ask_rules(choose, t),
                    "caps": caps,
                    "allowed": allowed,
                    "measured": measured,
                    "cells": t_cells,
                    "counts": {},
                    "capped": {},
                    "startup": {},
                    "runs": {},
                }
            )
        for p in plans:
            t = p["t"]
            if t.origin == "lab" and not t.is_sparse:
                say(f"fill {t.name}")
                fill(t)
            for m in p["measured"]:
                p["startup"][m] = _startup_cpu(t, m)
                for rw, d in p["cells"]:
                    say(f"pilot {t.name} {m} {rw} qd{d}")
                    c, capped = _pilot_count(t, m, rw, d, target_seconds)
                    p["counts"][(m, rw, d)] = c
                    p["capped"][(m, rw, d)] = capped
        for r in range(runs):
            for p in plans:
                t = p["t"]
                ms = list(p["measured"])
                order = ms[r % len(ms) :] + ms[: r % len(ms)] if ms else []
                for rw, d in p["cells"]:
                    for m in order:
                        say(f"round {r + 1}/{runs} {t.name} {m} {rw} qd{d}")
                        run = _timed_run(t, m, rw, d, p, target_seconds)
                        run.extra["round"] = r
                        p["runs"].setdefault((m, rw, d), []).append(run)
        if stalls:
            for p in plans:
                t = p["t"]
                for m in p["measured"]:
                    if m == "threads":
                        continue
                    for rw, d in p["cells"]:
                        say(f"stalls {t.name} {m} {rw} qd{d}")
                        prepare(t, rw)
                        c = min(p["counts"][(m, rw, d)], 5000)
                        s = trace_stalls(_spec(t, m, rw, d, c))
                        after_run(t, rw)
                        p.setdefault("stalls", []).append({"mode": m, "rw": rw, "depth": d, **s})
        for p in plans:
            result["classes"].append(_summarize(p, cells))

    if targets:
        ops = []
        for path in targets:
            try:
                ops.append(operator_target(path, allow_write))
            except (AiohookError, OSError) as e:
                result["skipped"][path] = str(e)
        campaign(ops)
    if kinds is None or len(kinds):
        kinds = _lab_kinds_default() if kinds is None else tuple(kinds)
        factory = lab_factory or _lab_factory_default()
        with factory(os.path.join(workdir, "lab"), size_bytes) as lab:
            say("building lab: " + ", ".join(kinds))
            made, skipped = lab.make_all(kinds)
            result["skipped"].update(skipped)
            cal = []
            for lt in made:
                try:
                    cal.append(lab_cal_target(lt))
                except (AiohookError, OSError) as e:
                    result["skipped"][lt.name] = str(e)
            campaign(cal)
    with open("/proc/loadavg") as f:
        result["host"]["loadavg_end"] = f.read().split()[:3]
    result["host"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def _ask_rules(choose, t: CalTarget) -> tuple[str | None, str | None]:
    """(mode the rules choose, or why asking failed)."""
    if choose is None:
        return None, None
    try:
        return choose(t.lab_target if t.lab_target is not None else t), None
    except Exception as e:  # noqa: BLE001 - the rules' failure is data here, not a crash
        return None, f"{type(e).__name__}: {e}"


def _summarize(p: dict, cells) -> dict:
    t: CalTarget = p["t"]
    results = []
    for m in p["measured"]:
        ok, why = p["allowed"][m]
        for rw, d in p["cells"]:
            rs: list[BenchRun] = p["runs"].get((m, rw, d), [])
            if not rs:
                continue
            startup = p["startup"].get(m, 0.0)
            iops = [r.iops for r in rs]
            cpu = [max(0.0, r.cpu_s - startup) / r.count * 1e6 for r in rs]
            entry = {
                "mode": m,
                "rw": rw,
                "depth": d,
                "iops": round(statistics.median(iops), 1),
                "cpu_us_per_io": round(statistics.median(cpu), 2),
                "runs": len(rs),
                "iops_spread": _spread(iops),
                "cpu_us_per_io_spread": _spread(cpu, 2),
                "count": p["counts"][(m, rw, d)],
                "count_capped_at_image_blocks": p["capped"][(m, rw, d)],
                "allowed": ok,
                "per_run": [
                    {
                        "round": r.extra.get("round"),
                        "iops": round(r.iops, 1),
                        "seconds": r.seconds,
                        "cpu_s": round(r.cpu_s, 4),
                        "count": r.count,
                        "redone": r.extra.get("redone", 0),
                    }
                    for r in rs
                ],
            }
            if not ok:
                entry["not_allowed_because"] = why
            results.append(entry)
    # Score every measured mode on the cells that all measured modes have.
    have = {
        m: {(e["rw"], e["depth"]): e["iops"] for e in results if e["mode"] == m}
        for m in p["measured"]
    }
    common = [c for c in p["cells"] if all(c in have[m] for m in have)]
    scores = {m: geomean(have[m][c] for c in common) for m in have}
    allowed_scored = {m: s for m, s in scores.items() if s and p["allowed"][m][0]}
    best = max(allowed_scored, key=allowed_scored.get) if allowed_scored else None
    best_any = max((m for m in scores if scores[m]), key=scores.get, default=None)
    runner_up = sorted(allowed_scored.values(), reverse=True)[1:2]
    chosen, choose_error = p["chosen"]
    reg = regret(scores.get(chosen), scores.get(best)) if chosen and best else None
    entry = {
        "class": t.name,
        "kind": t.name if t.origin == "lab" else None,
        "storage_class": t.expected_class,
        "path": t.path,
        "format": t.format,
        "disk_type": t.disk_type,
        "origin": t.origin,
        "cache": t.cache,
        "results": results,
        "chosen": chosen,
        "best": best,
        "regret": None if reg is None else round(reg, 4),
        "workload": WORKLOAD,
        "workload_cells": [f"{rw}-qd{d}" for rw, d in common],
        "scores": {m: (round(s, 1) if s else None) for m, s in scores.items()},
        "best_margin": (
            round(allowed_scored[best] / runner_up[0] - 1, 4) if best and runner_up else None
        ),
        "best_including_disallowed": best_any,
        "cell_best": {
            f"{rw}-qd{d}": max(
                (m for m in have if p["allowed"][m][0] and (rw, d) in have[m]),
                key=lambda m, c=(rw, d): have[m][c],
                default=None,
            )
            for rw, d in p["cells"]
        },
        "allowed": {m: p["allowed"][m][0] for m in p["allowed"]},
        "not_allowed_because": {m: w for m, (ok, w) in p["allowed"].items() if not ok},
        "startup_cpu_ms": {m: round(v * 1e3, 2) for m, v in p["startup"].items()},
    }
    if chosen is not None:
        entry["chosen_allowed"] = bool(p["allowed"].get(chosen, (False, ""))[0])
        if chosen not in scores:
            entry["regret_note"] = f"chosen mode {chosen} was not measured on this target"
    if choose_error:
        entry["choose_error"] = choose_error
    if t.notes:
        entry["notes"] = t.notes
    if not t.writable:
        entry["writes"] = "skipped: read-only target (allow_write not given)"
    if p.get("stalls"):
        entry["stalls"] = p["stalls"]
    return entry


__all__ = [
    "WORKLOAD",
    "CalTarget",
    "WriteRefused",
    "classify_path",
    "geomean",
    "mode_allowed",
    "regret",
    "run_calibration",
]
