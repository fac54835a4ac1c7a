"""Text table, JSON and optional PNG chart of a calibration result."""

from __future__ import annotations

import json

from aiohook.errors import UsageError

MODE_ORDER = ("native", "threads", "io_uring")


class PlotUnavailable(UsageError):
    """matplotlib is not installed (it is the optional `plot` extra)."""


def _fmt_iops(x) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def render_json(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False) + "\n"


def render_text(result: dict) -> str:
    """A plain-text report: header, per-class summary, per-cell medians with spread."""
    host = result.get("host", {})
    meth = result.get("method", {})
    out = []
    out.append(
        f"aiohook calibrate: {host.get('qemu_img', '?')}, kernel {host.get('kernel', '?')}, "
        f"{host.get('cpus', '?')} CPUs ({host.get('cpu_model', '')})"
    )
    out.append(
        f"method: {meth.get('tool', 'qemu-img bench')}, {meth.get('cache', '')}; "
        f"{meth.get('request', '')}; {meth.get('runs', '?')} runs per cell, "
        f"medians [min-max]"
    )
    out.append(f"pattern: {meth.get('pattern', '')}")
    out.append(f"workload for best/regret: {meth.get('workload', '')}")
    out.append("")
    hdr = f"{'class':<18} {'storage class':<18} {'chosen':<9} {'best':<9} {'regret':>7}  scores (IOPS geomean)"
    out.append(hdr)
    out.append("-" * len(hdr))
    for c in result.get("classes", []):
        reg = c.get("regret")
        regs = "-" if reg is None else f"{reg * 100:.1f}%"
        sc = c.get("scores", {})
        parts = []
        for m in MODE_ORDER:
            if m in sc:
                mark = "" if c.get("allowed", {}).get(m, True) else "*"
                parts.append(f"{m}{mark}={_fmt_iops(sc[m])}")
        out.append(
            f"{c['class']:<18} {c.get('storage_class', ''):<18} {c.get('chosen')!s:<9} "
            f"{c.get('best')!s:<9} {regs:>7}  {' '.join(parts)}"
        )
    out.append("(* = measured for information only; not allowed by the safety rules, never 'best')")
    out.append("")
    hdr2 = (
        f"{'class':<18} {'mode':<9} {'rw':<5} {'qd':>3} {'IOPS':>9} {'[min-max]':>17} "
        f"{'CPU us/IO':>9} {'runs':>4}"
    )
    out.append(hdr2)
    out.append("-" * len(hdr2))
    for c in result.get("classes", []):
        rows = sorted(
            c.get("results", []),
            key=lambda e: (
                e["rw"],
                e["depth"],
                MODE_ORDER.index(e["mode"]) if e["mode"] in MODE_ORDER else 9,
            ),
        )
        for e in rows:
            sp = e.get("iops_spread", {})
            rng = f"[{_fmt_iops(sp.get('min'))}-{_fmt_iops(sp.get('max'))}]" if sp else ""
            mark = "" if e.get("allowed", True) else "*"
            out.append(
                f"{c['class']:<18} {e['mode'] + mark:<9} {e['rw']:<5} {e['depth']:>3} "
                f"{_fmt_iops(e['iops']):>9} {rng:>17} {e['cpu_us_per_io']:>9.2f} "
                f"{e['runs']:>4}"
            )
        for s in c.get("stalls", []) or []:
            if s.get("calls"):
                out.append(
                    f"{c['class']:<18} stalls {s['mode']} {s['rw']} qd{s['depth']}: "
                    f"{s.get('syscall')} p50 {s['p50_us']}us p99 {s['p99_us']}us "
                    f"max {s['max_us']}us ({s['calls']} calls)"
                )
        if c.get("writes"):
            out.append(f"{c['class']:<18} writes {c['writes']}")
    if result.get("skipped"):
        out.append("")
        for k, why in result["skipped"].items():
            out.append(f"skipped {k}: {why}")
    return "\n".join(out) + "\n"


def plot(result: dict, path: str) -> None:
    """Grouped bar chart: one panel per rw x depth cell, classes on x, one bar per mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed (pip install 'aiohook[plot]')"
        ) from None
    classes = result.get("classes", [])
    cells = []
    for c in classes:
        for e in c.get("results", []):
            k = (e["rw"], e["depth"])
            if k not in cells:
                cells.append(k)
    cells.sort()
    if not cells:
        raise PlotUnavailable("nothing to plot: no results")
    ncol = 2
    nrow = (len(cells) + 1) // 2
    fig, axes = plt.subplots(nrow, ncol, figsize=(13, 4 * nrow), squeeze=False)
    width = 0.27
    colors = {"native": "#1f77b4", "threads": "#ff7f0e", "io_uring": "#2ca02c"}
    for i, (rw, d) in enumerate(cells):
        ax = axes[i // ncol][i % ncol]
        for j, m in enumerate(MODE_ORDER):
            xs, ys, hatch = [], [], []
            for k, c in enumerate(classes):
                for e in c.get("results", []):
                    if e["mode"] == m and e["rw"] == rw and e["depth"] == d:
                        xs.append(k + (j - 1) * width)
                        ys.append(e["iops"] / 1000)
                        hatch.append("" if e.get("allowed", True) else "//")
            bars = ax.bar(xs, ys, width, label=m, color=colors[m])
            for b, h in zip(bars, hatch):
                b.set_hatch(h)
        ax.set_title(f"4 KiB {rw}, QD{d}")
        ax.set_ylabel("kIOPS (median)")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([c["class"] for c in classes], rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    for i in range(len(cells), nrow * ncol):
        axes[i // ncol][i % ncol].axis("off")
    fig.suptitle(
        "aiohook calibrate: qemu-img bench -t none (hatched = not allowed by safety rules)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
