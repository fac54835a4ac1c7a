"""The AIO budget gate's latency when 64 starts gate at once (issue 14 item 7; a benchmark, not a test).

Each round forks --gates processes that each plan one one-disk native domain
(QEMU 10, events_max: 1024 events) and wait on a pipe; the parent then lets all
of them go at once (EOF), and each calls aiohook.budget.gate.gate_prepare
against one ledger with room for --room contexts. The host is fake, as in
tests/test_budget_units.py: aio-max-nr and aio-nr come from files in a temp dir
(no sysctl is touched), libvirt's run dir is empty. The ledger is in
--state-dir (default: a fresh dir in /dev/shm, a tmpfs as /run/aiohook is on a
normal host), emptied before each round.

Reported over all gates of all rounds (milliseconds):
- gate: from the child's wake-up to gate_prepare's return (waiting for the
  ledger's flock included: this is what a start waits for);
- from release: from the parent's release to gate_prepare's return (adds the
  scheduler's wake-up of 64 processes on --cpus CPUs);
- in lock: how long each gate holds the flock (the serial part);
- round: from the release to the last gate's return.
Each round checks that exactly --room gates were let in (the test is
tests/test_budget_parallel.py).

    .venv/bin/python benchmarks/gate_contention.py [--rounds 30] [--gates 64] [--room 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aiohook.budget import gate, ledger, procscan  # noqa: E402
from aiohook.domxml import parse_domain  # noqa: E402
from aiohook.facts import HostFacts  # noqa: E402
from aiohook.planner import DomainPlan  # noqa: E402
from aiohook.probe import host  # noqa: E402

RECORD = struct.Struct("=iidddd")  # index, allowed, woke, locked, unlocked, done
EVENTS = 1024


def plan(name: str) -> DomainPlan:
    xml = (f"<domain type='kvm'><name>{name}</name><vcpu>2</vcpu><devices>"
           f"<emulator>/usr/bin/qemu-system-x86_64</emulator>"
           f"<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' "
           f"io='native'/><source file='/img/{name}.raw'/><target dev='vda' bus='virtio'/>"
           f"</disk></devices></domain>").encode()
    doc = parse_domain(xml)
    host = HostFacts(io_uring=True, qemu_version="10.0.2", qemu_io_uring=True)
    return DomainPlan(doc.name, "<bench>", doc, host)


class Settings:
    on_budget_exceeded = "refuse"
    budget_reserve_events = 0
    budget_check = "events_max"


def fake_host(base: str, state: str) -> str:
    proc = os.path.join(base, "proc")
    run = os.path.join(base, "run")
    os.makedirs(os.path.join(proc, "sys/fs"))
    os.makedirs(run)
    host.PROC_ROOT = proc
    procscan.LIBVIRT_RUN_DIR = run
    os.environ["AIOHOOK_STATE_DIR"] = state
    return proc


def set_aio(proc: str, max_nr: int, nr: int) -> None:
    for name, value in (("aio-max-nr", max_nr), ("aio-nr", nr)):
        with open(os.path.join(proc, "sys/fs", name), "w") as fh:
            fh.write(f"{value}\n")


def _timed_ledger(marks: list) -> None:
    """In the child: note when the flock is taken and given back."""
    enter, exit_ = ledger.Ledger.__enter__, ledger.Ledger.__exit__

    def timed_enter(self):
        out = enter(self)
        marks.append(time.monotonic())
        return out

    def timed_exit(self, *exc):
        try:
            return exit_(self, *exc)
        finally:
            marks.append(time.monotonic())

    ledger.Ledger.__enter__ = timed_enter
    ledger.Ledger.__exit__ = timed_exit


def one_round(gates: int, plans: list, out_w: int) -> float:
    """Fork the gates, let them go at once, wait for all; returns the release time."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pids = []
    for i in range(gates):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(go_w)
                marks: list[float] = []
                _timed_ledger(marks)
                os.write(ready_w, b".")
                os.read(go_r, 1)
                woke = time.monotonic()
                out = gate.gate_prepare(plans[i], Settings)
                done = time.monotonic()
                locked, unlocked = (marks + [done, done])[:2]
                os.write(out_w, RECORD.pack(i, int(out.allowed and out.reserved), woke, locked,
                                            unlocked, done))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(go_r)
    ready = 0
    while ready < gates:
        ready += len(os.read(ready_r, gates))
    released = time.monotonic()
    os.close(go_w)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a gate process failed (status {status})")
    os.close(ready_r)
    os.close(ready_w)
    return released


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--gates", type=int, default=64)
    ap.add_argument("--room", type=int, default=32, help="contexts that fit (K)")
    ap.add_argument("--state-dir", help="where the ledger goes (default: a temp dir in /dev/shm)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    load = os.getloadavg()[0]  # before the benchmark's own processes
    base = tempfile.mkdtemp(prefix="aiohook-gate-bench-")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    state = args.state_dir or tempfile.mkdtemp(prefix="aiohook-gate-bench-state-", dir=shm)
    try:
        proc = fake_host(base, state)
        gate_ms, released_ms, lock_ms, round_ms = [], [], [], []
        for r in range(args.rounds):
            for name in os.listdir(state) if os.path.isdir(state) else []:
                os.unlink(os.path.join(state, name))
            set_aio(proc, args.room * EVENTS + EVENTS // 2, 0)
            plans = [plan(f"r{r}-{i}") for i in range(args.gates)]
            out_r, out_w = os.pipe()
            released = one_round(args.gates, plans, out_w)
            os.close(out_w)
            data = b""
            while chunk := os.read(out_r, 1 << 16):
                data += chunk
            os.close(out_r)
            records = [RECORD.unpack_from(data, o) for o in range(0, len(data), RECORD.size)]
            allowed = sum(rec[1] for rec in records)
            if len(records) != args.gates or allowed != args.room:
                raise SystemExit(f"round {r}: {allowed} of {len(records)} let in, "
                                 f"room for {args.room}")
            for _, _, woke, locked, unlocked, done in records:
                gate_ms.append((done - woke) * 1000)
                released_ms.append((done - released) * 1000)
                lock_ms.append((unlocked - locked) * 1000)
            round_ms.append((max(rec[5] for rec in records) - released) * 1000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)

    command = (f".venv/bin/python benchmarks/gate_contention.py --rounds {args.rounds} "
               f"--gates {args.gates} --room {args.room}"
               + (f" --state-dir {args.state_dir}" if args.state_dir else ""))
    rows = {name: {"p50": percentile(v, 0.5), "p90": percentile(v, 0.9),
                   "p99": percentile(v, 0.99), "max": max(v)}
            for name, v in (("gate", gate_ms), ("from release", released_ms),
                            ("in lock", lock_ms), ("round", round_ms))}
    result = {"command": command, "gates": args.gates, "room": args.room,
              "rounds": args.rounds, "samples": len(gate_ms), "cpus": os.cpu_count(),
              "loadavg": load, "state_dir": args.state_dir or (shm or tempfile.gettempdir()),
              "python": sys.version.split()[0], "ms": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"command: {command}")
    print(f"{args.rounds} rounds x {args.gates} gates at once, room for {args.room} each "
          f"(exactly {args.room} let in, every round); {len(gate_ms)} gates; "
          f"{os.cpu_count()} CPUs, load {load:.1f} before; python "
          f"{sys.version.split()[0]}; ledger in {result['state_dir']}")
    print(f"{'ms':<14}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for name, row in rows.items():
        print(f"{name:<14}" + "".join(f"{row[k]:>8.1f}" for k in ("p50", "p90", "p99", "max")))


if __name__ == "__main__":
    main()
