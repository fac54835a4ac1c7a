"""Issue 14 item 3: a full or read-only filesystem, and no syslog socket.

The hook runs with its log dir (/var/log/aiohook: AIOHOOK_LOG_DIR) and its cache
(AIOHOOK_CACHE_DIR) on a tiny tmpfs that is full, its state dir (/run/aiohook:
AIOHOOK_STATE_DIR, the AIO ledger) on a tmpfs mounted read-only, and no
/dev/log. Every run must:
- decide as documented (README, Reliability): the compliance check and the AIO
  budget are decided as usual from what can be read, a start that does not fit
  is refused, and one that fits but cannot be booked follows on_error (allow:
  it starts, unbooked; refuse: it is refused);
- end within the probe budget + 3 s, without a traceback;
- say once, on stderr (syslog being unreachable), each thing it could not
  record: the booking, the decision (the decision log) and a settle; and hand
  syslog(3) the same line once;
- leave the decision log with whole lines only: a write that the full
  filesystem cuts short is taken back.

Most runs call aiohook.hook.entry.main() in a forked child (the fake /proc of
tests/test_budget_units.py gives the budget known numbers; syslog(3) calls are
recorded); two run the real hooks/qemu script. Needs root (mounts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import test_budget_units as units
from paths import ROOT
from test_hostile_input import run_forked, warm_up

HOOK = os.path.join(ROOT, "hooks", "qemu")
BOUND_S = 2.0 + 3.0  # the probe budget + a start, as the other hook tests

fake_host = units.fake_host  # the fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class Mounts:
    """A full tmpfs for logs and cache, a read-only tmpfs for the state dir."""

    def __init__(self, base):
        self.base = base
        self.log = base / "log"
        self.state = base / "state"
        self.config = base / "etc"
        self.mounted: list = []
        for d in (self.log, self.state, self.config):
            d.mkdir()

    def __enter__(self):
        _run("mount", "-t", "tmpfs", "-o", "size=128k,mode=0755", "aiohook-test-log", str(self.log))
        self.mounted.append(self.log)
        _run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "aiohook-test-state",
             str(self.state))
        self.mounted.append(self.state)
        (self.log / "cache").mkdir()
        # An earlier decision log whose last page has 96 bytes left: the next
        # record fits only in part, and that part must not stay.
        earlier = [json.dumps({"domain": f"earlier{i}", "outcome": "compliant", "pad": "x" * 960})
                   for i in range(4)]
        text = "\n".join(earlier) + "\n"
        text = text[:-1] + " " * (4000 - len(text)) + "\n"
        (self.log / "decisions.jsonl").write_text(text)
        self.earlier = text.encode()
        fill(self.log / "filler")
        self.set_ledger(None)
        return self

    def set_ledger(self, reservations: dict | None, how: str = "read-only") -> None:
        """The state dir read-only (or full), holding this ledger (None: nothing at all)."""
        _run("mount", "-o", "remount,rw", str(self.state))
        for p in self.state.iterdir():
            p.unlink()
        if reservations is not None:
            (self.state / "aio-ledger.lock").touch()
            (self.state / "aio-ledger.json").write_text(
                json.dumps({"version": 1, "reservations": reservations}))
        if how == "full":
            fill(self.state / "filler")
        else:
            _run("mount", "-o", "remount,ro", str(self.state))

    def __exit__(self, *exc):
        for path in reversed(self.mounted):
            done = subprocess.run(["umount", str(path)], capture_output=True)
            if done.returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)

    def env(self, on_error: str) -> dict[str, str]:
        (self.config / "aiohook.yaml").write_text(f"enforce: warn\non_error: {on_error}\n")
        return {"AIOHOOK_CONFIG_DIR": str(self.config), "AIOHOOK_LOG_DIR": str(self.log),
                "AIOHOOK_CACHE_DIR": str(self.log / "cache"),
                "AIOHOOK_STATE_DIR": str(self.state)}


def fill(path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)


def booking(events: int, state: str = "pending") -> dict:
    return {"state": state, "events": events, "events_at_start": 0, "events_max": events,
            "check": "events_max", "events_per_context": 1024, "created": time.time(),
            "mono": time.monotonic(), "pid": 1}


@pytest.fixture
def full(tmp_path, fake_host):
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log exists: a syslog daemon listens here, and this test, which is "
                    "about a host without one, will not take its socket away")
    files = tmp_path / "disks"
    files.mkdir()
    prealloc = files / "prealloc.raw"
    with open(prealloc, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    (files / "sparse.raw").write_bytes(b"")
    os.truncate(files / "sparse.raw", 1 << 20)
    fake_host.set_aio(65536, 0)
    mounts = Mounts(tmp_path)
    mounts.files = files
    try:
        try:
            mounts.__enter__()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot mount tmpfs here: {exc.stderr.decode().strip()}")
        warm_up()
        yield mounts
    finally:
        mounts.__exit__()


def domain_xml(files, name="dom", native=True) -> bytes:
    driver = "cache='none' io='native'" if native else ""
    return f"""<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='raw' {driver}/>
<source file='{files / "prealloc.raw"}'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw' io='threads'/>
<source file='{files / "sparse.raw"}'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>""".encode()


def _lines(run, needle: str) -> list[str]:
    return [line for line in run.stderr.decode().splitlines() if needle in line]


def _check(run, mounts) -> None:
    """What every run must do: within the bound, no traceback, the log whole."""
    assert run.code in (0, 1), run
    assert run.seconds < BOUND_S, run.seconds
    assert b"Traceback" not in run.stderr and b'File "' not in run.stderr, run.stderr
    assert (mounts.log / "decisions.jsonl").read_bytes() == mounts.earlier  # nothing half-written
    for message in run.syslog:
        assert message.isprintable()
    said = run.stderr.decode().splitlines()
    for line in said:  # each thing said once, on stderr and to syslog
        assert said.count(line) == 1, line
        if line.startswith("aiohook: ") and "AIO budget exceeded" not in line:
            assert sum(line in m for m in run.syslog) == 1, (line, run.syslog)


def _decision_log_line(run, what: str) -> None:
    [line] = _lines(run, "cannot write the decision log")
    assert "No space left on device" in line and line.endswith(what), line


@pytest.mark.parametrize("on_error,code", [("allow", 0), ("refuse", 1)])
def test_a_start_that_fits_but_cannot_be_booked_follows_on_error(full, on_error, code):
    for ledger_now, how, why in ((None, "read-only", "Read-only file system"),
                                 ({"other": booking(2048)}, "read-only", "Read-only file system"),
                                 ({"other": booking(2048)}, "full", "No space left on device")):
        full.set_ledger(ledger_now, how)
        run = run_forked(["qemu", "dom", "prepare", "begin", "-"], domain_xml(full.files),
                         full.env(on_error))
        _check(run, full)
        assert run.code == code, run.stderr
        assert run.stdout == b""
        [line] = _lines(run, "could not book its 1024 AIO events")
        assert why in line and "aio-ledger" in line, line
        if on_error == "allow":
            assert line.startswith("aiohook: ERROR, letting the start of dom go on unbooked "
                                   "(on_error: allow)"), line
        else:
            assert line.startswith("aiohook: refusing the start of dom (on_error: refuse)"), line
        _decision_log_line(run, f"dom prepare begin: error-{'allowed' if code == 0 else 'refused'}")
        assert len(run.stderr.decode().splitlines()) == 2, run.stderr


@pytest.mark.parametrize("on_error", ["allow", "refuse"])
def test_a_start_that_does_not_fit_is_refused_from_the_read_only_ledger(full, on_error):
    """Other bookings still count when the ledger cannot be written."""
    full.set_ledger({"other": booking(65536 - 512), "gone": booking(4096, "running")})
    run = run_forked(["qemu", "dom", "prepare", "begin", "-"], domain_xml(full.files),
                     full.env(on_error))
    _check(run, full)
    assert run.code == 1, run.stderr
    err = run.stderr.decode()
    assert "AIO budget exceeded: domain 'dom' needs 1024" in err
    assert "only 512 available" in err and "reserved for starting domains 65024" in err, err
    assert "could not book" not in err  # nothing to book: the running one without QEMU expired
    _decision_log_line(run, "dom prepare begin: budget-refused")


def test_no_native_disk_needs_no_booking(full):
    full.set_ledger(None)
    run = run_forked(["qemu", "dom", "prepare", "begin", "-"],
                     domain_xml(full.files, native=False), full.env("refuse"))
    _check(run, full)
    assert run.code == 0, run.stderr
    _decision_log_line(run, "dom prepare begin: warned")
    assert len(run.stderr.decode().splitlines()) == 1, run.stderr


@pytest.mark.parametrize("op,subop", [("started", "begin"), ("reconnect", "begin"),
                                      ("stopped", "end"), ("release", "end")])
def test_a_settle_that_cannot_be_recorded_is_said_once(full, op, subop):
    full.set_ledger({"dom": booking(1024), "other": booking(1024, "running")})
    run = run_forked(["qemu", "dom", op, subop, "-"], b"", full.env("refuse"))
    _check(run, full)
    assert run.code == 0 and run.stdout == b""
    [line] = run.stderr.decode().splitlines()
    assert line.startswith(f"aiohook: dom: could not record {op} {subop} in the AIO ledger ("), line
    assert "Read-only file system" in line and "its booking stays" in line, line
    # a domain without a booking has nothing to record, and says nothing
    quiet = run_forked(["qemu", "nobody", op, subop, "-"], b"", full.env("refuse"))
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, b"", b""), quiet.stderr


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_a_filter_still_prints_its_xml(full, op):
    full.set_ledger({"other": booking(1024)})
    run = run_forked(["qemu", "dom", op, "begin", "-"], domain_xml(full.files, native=False),
                     full.env("refuse"))
    _check(run, full)
    assert run.code == 0, run.stderr
    assert b"io='native'" in run.stdout  # rewritten as the rules want
    _decision_log_line(run, f"dom {op} begin: rewritten")


def test_the_real_hook_script(full):
    """hooks/qemu in a new interpreter, as libvirt runs it (the budget reads the
    real /proc here, so the domain books nothing: its disks are not native)."""
    full.set_ledger({"dom": booking(1024)})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **full.env("refuse")}
    for argv, stdin, code, says in (
            (("dom", "prepare", "begin", "-"), domain_xml(full.files, native=False), 0,
             ["cannot write the decision log"]),
            (("dom", "stopped", "end", "-"), b"", 0, ["could not record stopped end"])):
        started = time.monotonic()
        done = subprocess.run([sys.executable, HOOK, *argv], input=stdin, capture_output=True,
                              env=env, timeout=30, check=False)
        elapsed = time.monotonic() - started
        err = done.stderr.decode()
        assert done.returncode == code and elapsed < BOUND_S, (elapsed, err)
        assert "Traceback" not in err
        assert [line for line in err.splitlines() if any(s in line for s in says)] == \
            err.splitlines() and len(err.splitlines()) == len(says), err
    assert (full.log / "decisions.jsonl").read_bytes() == full.earlier
