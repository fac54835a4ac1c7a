"""aiohook.calibrate: real qemu-img bench runs with tiny counts (not timed tests)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from aiohook.calibrate import (
    CalibrateError,
    PlotUnavailable,
    WriteRefused,
    classify_path,
    geomean,
    mode_allowed,
    parse_bench_output,
    plot,
    regret,
    render_json,
    render_text,
    run_calibration,
)
from aiohook.calibrate.bench import BenchSpec, parse_strace, run_bench, stride_for
from aiohook.calibrate.choose import rules_chooser
from aiohook.probe.linux import LinuxProbe

# what the real engine may choose for sparse images on this host
IO_URING_USABLE = LinuxProbe().host_facts(None).io_uring_usable()

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")

ALL_CAPS = {"native": True, "io_uring": True, "threads": True}
TINY = {"runs": 1, "target_seconds": 0.01, "size_bytes": 4 << 20}


def _raw(path, size=1 << 20, data=True):
    with open(path, "wb") as f:
        if data:
            f.write(os.urandom(size))
        else:
            f.truncate(size)
    return str(path)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ------------------------------------------------------------------ parsing


def test_parse_canned_output():
    text = (
        "Sending 20000 write requests, 4096 bytes each, 32 in parallel "
        "(starting at offset 0, step size 25194496)\nRun completed in 0.485 seconds.\n"
    )
    out = parse_bench_output(text)
    assert (out.count, out.rw, out.size, out.depth, out.step) == (
        20000,
        "write",
        4096,
        32,
        25194496,
    )
    assert out.seconds == pytest.approx(0.485)


def test_parse_garbage_is_a_clean_error():
    with pytest.raises(CalibrateError, match="cannot parse"):
        parse_bench_output("qemu-img: Could not open 'x': No such file")


def test_real_run_parses_and_counts_cpu(tmp_path):
    path = _raw(tmp_path / "d.raw")
    spec = BenchSpec(
        path=path, fmt="raw", mode="threads", rw="read", depth=4, count=200, image_bytes=1 << 20
    )
    run = run_bench(spec)
    assert run.count == 200
    assert run.iops > 0 and run.seconds >= 0
    assert run.cpu_s > 0  # the child's rusage from os.wait4
    assert "-t" in spec.argv() and spec.argv()[spec.argv().index("-t") + 1] == "none"


def test_stride_is_a_scattered_permutation():
    for size in (4 << 20, 512 << 20, 3 * 4096 * 7):
        step = stride_for(size)
        blocks = size // 4096
        assert step % 4096 == 0
        seen = {(i * step) % size for i in range(blocks)}
        assert len(seen) == blocks  # every block once per `blocks` requests
    step = stride_for(64 << 20)
    assert 0.5 < step / (64 << 20) < 0.7  # consecutive requests land far apart


def test_parse_strace_submission_calls():
    lines = [
        "123 io_submit(0x7f, 1, [...]) = 1 <0.000068>",
        "124 io_uring_enter(5, 1, 0, 0, NULL, 8) = 1 <0.000010>",
        "124 io_uring_enter(6, 0, 1, IORING_ENTER_GETEVENTS, NULL, 8) = 0 <0.500000>",
        "125 io_submit(0x7f, 2, [...] <unfinished ...>",
        "125 <... io_submit resumed>) = 2 <0.003000>",
        "126 io_uring_enter(6, 1, 1, IORING_ENTER_GETEVENTS, NULL, 8 <unfinished ...>",
        "126 <... io_uring_enter resumed>) = 1 <0.900000>",
    ]
    text = "\n".join(lines)
    got = parse_strace(text)
    assert got["io_submit"] == [pytest.approx(0.000068), pytest.approx(0.003)]
    assert got["io_uring_enter"] == [pytest.approx(0.00001)]  # waits are not submissions


# ------------------------------------------------------------------ safety filter


def test_native_never_allowed_on_sparse():
    for cache in ("none", "directsync"):
        ok, why = mode_allowed("native", "file-sparse", cache, ALL_CAPS)
        assert not ok and "sparse" in why
    assert mode_allowed("threads", "file-sparse", "none", ALL_CAPS)[0]
    assert mode_allowed("io_uring", "file-sparse", "none", ALL_CAPS)[0]


def test_native_never_allowed_without_odirect():
    for cls in ("block", "file-preallocated"):
        assert mode_allowed("native", cls, "none", ALL_CAPS)[0]
        assert not mode_allowed("native", cls, "writeback", ALL_CAPS)[0]
    spec = BenchSpec(
        path="/nonexistent",
        fmt="raw",
        mode="native",
        rw="read",
        depth=1,
        count=1,
        image_bytes=4096,
        cache="writeback",
    )
    with pytest.raises(CalibrateError, match="O_DIRECT"):
        spec.argv()


def test_unavailable_engines_are_not_candidates():
    caps = {"native": False, "io_uring": False}
    assert not mode_allowed("native", "block", "none", caps)[0]
    assert not mode_allowed("io_uring", "block", "none", caps)[0]
    assert mode_allowed("threads", "block", "none", caps)[0]


# ------------------------------------------------------------------ regret math


def test_regret_and_geomean():
    assert regret(80.0, 100.0) == pytest.approx(0.2)
    assert regret(100.0, 100.0) == 0.0
    assert regret(None, 100.0) is None and regret(50.0, None) is None
    assert geomean([1000, 10]) == pytest.approx(100.0)
    assert geomean([]) is None and geomean([0, 5]) is None


# ------------------------------------------------------------------ a small real campaign


@pytest.fixture(scope="module")
def lab_result(tmp_path_factory):
    pytest.importorskip("aiohook.lab.storage")
    work = str(tmp_path_factory.mktemp("cal"))
    seen = []
    res = run_calibration(
        work,
        kinds=("raw-sparse", "raw-preallocated", "qcow2-off"),
        choose=rules_chooser("default"),
        progress=seen.append,
        **TINY,
    )
    res["_progress"] = seen
    return res


def test_json_contract(lab_result):
    data = json.loads(render_json(lab_result))
    assert set(data) >= {"classes", "host"}
    assert data["host"]["qemu_img"]
    names = [c["class"] for c in data["classes"]]
    assert set(names) == {"raw-sparse", "raw-preallocated", "qcow2-off"}
    for c in data["classes"]:
        assert set(c) >= {"class", "results", "chosen", "best", "regret"}
        assert c["results"]
        for r in c["results"]:
            assert set(r) >= {"mode", "rw", "depth", "iops", "cpu_us_per_io", "runs"}
            assert r["mode"] in ("native", "threads", "io_uring")
            assert r["rw"] in ("read", "write") and r["depth"] in (1, 32)
            assert r["iops"] > 0 and r["runs"] == 1
        cells = {(r["rw"], r["depth"]) for r in c["results"] if r["mode"] == "threads"}
        assert cells == {("read", 1), ("read", 32), ("write", 1), ("write", 32)}
    assert lab_result["_progress"]


def test_best_never_native_on_sparse_and_regret_matches_scores(lab_result):
    for c in lab_result["classes"]:
        if c["storage_class"] == "file-sparse":
            assert c["best"] != "native"
            assert c["allowed"]["native"] is False
            natives = [r for r in c["results"] if r["mode"] == "native"]
            assert all(r["allowed"] is False for r in natives)  # informational only
            assert c["chosen"] == ("io_uring" if IO_URING_USABLE else "threads")
        else:
            assert c["chosen"] == "native"
        s = c["scores"]
        assert c["best"] == max((m for m in s if c["allowed"][m]), key=s.get)
        assert c["regret"] == pytest.approx(1 - s[c["chosen"]] / s[c["best"]], abs=1e-3)
        assert 0 <= c["regret"] < 1


def test_rescore_judges_saved_classes_as_measured(lab_result):
    """--rescore asks the rules through a RecordedProbe of each saved class: with the
    same rules, the saved choices and regrets come back."""
    from aiohook.calibrate.choose import rescore, saved_class_chooser

    saved = json.loads(render_json(lab_result))
    again = rescore(json.loads(render_json(lab_result)),
                    saved_class_chooser("default", saved["host"]))
    assert [(c["chosen"], c["regret"]) for c in again["classes"]] == [
        (c["chosen"], c["regret"]) for c in saved["classes"]]


def test_render_text(lab_result):
    txt = render_text(lab_result)
    for name in ("raw-sparse", "raw-preallocated", "qcow2-off", "regret", "geometric mean"):
        assert name in txt


# ------------------------------------------------------------------ operators' targets


def test_write_refused_without_allow_write(tmp_path):
    path = _raw(tmp_path / "op.raw")
    spec = BenchSpec(
        path=path, fmt="raw", mode="threads", rw="write", depth=1, count=10, image_bytes=1 << 20
    )
    before = _sha(path)
    with pytest.raises(WriteRefused, match="allow-write"):
        run_bench(spec)
    assert _sha(path) == before


def test_read_only_calibrate_leaves_target_unchanged(tmp_path):
    path = _raw(tmp_path / "op.raw")
    before, mtime = _sha(path), os.stat(path).st_mtime_ns
    res = run_calibration(
        str(tmp_path / "w"), kinds=(), targets=[path], choose=rules_chooser("default"), **TINY
    )
    assert _sha(path) == before and os.stat(path).st_mtime_ns == mtime
    (c,) = res["classes"]
    assert c["origin"] == "operator" and c["storage_class"] == "file-preallocated"
    assert {r["rw"] for r in c["results"]} == {"read"}
    assert "read-only" in c["writes"]


def test_operator_sparse_target_never_runs_native(tmp_path):
    path = _raw(tmp_path / "hole.raw", size=4 << 20, data=False)
    res = run_calibration(str(tmp_path / "w"), kinds=(), targets=[path], **TINY)
    (c,) = res["classes"]
    assert c["storage_class"] == "file-sparse"
    assert "native" not in {r["mode"] for r in c["results"]}
    assert os.path.getsize(path) == 4 << 20 and os.stat(path).st_blocks == 0


def test_allow_write_runs_writes(tmp_path):
    path = _raw(tmp_path / "op.raw")
    before = _sha(path)
    res = run_calibration(
        str(tmp_path / "w"),
        kinds=(),
        targets=[path],
        allow_write=True,
        modes=("threads",),
        depths=(1,),
        **TINY,
    )
    (c,) = res["classes"]
    assert {r["rw"] for r in c["results"]} == {"read", "write"}
    assert _sha(path) != before  # the operator said so


def test_classify_path(tmp_path):
    assert classify_path(_raw(tmp_path / "a.raw"))[2] == "file-preallocated"
    assert classify_path(_raw(tmp_path / "b.raw", data=False))[2] == "file-sparse"
    q = str(tmp_path / "c.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", q, "4M"], check=True)
    assert classify_path(q)[:2] == ("qcow2", "file") and classify_path(q)[2] == "file-sparse"


# ------------------------------------------------------------------ plot


def test_plot_missing_matplotlib_is_one_clean_line(monkeypatch, lab_result, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable) as e:
        plot(lab_result, str(tmp_path / "x.png"))
    assert "\n" not in str(e.value) and "matplotlib" in str(e.value)


def test_plot_writes_png(lab_result, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "x.png"
    plot(lab_result, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    with pytest.raises(CalibrateError):
        run_calibration("/tmp/aiohook-cal-bad", kinds=(), modes=("posix",))
    with pytest.raises(CalibrateError):
        run_calibration("/tmp/aiohook-cal-bad", kinds=(), runs=0)
