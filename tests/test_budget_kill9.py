"""Issue 14 item 1: SIGKILL at any point, against one AIO reservation ledger.

Hundreds of gate (prepare), settle (started, reconnect, stopped, release) and
expire operations run concurrently in forked children against one ledger, on a
fake host (tests/test_budget_units.py's fake_host: a fake /proc with aio-max-nr,
aio-nr and QEMU /proc/PID/maps, a fake libvirt run dir). The parent plays
libvirt and the guests: it starts domains (a pid file and a QEMU with no AIO
context yet, as QEMU >= 9 starts), lets guests open their context, stops them,
and calls release after every start that failed. One operation per domain at a
time, as libvirt runs them.

Most operations are SIGKILLed, four ways:
- at a line: every line of ledger.py, fsutil.py and gate.py that the
  operation's kind runs (recorded in a warm-up) is a kill point at least once,
  then random ones, at a random occurrence of the line;
- in the middle of a write: os.write to the state dir writes a random prefix
  of its bytes, then the process kills itself;
- at a random moment from the parent, within the kind's usual duration;
- not at all.

Checked after every operation: the ledger parses (JSON, version, entries), no
ledger was ever found corrupt (no aio-ledger.json.corrupt), and every domain
that is starting (its gate said yes) or running has its booking, unless its
QEMU already holds what it booked. At the end: a pressure run of 20 gates in
parallel with room for exactly 6 more contexts lets exactly 6 in, and what the
ledger books then fits in what is free; no temp file of a killed writer is left.

AIOHOOK_KILL9_SEED picks another random schedule; AIOHOOK_KILL9_OPS the
number of operations after the warm-up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import sys
import time
import traceback
from collections import Counter, defaultdict

import pytest
import test_budget_units as units
from test_budget_shapes import disk

from aiohook import fsutil
from aiohook.budget import gate, ledger

fake_host = units.fake_host  # the fixture

SEED = int(os.environ.get("AIOHOOK_KILL9_SEED", "14"))
OPS = int(os.environ.get("AIOHOOK_KILL9_OPS", "1600"))
WARMUP = 120  # operations run clean first, recording which lines each kind runs
DOMAINS = 40
ROOM = 20  # contexts that fit during the storm: gates are refused too
INFLIGHT = 12
PRESSURE_ROOM, PRESSURE_GATES = 6, 20
EVENTS = 1024  # one native disk on QEMU 10: one context, booked whole (events_max)
TRACED = {os.path.realpath(m.__file__) for m in (ledger, fsutil, gate)}

EXIT = {"allowed": 10, "refused": 11, "settled": 12, "unrecorded": 13, "expired": 14,
        "error": 99}
KIND = {"gate": "gate", "started": "up", "reconnect": "up", "stopped": "down",
        "release": "down", "expire": "expire"}


def _settings():
    return units.settings(check="events_max")


def _plan(name: str):
    return units._plan(units.domain(disk(f"/img/{name}", "vda", "native"), name=name),
                       version="10.0.2")


# ---------------------------------------------------------------- the child


def _operation(op: str, name: str) -> int:
    if op == "gate":
        out = gate.gate_prepare(_plan(name), _settings())
        return EXIT["allowed"] if out.allowed and out.reserved else EXIT["refused"]
    if op == "expire":
        with ledger.Ledger() as led:
            led.expire(gate._alive, lambda n: gate.held_events(n, led.entries[n]), None)
        return EXIT["expired"]
    subop = "end" if op in ("stopped", "release") else "begin"
    return EXIT["unrecorded"] if ledger.settle(name, op, subop) else EXIT["settled"]


def _arm_line_kill(path: str, line: int, occurrence: int) -> None:
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event == "line" and frame.f_lineno == line:
            seen += 1
            if seen == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == path else None)


def _arm_write_kill(state: str, rng: random.Random) -> None:
    real = os.write

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(os.path.realpath(state) + "/"):
            cut = rng.randrange(len(data)) if len(data) else 0
            if cut:
                real(fd, bytes(memoryview(data)[:cut]))
            os.kill(os.getpid(), signal.SIGKILL)
        return real(fd, data)

    os.write = write


def _collect_lines(into: dict) -> None:
    def local(frame, event, arg):
        if event == "line":
            key = (frame.f_code.co_filename, frame.f_lineno)
            into[key] = into.get(key, 0) + 1
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in TRACED else None)


def _child(op: str, name: str, mode: tuple, state: str, scratch: str,
           barrier: tuple[int, int] | None, seed: int) -> None:
    """Runs in the forked child; never returns."""
    code = EXIT["error"]
    try:
        if barrier is not None:  # every pressure gate starts at once: at EOF
            os.close(barrier[1])
            os.read(barrier[0], 1)
        lines: dict = {}
        if mode[0] == "line":
            _arm_line_kill(*mode[1:])
        elif mode[0] == "write":
            _arm_write_kill(state, random.Random(seed))
        elif mode[0] == "collect":
            _collect_lines(lines)
        code = _operation(op, name)
        sys.settrace(None)
        if lines:
            with open(os.path.join(scratch, f"lines-{os.getpid()}.json"), "w") as fh:
                json.dump([[f, n, c] for (f, n), c in lines.items()], fh)
    except BaseException:  # noqa: BLE001 - reported to the parent
        sys.settrace(None)
        try:
            with open(os.path.join(scratch, f"error-{os.getpid()}.txt"), "w") as fh:
                fh.write(f"{op} {name}: {traceback.format_exc()}")
        except BaseException:  # noqa: BLE001, S110
            pass
    os._exit(code)


# ---------------------------------------------------------------- the parent: libvirt and guests


def _put(path, text: str) -> None:
    """Replace a fake /proc or run-dir file atomically (the children read them)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class World:
    def __init__(self, host, rng: random.Random):
        self.host, self.rng = host, rng
        self.state_dir = str(host.state)
        self.ledger = os.path.join(self.state_dir, ledger.LEDGER_FILE)
        self.scratch = str(host.state) + "-scratch"
        os.makedirs(self.scratch)
        os.makedirs(self.state_dir, exist_ok=True)
        self.names = [f"k{i}" for i in range(DOMAINS)]
        self.state = dict.fromkeys(self.names, "idle")  # idle, booked, running
        self.qemu: dict[str, list[int]] = {}  # name -> [pid, contexts held]
        self.aio_nr, self.aio_max_nr, self.next_pid = 0, ROOM * EVENTS + 512, 300000
        self.inflight: dict[int, tuple] = {}  # pid -> (op, name, mode, started, kill_at)
        self.chains: dict[str, list[str]] = defaultdict(list)  # ops libvirt still owes a domain
        self.lines: dict[str, dict] = defaultdict(dict)  # kind -> {(file, line): max count}
        self.todo: dict[str, list] = {}  # kind -> lines not yet used as a kill point
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.kills: Counter = Counter()  # mode -> children that died of SIGKILL
        self.ops: Counter = Counter()
        self.errors: list[str] = []
        self.checks = 0
        self._write_aio()

    # -- the fake host
    def _write_aio(self) -> None:
        self.host.set_aio(self.aio_max_nr, self.aio_nr)

    def come_up(self, name: str) -> None:
        pid = self.next_pid
        self.next_pid += 1
        (self.host.proc / str(pid)).mkdir()
        _put(self.host.proc / str(pid) / "maps", "")
        _put(self.host.run / f"{name}.pid", f"{pid}\n")
        self.qemu[name] = [pid, 0]

    def open_context(self, name: str) -> None:
        """The guest's first I/O: aio-nr first, then the mapping (in this order a
        gate that reads between counts it twice, never zero times)."""
        pid = self.qemu[name][0]
        self.aio_nr += EVENTS
        _put(self.host.proc / "sys/fs/aio-nr", f"{self.aio_nr}\n")
        _put(self.host.proc / str(pid) / "maps",
             "7f00-7f01 rw-s 00000000 00:0f 1 /[aio] (deleted)\n")
        self.qemu[name][1] = 1

    def go_down(self, name: str) -> None:
        pid, held = self.qemu.pop(name)
        os.unlink(self.host.run / f"{name}.pid")
        os.unlink(self.host.proc / str(pid) / "maps")
        os.rmdir(self.host.proc / str(pid))
        self.aio_nr -= held * EVENTS
        _put(self.host.proc / "sys/fs/aio-nr", f"{self.aio_nr}\n")

    # -- children
    def launch(self, op: str, name: str, mode: tuple,
               barrier: tuple[int, int] | None = None) -> int:
        seed = self.rng.randrange(1 << 30)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(op, name, mode, self.state_dir, self.scratch, barrier, seed)
        started = time.monotonic()
        kill_at = started + mode[1] if mode[0] == "timer" else None
        self.inflight[pid] = (op, name, mode, started, kill_at)
        self.ops[op] += 1
        return pid

    def mode_for(self, op: str, phase: str) -> tuple:
        kind = KIND[op]
        if phase == "warmup":
            return ("collect",)
        if phase == "drain":
            return ("none",)
        if kind not in self.todo:
            self.todo[kind] = self.rng.sample(sorted(self.lines[kind]), len(self.lines[kind]))
        todo = self.todo[kind]
        roll = self.rng.random()
        if roll < (0.75 if todo else 0.35):  # every line first, then random ones
            key = todo.pop() if todo else self.rng.choice(sorted(self.lines[kind]))
            return ("line", key[0], key[1], self.rng.randint(1, self.lines[kind][key]))
        if roll < (0.82 if todo else 0.5):
            return ("write",)
        if roll < (0.92 if todo else 0.75):
            typical = statistics.median(self.durations[kind] or [0.01])
            return ("timer", self.rng.uniform(0, 1.5 * typical))
        return ("none",)

    def reap(self) -> int:
        done = 0
        now = time.monotonic()
        for pid, (op, name, mode, started, kill_at) in list(self.inflight.items()):
            if kill_at is not None and now >= kill_at:
                os.kill(pid, signal.SIGKILL)  # not reaped yet: still our child
                self.inflight[pid] = (op, name, mode, started, None)
            got, status = os.waitpid(pid, os.WNOHANG)
            if not got:
                continue
            del self.inflight[pid]
            done += 1
            self.finished(pid, op, name, mode, os.waitstatus_to_exitcode(status),
                          time.monotonic() - started)
        return done

    def finished(self, pid, op, name, mode, code, seconds) -> None:
        kind = KIND[op]
        error = os.path.join(self.scratch, f"error-{pid}.txt")
        if os.path.exists(error):
            with open(error) as fh:
                self.errors.append(fh.read())
        elif code not in (-signal.SIGKILL, EXIT["allowed"], EXIT["refused"], EXIT["settled"],
                          EXIT["expired"]):
            self.errors.append(f"{op} {name}: exit {code}")
        if code == -signal.SIGKILL:
            self.kills[mode[0]] += 1
        lines = os.path.join(self.scratch, f"lines-{pid}.json")
        if os.path.exists(lines):
            with open(lines) as fh:
                for f, n, c in json.load(fh):
                    self.lines[kind][(f, n)] = max(c, self.lines[kind].get((f, n), 0))
            os.unlink(lines)
            self.durations[kind].append(seconds)
        if op == "gate":
            if code == EXIT["allowed"]:
                self.state[name] = "booked"
            else:  # refused or killed: the start failed, libvirt releases
                self.chains[name].append("release")
        self.check(f"after {op} {name} ({mode[0]}, exit {code})")

    def busy(self) -> set[str]:
        return {name for _, name, *_ in self.inflight.values()}

    def step(self, phase: str) -> bool:
        """Start one operation if there is room; False when nothing could start."""
        if len(self.inflight) >= INFLIGHT:
            return False
        busy = self.busy()
        for name, chain in self.chains.items():
            if chain and name not in busy:
                self.launch(chain.pop(0), name, self.mode_for("release", phase))
                return True
        if phase == "drain":
            return False
        free = [n for n in self.names if n not in busy and not self.chains[n]]
        choices = []
        idle = [n for n in free if self.state[n] == "idle"]
        booked = [n for n in free if self.state[n] == "booked"]
        running = [n for n in free if self.state[n] == "running"]
        if idle:
            choices += ["gate"] * 4
        if booked:
            choices += ["up"] * 4
        if [n for n in running if self.qemu[n][1] == 0]:
            choices += ["open"]
        if booked or running:
            choices += ["stop"]
        choices += ["expire"] * 2
        what = self.rng.choice(choices)
        if what == "gate":
            name = self.rng.choice(idle)
            self.launch("gate", name, self.mode_for("gate", phase))
        elif what == "up":
            name = self.rng.choice(booked)
            self.come_up(name)
            self.state[name] = "running"
            op = self.rng.choice(("started", "started", "reconnect"))
            self.launch(op, name, self.mode_for(op, phase))
        elif what == "open":
            self.open_context(self.rng.choice([n for n in running if self.qemu[n][1] == 0]))
            return True
        elif what == "stop":
            name = self.rng.choice(booked + running)
            self.state[name] = "idle"  # from here on nothing protects its booking
            if name in self.qemu:
                self.go_down(name)
            self.chains[name] += ["stopped", "release"]
        else:
            self.launch("expire", "-", self.mode_for("expire", phase))
        return True

    # -- the checks
    def read_ledger(self) -> dict:
        try:
            with open(self.ledger, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return {}
        data = json.loads(raw)  # raises: the ledger does not parse
        assert data["version"] == ledger.VERSION and isinstance(data["reservations"], dict)
        for entry in data["reservations"].values():
            assert isinstance(entry, dict) and isinstance(entry["events"], int)
        return data["reservations"]

    def check(self, where: str) -> None:
        self.checks += 1
        try:
            entries = self.read_ledger()
        except (ValueError, KeyError, AssertionError, TypeError) as exc:
            pytest.fail(f"{where}: the ledger does not parse: {exc!r}")
        assert not os.path.exists(self.ledger + ".corrupt"), f"{where}: a gate found it corrupt"
        for name in self.names:
            if self.state[name] == "idle":
                continue
            held = self.qemu.get(name, [0, 0])[1] * EVENTS
            assert name in entries or held >= EVENTS, (
                f"{where}: lost the booking of {name} ({self.state[name]}, QEMU holds {held})")

    def run(self, phase: str, count: int) -> None:
        launched = sum(self.ops.values())
        while True:
            self.reap()
            done = sum(self.ops.values()) - launched
            # the storm goes on until every line was a kill point (3x the count at most)
            if phase != "drain" and done >= count and (
                    phase != "storm" or not any(self.todo.values()) or done >= 3 * count):
                phase = "drain"
            if self.step(phase):
                continue
            if phase == "drain" and not self.inflight and not any(self.chains.values()):
                return
            time.sleep(0.0005)


def test_sigkill_at_any_point_never_loses_a_booking_nor_overbooks(fake_host):
    rng = random.Random(SEED)
    world = World(fake_host, rng)
    started = time.monotonic()
    world.run("warmup", WARMUP)
    lines = {kind: len(v) for kind, v in world.lines.items()}
    assert set(lines) == {"gate", "up", "down", "expire"}, lines
    world.run("storm", OPS)
    assert not world.errors, "\n".join(world.errors[:5])
    storm_s = time.monotonic() - started
    covered = {kind: not world.todo.get(kind) for kind in lines}

    # Settle what can be settled, then the model and the ledger must agree.
    world.launch("expire", "-", ("none",))
    world.run("drain", 0)
    entries = world.read_ledger()
    protected = {n for n in world.names if world.state[n] != "idle"}
    model = sum(max(0, EVENTS - world.qemu.get(n, [0, 0])[1] * EVENTS) for n in protected)
    booked, _ = gate.outstanding(entries)
    assert booked >= model  # every protected booking is there; the rest are leftovers of kills
    leftovers = sorted(set(entries) - protected)

    # The pressure run: room for exactly PRESSURE_ROOM more contexts.
    world.aio_max_nr = world.aio_nr + booked + PRESSURE_ROOM * EVENTS + 512
    world._write_aio()
    barrier_r, barrier_w = os.pipe()
    pids = [world.launch("gate", f"p{i}", ("none",), (barrier_r, barrier_w))
            for i in range(PRESSURE_GATES)]
    os.close(barrier_w)
    codes = {}
    while len(codes) < len(pids):
        for pid in pids:
            if pid not in codes:
                got, status = os.waitpid(pid, 0)
                codes[pid] = os.waitstatus_to_exitcode(status)
                world.inflight.pop(pid, None)
    os.close(barrier_r)
    allowed = sum(code == EXIT["allowed"] for code in codes.values())
    assert set(codes.values()) <= {EXIT["allowed"], EXIT["refused"]}, codes
    after = world.read_ledger()
    total, _ = gate.outstanding(after)
    free = world.aio_max_nr - world.aio_nr
    debris = [n for n in os.listdir(world.state_dir) if n.endswith(".tmp")]
    kills = sum(world.kills.values())
    report = (f"seed {SEED}: {sum(world.ops.values())} operations ({dict(world.ops)}), "
              f"{kills} SIGKILLed ({dict(world.kills)}), {world.checks} ledger checks, "
              f"kill lines per kind {lines} all used: {covered}; {len(protected)} domains "
              f"starting or running at the end, {len(leftovers)} leftover bookings of killed "
              f"operations; pressure: {allowed} of {PRESSURE_GATES} let in with room for "
              f"{PRESSURE_ROOM}, {total} events booked of {free} free; {storm_s:.1f}s")
    print(report)
    assert allowed == PRESSURE_ROOM, report
    assert total <= free, report
    assert debris == [], f"{len(debris)} temp files of killed writers left: {debris[:3]}"
    assert all(covered.values()), report
    assert kills >= OPS // 4 and world.kills["line"] >= 300 and world.kills["write"] >= 15, report
