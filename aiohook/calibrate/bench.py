"""One `qemu-img bench` run: command line, output parsing, CPU accounting, stall tracing.

Everything here is about a single child process. The campaign (rounds, rotation,
safety filter) lives in aiohook.calibrate.runner, medians and regret in
aiohook.calibrate.scoring.

Access pattern (stated once, used everywhere): `qemu-img bench` has no random
mode; it starts at offset 0 and adds STEP (-S) to the offset after each request,
modulo the image size. We pick STEP = k x 4 KiB with k odd, close to 0.618 x the
number of 4 KiB blocks (a golden-ratio stride) and coprime with it, so the
offsets are a permutation of all blocks: every block is visited once per
`blocks` requests and consecutive requests land far apart. It is "random-ish"
(scattered, readahead-hostile, the same sequence for every mode), not random.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from aiohook.errors import EXIT_IO, AiohookError, UsageError

MODES = ("native", "threads", "io_uring")
RWS = ("read", "write")
DEPTHS = (1, 32)
BLOCK = 4096
QEMU_IMG = "qemu-img"


class CalibrateError(AiohookError):
    """qemu-img failed or the target cannot be benchmarked."""

    exit_code = EXIT_IO


class WriteRefused(UsageError):
    """A write benchmark was asked for on a target that is read-only for us."""


_RUN_RE = re.compile(r"Run completed in ([0-9.]+) seconds")
_SEND_RE = re.compile(
    r"Sending (\d+) (read|write) requests, (\d+) bytes each, (\d+) in parallel"
    r" \(starting at offset (\d+), step size (\d+)\)"
)


@dataclass
class BenchOutput:
    count: int
    rw: str
    size: int
    depth: int
    offset: int
    step: int
    seconds: float


def parse_bench_output(text: str) -> BenchOutput:
    """Parse the two lines `qemu-img bench` prints (QEMU 2.7 .. 9.x format)."""
    m = _SEND_RE.search(text)
    r = _RUN_RE.search(text)
    if not m or not r:
        raise CalibrateError("cannot parse qemu-img bench output: " + " ".join(text.split())[:200])
    return BenchOutput(
        count=int(m.group(1)),
        rw=m.group(2),
        size=int(m.group(3)),
        depth=int(m.group(4)),
        offset=int(m.group(5)),
        step=int(m.group(6)),
        seconds=float(r.group(1)),
    )


def stride_for(image_bytes: int, block: int = BLOCK) -> int:
    """Byte step for a scattered permutation of all blocks of the image (see module doc)."""
    blocks = image_bytes // block
    if blocks <= 2:
        return block
    k = int(blocks * 0.6180339887) | 1
    while math.gcd(k, blocks) != 1:
        k += 2
    return k * block


@dataclass
class BenchSpec:
    path: str
    fmt: str  # raw | qcow2
    mode: str  # native | threads | io_uring
    rw: str  # read | write
    depth: int
    count: int
    image_bytes: int
    cache: str = "none"
    block: int = BLOCK
    writable: bool = False  # the caller vouches that writing this image is allowed
    step: int | None = None  # None: the scattered stride; else a fixed byte step

    def argv(self) -> list[str]:
        if self.mode not in MODES:
            raise CalibrateError(f"unknown io mode {self.mode!r}")
        if self.mode == "native" and self.cache not in ("none", "directsync"):
            # QEMU refuses this too; never even try it.
            raise CalibrateError("io=native needs O_DIRECT (-t none or directsync)")
        if self.rw == "write" and not self.writable:
            raise WriteRefused(
                f"{self.path}: write benchmark refused: target is read-only (use --allow-write)"
            )
        a = [
            QEMU_IMG,
            "bench",
            "-f",
            self.fmt,
            "-t",
            self.cache,
            "-i",
            self.mode,
            "-s",
            str(self.block),
            "-d",
            str(self.depth),
            "-c",
            str(self.count),
            "-S",
            str(self.step or stride_for(self.image_bytes, self.block)),
        ]
        if self.rw == "write":
            a += ["-w", "--pattern=0xa5"]
        elif self.rw != "read":
            raise CalibrateError(f"unknown rw {self.rw!r}")
        return a + [self.path]


@dataclass
class BenchRun:
    iops: float
    seconds: float  # qemu-img's own timing of the I/O phase
    count: int
    cpu_s: float  # user+sys of the qemu-img process (all its threads), whole process
    wall_s: float  # fork to reap
    extra: dict = field(default_factory=dict)

    @property
    def cpu_us_per_io(self) -> float:
        return self.cpu_s / self.count * 1e6


def run_bench(spec: BenchSpec, timeout: float = 600.0, prefix: list[str] | None = None) -> BenchRun:
    """Run one qemu-img bench child; CPU time comes from os.wait4's rusage of that child."""
    argv = (prefix or []) + spec.argv()
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise CalibrateError(
                    f"qemu-img bench timed out after {timeout:.0f}s: {' '.join(argv)}"
                )
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from reaping again
        wall = time.monotonic() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise CalibrateError(
            f"qemu-img bench failed ({proc.returncode}): " + " ".join(text.split())[:300]
        )
    parsed = parse_bench_output(text)
    secs = max(parsed.seconds, 1e-6)
    return BenchRun(
        iops=parsed.count / secs,
        seconds=parsed.seconds,
        count=parsed.count,
        cpu_s=ru.ru_utime + ru.ru_stime,
        wall_s=wall,
    )


def try_bench(spec: BenchSpec) -> str | None:
    """A tiny run; None when it worked, else the one-line reason it did not."""
    try:
        run_bench(spec, timeout=60)
        return None
    except AiohookError as e:
        return str(e)


def image_info(path: str) -> dict:
    """`qemu-img info --output=json` (opened with -U so a running VM's lock is not needed)."""
    import json

    r = subprocess.run(
        [QEMU_IMG, "info", "-U", "--output=json", path], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        raise CalibrateError(f"qemu-img info {path}: " + " ".join(r.stderr.split())[:300])
    return json.loads(r.stdout)


def qemu_img_version() -> str:
    try:
        r = subprocess.run([QEMU_IMG, "--version"], capture_output=True, text=True, check=False)
        return r.stdout.splitlines()[0].strip() if r.stdout else "unknown"
    except OSError:
        return "missing"


# ---------------------------------------------------------------- submission stalls

_SYSCALL_RE = re.compile(
    r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(io_submit|io_uring_enter)\((.*)\)\s+=\s+(-?\d+).*<([0-9.]+)>\s*$"
)
_UNFIN_RE = re.compile(
    r"^(?:\[pid\s+\d+\]\s+|(\d+)\s+)?(io_submit|io_uring_enter)\((.*)<unfinished \.\.\.>\s*$"
)
_RESUMED_RE = re.compile(
    r"^(?:\[pid\s+\d+\]\s+|(\d+)\s+)?<\.\.\. (io_submit|io_uring_enter) resumed>.*<([0-9.]+)>\s*$"
)


def parse_strace(text: str) -> dict[str, list[float]]:
    """Durations (seconds) of submission syscalls in `strace -f -T` output.

    io_uring_enter calls that wait for completions (IORING_ENTER_GETEVENTS, the
    event loop's own ring) are not submissions and are left out.
    """
    out: dict[str, list[float]] = {"io_submit": [], "io_uring_enter": []}
    pending: dict[str, str] = {}
    for line in text.splitlines():
        line = line.rstrip()
        m = _SYSCALL_RE.match(line)
        if m:
            name, args, _ret, dur = m.groups()
            if name == "io_uring_enter" and "GETEVENTS" in args:
                continue
            out[name].append(float(dur))
            continue
        m = _UNFIN_RE.match(line)
        if m:
            pid, name, args = m.groups()
            pending[(pid or "") + name] = args
            continue
        m = _RESUMED_RE.match(line)
        if m:
            pid, name, dur = m.groups()
            args = pending.pop((pid or "") + name, "")
            if name == "io_uring_enter" and "GETEVENTS" in args:
                continue
            out[name].append(float(dur))
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    i = (len(s) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def summarize_us(xs: list[float]) -> dict:
    if not xs:
        return {"calls": 0}
    return {
        "calls": len(xs),
        "p50_us": round(percentile(xs, 0.5) * 1e6, 1),
        "p99_us": round(percentile(xs, 0.99) * 1e6, 1),
        "max_us": round(max(xs) * 1e6, 1),
        "total_ms": round(sum(xs) * 1e3, 2),
    }


def trace_stalls(spec: BenchSpec) -> dict:
    """Run one bench under strace and summarize how long submission blocked the submitter.

    native: io_submit; io_uring: io_uring_enter without GETEVENTS. threads mode
    hands requests to worker threads without a syscall, so it has nothing here.
    strace (seccomp-bpf filtered) slows the run: IOPS from it are not reported.
    """
    if spec.mode == "threads":
        return {"note": "threads: submission is a hand-off to worker threads (no syscall)"}
    strace = shutil.which("strace")
    if not strace:
        return {"error": "strace not installed"}
    with tempfile.NamedTemporaryFile(prefix="aiohook-strace-", suffix=".txt") as tf:
        prefix = [
            strace,
            "-f",
            "-T",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=io_submit,io_uring_enter",
            "-e",
            "verbose=none",
            "-o",
            tf.name,
        ]
        try:
            run = run_bench(spec, prefix=prefix)
        except AiohookError as e:
            return {"error": str(e)}
        with open(tf.name, errors="replace") as f:
            calls = parse_strace(f.read())
    name = "io_submit" if spec.mode == "native" else "io_uring_enter"
    s = summarize_us(calls[name])
    s["syscall"] = name
    s["count"] = run.count
    return s
