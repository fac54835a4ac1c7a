"""Measure which QEMU io= mode is fastest per storage class, and what the rules' choice costs.

CLI glue (aiohook calibrate) is a thin wrapper over:
    run_calibration(workdir, kinds=None, runs=5, modes=MODES, depths=(1, 32),
                    rws=("read", "write"), choose=None, targets=(), allow_write=False,
                    progress=None, *, stalls=False, size_bytes=512 MiB,
                    target_seconds=1.0, measure_disallowed=True, lab_factory=None) -> dict
    render_text(result) -> str, render_json(result) -> str, plot(result, path) -> None
"""

from aiohook.calibrate.bench import (
    MODES,
    CalibrateError,
    WriteRefused,
    parse_bench_output,
)
from aiohook.calibrate.report import PlotUnavailable, plot, render_json, render_text
from aiohook.calibrate.runner import (
    WORKLOAD,
    CalTarget,
    classify_path,
    geomean,
    mode_allowed,
    regret,
    run_calibration,
)


__all__ = [
    "MODES",
    "WORKLOAD",
    "CalTarget",
    "CalibrateError",
    "PlotUnavailable",
    "WriteRefused",
    "classify_path",
    "geomean",
    "mode_allowed",
    "parse_bench_output",
    "plot",
    "regret",
    "render_json",
    "render_text",
    "run_calibration",
]
