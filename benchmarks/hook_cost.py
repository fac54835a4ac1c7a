"""What the installed libvirt hook costs a VM start (issue 6 part 2; a benchmark, not a test).

Installs the hook with `aiohook install` into a scratch hooks dir (libvirtd and
/etc/libvirt are not touched), generates domains with 1, 16 and 256 disks on
real files (even disks: preallocated raw with io=native cache=none; odd: sparse
raw, io unset: all as the default rules want), and times, interleaved, the
median of N runs of:

  - `python -c pass` with the interpreter aiohook is installed in (the baseline);
  - the installed hook for a non-prepare op (`started begin`, stdin = the 16-disk XML);
  - the installed hook for `prepare begin` with 1, 16 and 256 disks.

Each is reported as a ratio to the baseline of the same run. After each prepare
run, an untimed `release end` settles the budget ledger, as libvirt would.

    .venv/bin/python benchmarks/hook_cost.py [--runs 30] [--json]

Targets (issue 6): non-prepare <= 1.5x, prepare 16 disks <= 4x, 256 disks <= 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {"non-prepare (started)": 1.5, "prepare 16 disks": 4.0, "prepare 256 disks": 10.0}
DISK_BYTES = 1 << 20


def domain_xml(name: str, files: list[str]) -> bytes:
    disks = []
    for i, path in enumerate(files):
        driver = ("<driver name='qemu' type='raw' cache='none' io='native'/>" if i % 2 == 0
                  else "<driver name='qemu' type='raw'/>")
        dev = "vd" + _letters(i)
        disks.append(f"<disk type='file' device='disk'>{driver}<source file='{path}'/>"
                     f"<target dev='{dev}' bus='virtio'/></disk>")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>00000000-0000-4000-8000-{len(files):012d}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {chr(10).join('    ' + d for d in disks)}
  </devices>
</domain>
""".encode()


def _letters(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(97 + r) + out
    return out


def make_files(workdir: str, count: int) -> list[str]:
    files = []
    for i in range(count):
        path = os.path.join(workdir, f"disk{i:03d}.raw")
        with open(path, "wb") as fh:
            if i % 2 == 0:
                os.posix_fallocate(fh.fileno(), 0, DISK_BYTES)
            else:
                fh.truncate(DISK_BYTES)
        files.append(path)
    return files


def timed(argv: list[str], stdin: bytes, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[1:4]} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    python = sys.executable
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aiohook-hookcost-") as work:
        dirs = {k: os.path.join(work, k) for k in ("hooks", "config", "log", "cache", "state")}
        for d in dirs.values():
            os.makedirs(d)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "AIOHOOK_LOG_DIR": dirs["log"], "AIOHOOK_CACHE_DIR": dirs["cache"],
               "AIOHOOK_STATE_DIR": dirs["state"]}
        aiohook = os.path.join(os.path.dirname(python), "aiohook")
        subprocess.run([aiohook, "install", "--hooks-dir", dirs["hooks"], "--config-dir",
                        dirs["config"]], env=env, check=True, capture_output=True)
        hook = os.path.join(dirs["hooks"], "qemu.d", "50-aiohook")
        files = make_files(work, 256)
        xml = {n: domain_xml(f"bench-{n}", files[:n]) for n in (1, 16, 256)}
        hook_env = {"PATH": env["PATH"]}  # libvirt passes a minimal environment
        cases = {
            "python -c pass": ([python, "-c", "pass"], b"", None),
            "python -IS -c pass": ([python, "-IS", "-c", "pass"], b"", None),
            "non-prepare (started)": ([hook, "bench-16", "started", "begin", "-"], xml[16], None),
            "prepare 1 disk": ([hook, "bench-1", "prepare", "begin", "-"], xml[1], "bench-1"),
            "prepare 16 disks": ([hook, "bench-16", "prepare", "begin", "-"], xml[16], "bench-16"),
            "prepare 256 disks": ([hook, "bench-256", "prepare", "begin", "-"], xml[256],
                                  "bench-256"),
        }
        for argv, stdin, _ in cases.values():  # warm: compiled caches, page cache
            timed(argv, stdin, hook_env)
        samples: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, (argv, stdin, settle) in cases.items():
                wall, used = timed(argv, stdin, hook_env)
                samples[name].append(wall)
                cpu[name].append(used)
                if settle:
                    timed([hook, settle, "release", "end", "-"], stdin, hook_env)
        with open(os.path.join(dirs["log"], "decisions.jsonl")) as fh:
            outcomes = {json.loads(line)["outcome"] for line in fh}
    base = statistics.median(samples["python -c pass"])
    base_cpu = statistics.median(cpu["python -c pass"])
    rows = []
    for name, values in samples.items():
        med = statistics.median(values)
        med_cpu = statistics.median(cpu[name])
        rows.append({"case": name, "median_ms": round(med * 1000, 1),
                     "p10_ms": round(sorted(values)[len(values) // 10] * 1000, 1),
                     "p90_ms": round(sorted(values)[len(values) * 9 // 10] * 1000, 1),
                     "ratio": round(med / base, 2),
                     "cpu_median_ms": round(med_cpu * 1000, 1),
                     "cpu_ratio": round(med_cpu / base_cpu, 2) if base_cpu else None,
                     "target": TARGETS.get(name)})
    result = {"runs": args.runs, "load_average_before": load, "python": python, "cpus": os.cpu_count(),
              "decision_outcomes": sorted(outcomes), "results": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.runs} interleaved runs each; python: {python}; "
              f"decision log outcomes: {', '.join(sorted(outcomes))}")
        print(f"load average before: {load}")
        print(f"{'case':24} {'median ms':>10} {'p10':>7} {'p90':>7} {'ratio':>6} "
              f"{'cpu ms':>7} {'cpu ratio':>9}  target (on the wall-clock ratio)")
        for r in rows:
            target = r["target"]
            verdict = "" if target is None else (
                f"<= {target}x {'ok' if r['ratio'] <= target else 'MISSED'}")
            print(f"{r['case']:24} {r['median_ms']:>10} {r['p10_ms']:>7} {r['p90_ms']:>7} "
                  f"{r['ratio']:>5}x {r['cpu_median_ms']:>7} {r['cpu_ratio']:>8}x  {verdict}")
    missed = [r for r in rows if r["target"] is not None and r["ratio"] > r["target"]]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
