"""How a target's runs become a class entry: medians with spread, scores, best, regret."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from aiohook.calibrate.bench import BenchRun, percentile
from aiohook.calibrate.targets import TargetPlan

WORKLOAD = (
    "geometric mean of the median IOPS of the four cells {read, write} x {QD1, QD32}, "
    "4 KiB, scattered offsets, O_DIRECT"
)
WORKLOAD_WHY = (
    "a VM disk class serves no single known workload; the geometric mean weighs a "
    "relative change in each cell equally, so the fast QD32-read cell cannot drown the "
    "latency-bound QD1 cells, and a mode that is bad at any one cell pays for it"
)


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


def _cell_results(p: TargetPlan) -> list[dict]:
    """Per mode and cell: medians with their spread, and every run."""
    results = []
    for m in p.measured:
        ok, why = p.allowed[m]
        for rw, d in p.cells:
            rs: list[BenchRun] = p.runs.get((m, rw, d), [])
            if not rs:
                continue
            startup = p.startup.get(m, 0.0)
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
                "count": p.counts[(m, rw, d)],
                "count_capped_at_image_blocks": p.capped[(m, rw, d)],
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
    return results


def summarize(p: TargetPlan) -> dict:
    """A target's entry in the result's "classes": its cells, scores, best and regret."""
    t = p.target
    results = _cell_results(p)
    # Score every measured mode on the cells that all measured modes have.
    have = {
        m: {(e["rw"], e["depth"]): e["iops"] for e in results if e["mode"] == m}
        for m in p.measured
    }
    common = [c for c in p.cells if all(c in have[m] for m in have)]
    scores = {m: geomean(have[m][c] for c in common) for m in have}
    allowed_scored = {m: s for m, s in scores.items() if s and p.allowed[m][0]}
    best = max(allowed_scored, key=allowed_scored.get) if allowed_scored else None
    best_any = max((m for m in scores if scores[m]), key=scores.get, default=None)
    runner_up = sorted(allowed_scored.values(), reverse=True)[1:2]
    chosen, choose_error = p.chosen
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
                (m for m in have if p.allowed[m][0] and (rw, d) in have[m]),
                key=lambda m, c=(rw, d): have[m][c],
                default=None,
            )
            for rw, d in p.cells
        },
        "allowed": {m: p.allowed[m][0] for m in p.allowed},
        "not_allowed_because": {m: w for m, (ok, w) in p.allowed.items() if not ok},
        "startup_cpu_ms": {m: round(v * 1e3, 2) for m, v in p.startup.items()},
    }
    if chosen is not None:
        entry["chosen_allowed"] = bool(p.allowed.get(chosen, (False, ""))[0])
        if chosen not in scores:
            entry["regret_note"] = f"chosen mode {chosen} was not measured on this target"
    if choose_error:
        entry["choose_error"] = choose_error
    if t.notes:
        entry["notes"] = t.notes
    if not t.writable:
        entry["writes"] = "skipped: read-only target (allow_write not given)"
    if p.stalls:
        entry["stalls"] = p.stalls
    return entry
