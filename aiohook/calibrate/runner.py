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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohook.calibrate.bench import (
    DEPTHS,
    MODES,
    RWS,
    BenchRun,
    BenchSpec,
    CalibrateError,
    qemu_img_version,
    run_bench,
    trace_stalls,
    try_bench,
)
from aiohook.calibrate.scoring import WORKLOAD, WORKLOAD_WHY, summarize
from aiohook.calibrate.targets import (
    CalTarget,
    Cell,
    RunKey,
    TargetPlan,
    after_run,
    fill,
    lab_targets,
    operator_targets,
    prepare,
)
from aiohook.errors import AiohookError
from aiohook.probe.host import AIO_MAX_NR, PROC_ROOT, kernel_io_uring, read_sysctl

DEFAULT_SIZE = 512 << 20  # 131072 4 KiB blocks: a >= 1 s sparse write run never wraps


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


# ------------------------------------------------------------------ host


def host_info(workdir: str, proc_root: str = PROC_ROOT) -> dict:
    """The machine a calibration ran on, as the result's "host" records it."""

    def read(rel: str) -> str:
        try:
            with open(os.path.join(proc_root, rel)) as f:
                return f.read()
        except OSError:
            return ""

    model = ""
    for line in read("cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    allowed, why = kernel_io_uring(proc_root)
    fstype = ""
    try:
        fstype = subprocess.run(
            ["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    mem = next(
        (ln.split()[1] for ln in read("meminfo").splitlines() if ln.startswith("MemTotal")),
        "0",
    )
    try:
        aio_max_nr = read_sysctl(AIO_MAX_NR, proc_root)
    except OSError:
        aio_max_nr = ""
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "qemu_img": qemu_img_version(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(int(mem) / (1 << 20), 1),
        "io_uring_host": {"allowed": allowed is True, "why": why},
        "aio_max_nr": aio_max_nr,
        "workdir": workdir,
        "workdir_fs": fstype,
        "python": platform.python_version(),
        "loadavg_start": read("loadavg").split()[:3],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _host_finished(host: dict, proc_root: str = PROC_ROOT) -> None:
    with open(os.path.join(proc_root, "loadavg")) as f:
        host["loadavg_end"] = f.read().split()[:3]
    host["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _method(rws, depths, modes, runs: int, target_seconds: float, size_bytes: int) -> dict:
    """The result's "method": how every number in it was measured."""
    return {
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
    }


# ------------------------------------------------------------------ one target


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


def _timed_run(plan: TargetPlan, key: RunKey, target_s: float) -> BenchRun:
    """One measured run lasting >= target_s: a shorter one (the machine got faster than
    the pilot saw) raises the cell's count for this and later rounds and is redone."""
    t = plan.target
    m, rw, d = key
    cap = t.image_bytes // 4096 if (rw == "write" and t.origin == "lab" and t.is_sparse) else None
    for attempt in range(4):
        prepare(t, rw)
        run = run_bench(_spec(t, m, rw, d, plan.counts[key]))
        after_run(t, rw)
        run.extra["redone"] = attempt
        if run.seconds >= target_s or (cap and plan.counts[key] >= cap) or attempt == 3:
            return run
        grown = math.ceil(plan.counts[key] * 1.25 * target_s / max(run.seconds, 0.01))
        plan.counts[key] = min(grown, cap) if cap else grown
        plan.capped[key] = bool(cap and grown >= cap)
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
    _check_arguments(modes, rws, runs)
    os.makedirs(workdir, exist_ok=True)
    result: dict = {
        "classes": [],
        "host": host_info(workdir),
        "skipped": {},
        "method": _method(rws, depths, modes, runs, target_seconds, size_bytes),
    }
    campaign = _Campaign(
        result=result,
        modes=tuple(modes),
        cells=[(rw, d) for rw in rws for d in depths],  # reads first: one fill per round
        runs=runs,
        choose=choose,
        uring_host=result["host"]["io_uring_host"]["allowed"],
        measure_disallowed=measure_disallowed,
        stalls=stalls,
        target_seconds=target_seconds,
        say=progress or (lambda _m: None),
    )
    if targets:
        campaign.run(operator_targets(targets, allow_write, result["skipped"]))
    if kinds is None or len(kinds):
        kinds = _lab_kinds_default() if kinds is None else tuple(kinds)
        factory = lab_factory or _lab_factory_default()
        with factory(os.path.join(workdir, "lab"), size_bytes) as lab:
            campaign.run(lab_targets(lab, kinds, campaign.say, result["skipped"]))
    _host_finished(result["host"])
    return result


def _check_arguments(modes: Sequence[str], rws: Sequence[str], runs: int) -> None:
    for m in modes:
        if m not in MODES:
            raise CalibrateError(f"unknown io mode {m!r} (use {', '.join(MODES)})")
    for rw in rws:
        if rw not in RWS:
            raise CalibrateError(f"unknown rw {rw!r}")
    if runs < 1:
        raise CalibrateError("runs must be >= 1")


@dataclass
class _Campaign:
    """The steps each group of targets (the operators', then the lab's) goes through:
    plan, pilot, measured rounds, stall traces; each target's summary goes to result."""

    result: dict
    modes: tuple[str, ...]
    cells: list[Cell]
    runs: int
    choose: Callable[[object], str | None] | None
    uring_host: bool
    measure_disallowed: bool
    stalls: bool
    target_seconds: float
    say: Callable[[str], None]

    def run(self, targets: list[CalTarget]) -> None:
        plans = self.plan(targets)
        self.pilot(plans)
        self.measure(plans)
        if self.stalls:
            self.trace_stalls(plans)
        self.result["classes"].extend(summarize(p) for p in plans)

    def plan(self, targets: list[CalTarget]) -> list[TargetPlan]:
        """Which modes run on each target; a target no engine can read is skipped."""
        plans = []
        for t in targets:
            self.say(f"probe {t.name}")
            try:
                caps = _probe(t, self.modes, self.uring_host)
            except AiohookError as e:
                self.result["skipped"][t.name] = str(e)
                continue
            allowed = {m: mode_allowed(m, t.expected_class, t.cache, caps) for m in self.modes}
            measured = [m for m in self.modes if caps.get(m, False) and (
                allowed[m][0] or (self.measure_disallowed and t.origin == "lab"))]
            plans.append(TargetPlan(
                target=t,
                # asked now, on the storage as built: write runs later fill sparse images
                chosen=_ask_rules(self.choose, t),
                caps=caps,
                allowed=allowed,
                measured=measured,
                cells=[(rw, d) for rw, d in self.cells if rw == "read" or t.writable],
            ))
        return plans

    def pilot(self, plans: list[TargetPlan]) -> None:
        """Fill the lab's preallocated images, then size each cell's runs and measure
        each mode's startup CPU."""
        for p in plans:
            t = p.target
            if t.origin == "lab" and not t.is_sparse:
                self.say(f"fill {t.name}")
                fill(t)
            for m in p.measured:
                p.startup[m] = _startup_cpu(t, m)
                for rw, d in p.cells:
                    self.say(f"pilot {t.name} {m} {rw} qd{d}")
                    p.counts[(m, rw, d)], p.capped[(m, rw, d)] = _pilot_count(
                        t, m, rw, d, self.target_seconds)

    def measure(self, plans: list[TargetPlan]) -> None:
        """`runs` rounds; each round runs every mode once per target and cell, the mode
        order rotated by one per round."""
        for r in range(self.runs):
            for p in plans:
                ms = list(p.measured)
                order = ms[r % len(ms) :] + ms[: r % len(ms)] if ms else []
                for rw, d in p.cells:
                    for m in order:
                        self.say(f"round {r + 1}/{self.runs} {p.target.name} {m} {rw} qd{d}")
                        run = _timed_run(p, (m, rw, d), self.target_seconds)
                        run.extra["round"] = r
                        p.runs.setdefault((m, rw, d), []).append(run)

    def trace_stalls(self, plans: list[TargetPlan]) -> None:
        for p in plans:
            t = p.target
            for m in p.measured:
                if m == "threads":
                    continue
                for rw, d in p.cells:
                    self.say(f"stalls {t.name} {m} {rw} qd{d}")
                    prepare(t, rw)
                    c = min(p.counts[(m, rw, d)], 5000)
                    s = trace_stalls(_spec(t, m, rw, d, c))
                    after_run(t, rw)
                    p.stalls.append({"mode": m, "rw": rw, "depth": d, **s})


def _ask_rules(choose, t: CalTarget) -> tuple[str | None, str | None]:
    """(mode the rules choose, or why asking failed)."""
    if choose is None:
        return None, None
    try:
        return choose(t.lab_target if t.lab_target is not None else t), None
    except Exception as e:  # noqa: BLE001 - the rules' failure is data here, not a crash
        return None, f"{type(e).__name__}: {e}"





__all__ = ["host_info", "mode_allowed", "run_calibration"]
