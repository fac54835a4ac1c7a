"""Measure which QEMU io= mode is fastest per storage class, and what the rules' choice costs.

CLI glue (aiohook calibrate) is a thin wrapper over:
    run_calibration(workdir, kinds=None, runs=5, modes=MODES, depths=(1, 32),
                    rws=("read", "write"), choose=None, targets=(), allow_write=False,
                    progress=None, *, stalls=False, size_bytes=512 MiB,
                    target_seconds=1.0, measure_disallowed=True, lab_factory=None) -> dict
    render_text(result) -> str, render_json(result) -> str, plot(result, path) -> None
"""

import importlib

# Exports load on first use, so `aiohook --help` doesn't import the benchmark machinery.
_EXPORTS = {
    "MODES": "bench",
    "CalibrateError": "bench",
    "WriteRefused": "bench",
    "parse_bench_output": "bench",
    "PlotUnavailable": "report",
    "plot": "report",
    "render_json": "report",
    "render_text": "report",
    "WORKLOAD": "scoring",
    "CalTarget": "targets",
    "classify_path": "targets",
    "geomean": "scoring",
    "mode_allowed": "runner",
    "regret": "scoring",
    "run_calibration": "runner",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aiohook.calibrate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aiohook.calibrate.{module}"), name)


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
