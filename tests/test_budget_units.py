"""Unit tests of the budget feature: demand model, ledger, gate, degrade, procscan, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from test_budget_shapes import SHAPES, VCPUS, disk, mapped_disk, queue_mapping

from aiohook.budget import demand, gate, ledger, procscan
from aiohook.domxml import parse_domain
from aiohook.facts import HostFacts
from aiohook.probe import host

IMAGES = {f"f{i}": f"/img/f{i}.raw" for i in range(6)} | {"blk": "/dev/loop9", "q0": "/img/q0",
                                                          "q1": "/img/q1"}
EXPECTED = {  # shape -> {generation: (events_at_start, events_max)}, 2 vCPUs, QEMU >= 5.0
    "main-1native": {"7.2": (1024, 1024), "10.0": (0, 1024)},
    "main-2native-1iouring": {"7.2": (1024, 1024), "10.0": (0, 1024)},
    "blk-iothread1-plus-main": {"7.2": (1024, 2048), "10.0": (0, 2048)},
    "blk-iothreads-1-2-3": {"7.2": (1024, 4096), "10.0": (0, 3072)},
    "scsi-2ctl-iothreads-1-2": {"7.2": (3072, 3072), "10.0": (0, 2048)},
    "scsi-2ctl-same-iothread": {"7.2": (2048, 2048), "10.0": (0, 1024)},
    "scsi-ctl-no-iothread": {"7.2": (1024, 1024), "10.0": (0, 1024)},
    "mixed-native-threads-iouring": {"7.2": (1024, 2048), "10.0": (0, 1024)},
    "threads-iouring-only": {"7.2": (0, 0), "10.0": (0, 0)},
    "cdrom-native": {"7.2": (1024, 1024), "10.0": (0, 1024)},
    "block-loop-native": {"7.2": (1024, 1024), "10.0": (0, 1024)},
    "scsi-iothread-plus-blk-iothread": {"7.2": (2048, 3072), "10.0": (0, 2048)},
    "qcow2-iothread1-plus-raw-iothread2": {"7.2": (1024, 3072), "10.0": (1024, 3072)},
    "qcow2-2-main-loop": {"7.2": (1024, 1024), "10.0": (1024, 1024)},
    "blk-queues-2-iothreads-1-2": {"7.2": (1024, 3072), "10.0": (0, 2048)},
    "blk-queues-4-explicit-1-2-3": {"7.2": (1024, 3072), "10.0": (0, 2048)},
    "scsi-queues-mapped-iothreads-1-2": {"7.2": (3072, 3072), "10.0": (0, 2048)},
}


def domain(disks_xml: str, iothreads: int = 0, extra: str = "", name: str = "d",
           vcpus: int = VCPUS) -> bytes:
    iot = f"<iothreads>{iothreads}</iothreads>" if iothreads else ""
    return (f"<domain type='qemu'><name>{name}</name><vcpu>{vcpus}</vcpu>{iot}<devices>"
            f"<emulator>/usr/bin/qemu-system-x86_64</emulator>{disks_xml}{extra}"
            f"</devices></domain>").encode()


def shape_doc(name: str):
    disks, iot, extra = SHAPES[name](IMAGES)
    return parse_domain(domain(disks, iot, extra))


@pytest.mark.parametrize("version", ["7.2.22", "10.0.2"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demand_shapes(name, version):
    d = demand.demand_for_document(shape_doc(name), version)
    assert (d["events_at_start"], d["events_max"]) == EXPECTED[name][version[:version.rindex(".")]]
    assert d["model"] == ("lazy" if version.startswith("10") else "open-time")
    assert d["contexts_max"] == len(d["contexts"]) and d["qemu_version"] == version


def test_every_shape_has_expectations():
    assert set(EXPECTED) == set(SHAPES)


def test_generation_boundary_and_unknown_version():
    doc = shape_doc("blk-iothreads-1-2-3")
    assert demand.demand_for_document(doc, "8.2.9")["model"] == "open-time"
    assert demand.demand_for_document(doc, "9.0.0")["model"] == "lazy"
    unknown = demand.demand_for_document(doc, None)  # the larger on both counts
    assert (unknown["model"], unknown["events_at_start"], unknown["events_max"]) == (
        "open-time", 1024, 4096)


def test_per_queue_mapping_follows_the_guests_vcpus():
    one = mapped_disk("/x", "vda", queue_mapping(2, "1", "2"))
    for vcpus, contexts in ((1, 1), (2, 2), (4, 2)):
        d = demand.demand_for_document(parse_domain(domain(one, 2, vcpus=vcpus)), "10.0.2")
        assert d["contexts_max"] == contexts, vcpus
    # no queues attribute: as many queues as vCPUs at boot, dealt round-robin
    auto = mapped_disk("/x", "vda", queue_mapping(None, "1", "2", "3"))
    d = demand.demand_for_document(parse_domain(domain(auto, 3, vcpus=2)), "10.0.2")
    assert d["iothreads_max"] == ["1", "2"]
    current = domain(auto, 3).replace(b"<vcpu>2</vcpu>", b"<vcpu current='1'>3</vcpu>")
    d = demand.demand_for_document(parse_domain(current), "10.0.2")
    assert d["iothreads_max"] == ["1"]  # 1 queue at boot


def test_contexts_say_which_thread_and_when():
    d = demand.demand_for_document(shape_doc("scsi-iothread-plus-blk-iothread"), "7.2.22")
    assert d["contexts"] == [
        {"thread": "main", "disks": [], "opens": "start"},
        {"thread": "1", "disks": ["sda"], "opens": "start"},
        {"thread": "2", "disks": ["vda"], "opens": "first-io"}]
    d = demand.demand_for_document(shape_doc("blk-iothread1-plus-main"), "10.0.2")
    assert d["contexts"] == [{"thread": "main", "disks": ["vdb"], "opens": "first-io"},
                             {"thread": "1", "disks": ["vda"], "opens": "first-io"}]


def test_demand_old_qemu_uses_128_events():
    d = demand.demand_for_document(shape_doc("scsi-2ctl-iothreads-1-2"), "4.2.1")
    assert d["events_per_context"] == 128 and d["events_at_start"] == 3 * 128
    assert demand.events_per_context("5.0.0") == 1024
    assert demand.events_per_context(None) == 1024  # unknown: the safe side


def test_demand_ignores_network_and_empty_and_per_queue_iothreads():
    net = ("<disk type='network' device='disk'><driver name='qemu' io='native' cache='none'/>"
           "<source protocol='rbd' name='p/i'/><target dev='vda' bus='virtio'/></disk>")
    empty = ("<disk type='file' device='cdrom'><driver name='qemu' io='native' cache='none'/>"
             "<target dev='sda' bus='sata'/></disk>")
    assert demand.demand_for_document(parse_domain(domain(net + empty)), "7.2")["events_max"] == 0
    queues = ("<disk type='file' device='disk'><driver name='qemu' io='native' cache='none' "
              "queues='2'><iothreads><iothread id='1'/><iothread id='2'/></iothreads></driver>"
              "<source file='/x'/><target dev='vda' bus='virtio'/></disk>")
    d = demand.demand_for_document(parse_domain(domain(queues, 2)), "7.2")
    assert (d["events_at_start"], d["events_max"]) == (1024, 3072)
    d = demand.demand_for_document(parse_domain(domain(queues, 2)), "10.0")
    assert (d["events_at_start"], d["events_max"]) == (0, 2048)


def _plan(xml: bytes, io_uring=True, version="7.2.22"):
    from aiohook.planner import DomainPlan

    doc = parse_domain(xml)
    host = HostFacts(io_uring=io_uring, qemu_version=version, qemu_io_uring=io_uring)
    return DomainPlan(doc.name, "<t>", doc, host)


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """A fake /proc (aio-max-nr, aio-nr), an empty libvirt run dir, a private ledger."""
    proc = tmp_path / "proc"
    (proc / "sys/fs").mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(host, "PROC_ROOT", str(proc))
    monkeypatch.setattr(procscan, "LIBVIRT_RUN_DIR", str(run))
    monkeypatch.setenv("AIOHOOK_STATE_DIR", str(tmp_path / "state"))

    def set_aio(max_nr, nr):
        (proc / "sys/fs/aio-max-nr").write_text(f"{max_nr}\n")
        (proc / "sys/fs/aio-nr").write_text(f"{nr}\n")

    set_aio(65536, 0)
    return SimpleNamespace(set_aio=set_aio, state=tmp_path / "state", proc=proc, run=run)


def settings(mode="refuse", reserve=0, check="events_at_start"):  # the open-time default before QEMU 9
    return SimpleNamespace(on_budget_exceeded=mode, budget_reserve_events=reserve,
                           budget_check=check)


ONE = domain(disk("/img/a", "vda", "native"), name="one")


def test_gate_reserves_and_refuses_with_full_message(fake_host):
    fake_host.set_aio(4096, 1024)
    out = [gate.gate_prepare(_plan(domain(disk("/a", "vda", "native"), name=f"d{i}")), settings())
           for i in range(4)]
    assert [o.allowed for o in out] == [True, True, True, False]
    msg = out[3].message
    for part in ("domain 'd3'", "needs 1024 AIO events at start", "only 0 available",
                 "fs.aio-nr 1024 / fs.aio-max-nr 4096", "reserved for starting domains 3072",
                 "sysctl -w fs.aio-max-nr=65536", "/etc/sysctl.d/60-aiohook.conf",
                 "io: io_uring", "aiohook apply d3", "Top consumers"):
        assert part in msg, part
    assert set(ledger.snapshot()) == {"d0", "d1", "d2"}


def test_gate_reserve_and_modes(fake_host):
    fake_host.set_aio(2048, 0)
    assert not gate.gate_prepare(_plan(ONE), settings(reserve=1025)).allowed
    warn = gate.gate_prepare(_plan(ONE), settings("warn", reserve=1025))
    assert warn.allowed and warn.message.startswith("warning") and "one" in ledger.snapshot()
    ledger.settle("one", "release", "end")
    deg = gate.gate_prepare(_plan(ONE), settings("degrade", reserve=1025))
    assert not deg.allowed and "degrade cannot apply at prepare" in deg.message
    assert "aiohook apply" not in deg.message.splitlines()[-1]  # apply does no degrade


def test_gate_uses_io_as_found_not_rewrite(fake_host):
    from aiohook.planner import DiskPlan

    fake_host.set_aio(1024, 1024)
    plan = _plan(ONE)
    plan.disks = [DiskPlan(None, SimpleNamespace(  # aiohook's rewrite: native -> threads
        changed=True, io_before="native", io_after="threads", cache_before="none",
        cache_after="none"))]
    assert demand.demand_for(plan)["events_max"] == 0  # as rewritten
    assert demand.demand_for(plan, as_found=True)["events_max"] == 1024
    assert not gate.gate_prepare(plan, settings()).allowed


def _fake_qemu(fake_host, name: str, pid: int, contexts: int) -> None:
    """A running QEMU in the fake /proc: its pid file and `contexts` /[aio] mappings."""
    (fake_host.run / f"{name}.pid").write_text(f"{pid}\n")
    d = fake_host.proc / str(pid)
    d.mkdir(exist_ok=True)
    (d / "maps").write_text("7f00-7f01 rw-s 00000000 00:0f 1 /[aio] (deleted)\n" * contexts)


def test_booking_lasts_until_qemu_holds_it(fake_host):
    """QEMU >= 9 opens nothing at start: the booking survives `started` and ends
    only when the QEMU holds its contexts, or the domain stops."""
    fake_host.set_aio(65536, 0)
    lazy = _plan(ONE, version="10.0.2")
    assert gate.gate_prepare(lazy, settings(check="events_max")).reserved
    ledger.settle("one", "start", "begin")
    assert ledger.snapshot()["one"]["state"] == "pending"
    ledger.settle("one", "started", "begin")
    assert ledger.snapshot()["one"] == {**ledger.snapshot()["one"], "state": "running",
                                        "events": 1024}
    _fake_qemu(fake_host, "one", 4242, 0)
    assert gate.outstanding(ledger.snapshot()) == (1024, [("one", 1024)])
    fake_host.set_aio(65536, 1024)  # the guest's first I/O opened the context
    _fake_qemu(fake_host, "one", 4242, 1)
    assert gate.outstanding(ledger.snapshot()) == (0, [])
    assert gate.gate_prepare(_plan(domain(disk("/b", "vda", "native"), name="x"),
                                   version="10.0.2"), settings(check="events_max")).allowed
    assert "one" not in ledger.snapshot()  # held in full: the gate dropped it
    ledger.settle("x", "stopped", "end")
    assert ledger.snapshot() == {}


def test_default_check_books_what_the_guest_opens(fake_host):
    """Room for 1 context: a lazy domain that opened nothing yet still holds it."""
    fake_host.set_aio(1024, 0)
    default = SimpleNamespace(on_budget_exceeded="refuse", budget_reserve_events=0)
    first = gate.gate_prepare(_plan(ONE, version="10.0.2"), default)
    assert first.allowed and first.needed == 1024
    ledger.settle("one", "started", "begin")
    _fake_qemu(fake_host, "one", 4242, 0)
    second = gate.gate_prepare(_plan(domain(disk("/b", "vda", "native"), name="two"),
                                     version="10.0.2"), default)
    assert not second.allowed and "reserved for starting domains 1024" in second.message


def test_expired_pending_entry_becomes_running_when_its_domain_runs(fake_host, monkeypatch):
    fake_host.set_aio(65536, 0)
    assert gate.gate_prepare(_plan(ONE, version="10.0.2"), settings(check="events_max")).allowed
    two = domain(disk("/b", "vda", "native"), name="two")
    assert gate.gate_prepare(_plan(two, version="10.0.2"), settings(check="events_max")).allowed
    _fake_qemu(fake_host, "one", 4242, 0)  # `one` came up, its `started` was lost; `two` did not
    real = time.monotonic
    monkeypatch.setattr(ledger.time, "monotonic", lambda: real() + ledger.PENDING_TTL_S + 1)
    with ledger.Ledger() as led:
        dropped = led.expire(gate._alive, lambda n: gate.held_events(n, led.entries[n]))
    assert dropped == ["two"] and ledger.snapshot()["one"]["state"] == "running"


def test_settle_is_light():
    code = ("import sys, aiohook.budget.ledger as l; l.settle('x','started','begin');"
            "bad=[m for m in ('lxml','yaml','aiohook.policy','aiohook.budget.gate') if m in sys.modules];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "AIOHOOK_STATE_DIR": "/nonexistent-aiohook"})
    assert out.stdout.strip() == "[]"


def test_ledger_expiry_and_corrupt_rebuild(fake_host, monkeypatch):
    fake_host.set_aio(2048, 0)
    assert gate.gate_prepare(_plan(ONE), settings()).allowed
    other = domain(disk("/a", "vda", "native"), name="other")
    assert gate.gate_prepare(_plan(other), settings()).allowed
    assert not gate.gate_prepare(_plan(domain(disk("/a", "vda", "native"), name="third")),
                                 settings()).allowed
    real = time.monotonic
    monkeypatch.setattr(ledger.time, "monotonic", lambda: real() + ledger.PENDING_TTL_S + 1)
    assert gate.gate_prepare(_plan(domain(disk("/a", "vda", "native"), name="third")),
                             settings()).allowed  # the never-settled ones expired
    monkeypatch.setattr(ledger.time, "monotonic", real)
    path = fake_host.state / ledger.LEDGER_FILE
    path.write_text("{not json")
    with ledger.Ledger() as led:
        assert led.entries == {} and "corrupt" in led.rebuilt
    assert json.loads(path.read_text())["reservations"] == {}
    assert (fake_host.state / (ledger.LEDGER_FILE + ".corrupt")).exists()


def _racer(args):
    state, proc, run, i = args
    os.environ["AIOHOOK_STATE_DIR"] = state
    host.PROC_ROOT = proc
    procscan.LIBVIRT_RUN_DIR = run
    plan = _plan(domain(disk("/a", "vda", "native"), name=f"r{i}"))
    return gate.gate_prepare(plan, settings()).allowed


def test_concurrent_gates_never_overbook(fake_host):
    fake_host.set_aio(5 * 1024, 0)
    args = [(str(fake_host.state), str(fake_host.proc), str(fake_host.run), i) for i in range(16)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        results = pool.map(_racer, args)
    assert sum(results) == 5
    assert len(ledger.snapshot()) == 5


def test_degrade_moves_just_enough(fake_host):
    x = domain(disk("/a", "sda", "native", bus="scsi", controller="0")
               + disk("/b", "sdb", "native", bus="scsi", controller="1")
               + disk("/c", "vda", "native"), 2,
               "<controller type='scsi' index='0' model='virtio-scsi'><driver iothread='1'/></controller>"
               "<controller type='scsi' index='1' model='virtio-scsi'><driver iothread='2'/></controller>",
               name="x")
    fake_host.set_aio(65536, 65536 - 2048)  # room for 2 of its 3 contexts
    plan = _plan(x)
    moved = gate.degrade(plan, settings("degrade"), {})
    ios = plan.document.disk_io(moved.edits)
    assert sum(v != "native" for v in ios) == 1 and "io_uring" in ios
    assert moved.demand["events_at_start"] == 2048 and moved.lines
    assert plan.document.disk_io() == ["native"] * 3  # degrade returns edits, edits nothing
    assert b"io_uring" in plan.document.serialize(moved.edits)
    fake_host.set_aio(65536, 65536 - 512)  # no room at all: threads without io_uring
    plan = _plan(x, io_uring=False)
    moved = gate.degrade(plan, settings("degrade"), {})
    assert set(plan.document.disk_io(moved.edits)) == {"threads"}
    # degrade starts from the edits it is given: with vda already off native, it moves less
    assert gate.degrade(plan, settings("degrade"), {2: {"io": "threads"}}).edits == {
        0: {"io": "threads"}, 1: {"io": "threads"}}
    fake_host.set_aio(65536, 0)
    plan = _plan(x)
    fits = gate.degrade(plan, settings("degrade"), {})
    assert (fits.edits, fits.lines) == ({}, [])


def test_guest_name_parsing():
    assert procscan.guest_name(["qemu", "-name", "guest=a,,b,debug-threads=on"]) == "a,b"
    assert procscan.guest_name(["qemu", "-name", "plain"]) == "plain"
    assert procscan.guest_name(["qemu"]) is None


def test_aio_contexts_counts_aio_lines(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "maps").write_text(
        "7f0-7f1 rw-s 00000000 00:0f 1 /[aio] (deleted)\n7f2-7f3 r-xp 0 0:0 0 /usr/bin/x\n"
        "7f4-7f5 rw-s 00000000 00:0f 2 /[aio] (deleted)\n")
    assert procscan.aio_contexts(7, str(tmp_path)) == 2
    assert procscan.aio_contexts(8, str(tmp_path)) is None


def test_plan_json_reports_aio(tmp_path):
    f = tmp_path / "d.xml"
    f.write_bytes(shape_doc_bytes("blk-iothread1-plus-main"))
    out = subprocess.run([sys.executable, "-m", "aiohook", "plan", "--format", "json", str(f)],
                         capture_output=True, text=True)
    data = json.loads(out.stdout)
    doms = data["domains"] if isinstance(data, dict) else data
    aio = doms[0]["aio"]
    assert aio["events_max"] >= aio["events_at_start"] >= 0 and "events_per_context" in aio


def shape_doc_bytes(name):
    disks, iot, extra = SHAPES[name](IMAGES)
    return domain(disks, iot, extra)


def test_doctor_apply_writes_sysctl_file(tmp_path, monkeypatch):
    from aiohook.budget import doctor

    cfg = tmp_path / "qemu"
    cfg.mkdir()
    for i in range(3):
        (cfg / f"d{i}.xml").write_bytes(domain(disk("/a", "vda", "native", iothread="1"), 1,
                                               name=f"d{i}"))
    rep = doctor.examine(str(cfg), str(tmp_path / "hooks"), 0, run_dir=str(tmp_path / "run"))
    assert sum(d["events_max"] for d in rep.domains) == 3 * 2048
    assert not rep.hook["installed"] and any("not installed" in p for p in rep.problems)
    rep.aio_max_nr, rep.needed, rep.suggested = 4096, 6144, 65536
    proc = tmp_path / "aio-max-nr"
    proc.write_text("4096")
    lines = doctor.apply_fix(rep, str(tmp_path / "sysctl.d/60-aiohook.conf"), str(proc))
    assert proc.read_text() == "65536" and lines
    assert "fs.aio-max-nr = 65536" in (tmp_path / "sysctl.d/60-aiohook.conf").read_text()


def _header(epoch: float) -> str:
    import datetime

    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+0000: starting up libvirt version: 11.3.0"


LINUX_AIO = ("2026-12-01T06:00:01.000000Z qemu-system-x86_64: Unable to use Linux AIO, falling "
             "back to thread pool: failed to create linux AIO context: Resource temporarily "
             "unavailable")


def test_fallback_lines_count_only_for_the_running_qemu():
    from aiohook.budget import fallback

    me = procscan.process_start_time(os.getpid())
    assert me is not None and abs(me - time.time()) < 24 * 3600
    old_run = f"{_header(me - 600)}\n{LINUX_AIO}\n2026-12-01 shutting down, reason=destroyed\n"
    this_run = f"{_header(me - 0.5)}\nLC_ALL=C /usr/bin/qemu-system-x86_64 -name guest=x\n"
    log = (old_run + this_run).encode()
    assert fallback.evidence(fallback.current_run(log, me)) == []
    assert len(fallback.evidence(log)) == 1  # the earlier run's line is there, and ignored
    later = log + f"{LINUX_AIO}\n".encode()
    assert [e["lost"] for e in fallback.evidence(fallback.current_run(later, me))] == ["native"]
    # a header written after this process started belongs to another run
    future = later + f"{_header(me + 3600)}\n".encode()
    assert len(fallback.evidence(fallback.current_run(future, me))) == 1
    assert fallback.current_run(b"no header at all\n" + LINUX_AIO.encode(), me) is None


def test_states_from_evidence(tmp_path):
    from aiohook.budget import fallback

    me = procscan.process_start_time(os.getpid())
    one = parse_domain(domain(disk("/a", "vda", "native")))
    three = parse_domain(domain(disk("/a", "vda", "native", iothread="1")
                                + disk("/b", "vdb", "native", iothread="2")
                                + disk("/c", "vdc", "native", iothread="3"), 3))

    def state(name, contexts, doc, lines=(), version="10.0.2"):
        (tmp_path / f"{name}.log").write_text(_header(me - 1) + "\n" + "".join(
            line + "\n" for line in lines))
        holder = procscan.AioHolder(os.getpid(), contexts, contexts * 1024, name, "qemu", version)
        return fallback.examine(holder, doc, str(tmp_path))

    assert state("idle", 0, one)["state"] == "not-opened-yet"
    assert state("ok", 1, one)["state"] == "native"
    assert state("some", 1, three)["state"] == "partial"
    assert state("all", 3, three)["state"] == "native"
    fell = state("fell", 0, one, [LINUX_AIO])
    assert fell["state"] == "fallback"
    assert fell["disks"] == {"native": {"lines": 1, "candidates": ["vda"], "matched": True}}
    two_of_three = state("two", 1, three, [LINUX_AIO, LINUX_AIO])
    assert two_of_three["disks"]["native"] == {"lines": 2, "candidates": ["vda", "vdb", "vdc"],
                                               "matched": False}
    assert state("none", 0, parse_domain(domain(disk("/a", "vda", "threads"))))["state"] \
        == "no-native"
    assert state("nolive", 0, None)["state"] == "unknown"
    # QEMU < 9's wording is evidence too
    old = "qemu-system-x86_64: Unable to use native AIO, falling back to thread pool: x"
    assert state("old", 1, three, [old], version="7.2.22")["state"] == "fallback"


def test_only_qemu_pid_files_are_domains(tmp_path):
    """/run/libvirt/qemu/driver.pid is libvirtd's own lock file, not a domain."""
    proc = tmp_path / "proc"
    run = tmp_path / "run"
    run.mkdir()
    for pid, argv in ((100, [b"libvirtd", b"-d"]),
                      (200, [b"/usr/bin/qemu-system-x86_64", b"-name", b"guest=web1,debug-threads=on"])):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(argv) + b"\0")
        (proc / str(pid) / "maps").write_text("7f00-7f01 rw-s 00000000 00:0f 1 /[aio] (deleted)\n")
    (run / "driver.pid").write_text("100\n")
    (run / "web1.pid").write_text("200\n")
    holders = procscan.qemu_holders(proc_root=str(proc), run_dir=str(run))
    assert [(h.domain, h.pid, h.contexts) for h in holders] == [("web1", 200, 1)]


def test_a_restarted_daemon_releases_what_did_not_come_up_and_keeps_what_did(fake_host):
    fake_host.set_aio(65536, 0)
    for name in ("up", "dead"):
        dom = domain(disk("/a", "vda", "native"), name=name)
        assert gate.gate_prepare(_plan(dom, version="10.0.2"), settings(check="events_max")).reserved
    _fake_qemu(fake_host, "up", 4242, 0)
    restarted = time.time() + 1
    with ledger.Ledger() as led:  # a daemon that started before the bookings: nothing to do
        assert led.expire(gate._alive, lambda n: 0, restarted - 3600) == []
    with ledger.Ledger() as led:
        dropped = led.expire(gate._alive, lambda n: 0, restarted)
    assert dropped == ["dead"] and ledger.snapshot()["up"]["state"] == "running"
    ledger.settle("other", "reconnect", "begin")  # no booking: nothing happens
    assert set(ledger.snapshot()) == {"up"}


def test_filter_with_enforce_off_prints_only_degrades_edits(fake_host, tmp_path, monkeypatch,
                                                           capsysbinary):
    """enforce: off means no policy edits. Before, the filter made them and wrote them
    back (_undo), which left the <driver name='qemu'/> the policy had created on a disk
    that had none: a degrade elsewhere then printed it, and syslog said "rewrote disk
    vda" for the edit it had not made."""
    from aiohook.hook.filter import rewrite

    image = tmp_path / "a.raw"
    with open(image, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    xml = domain(f"<disk type='file' device='disk'>\n<source file='{image}'/>\n"
                 f"<target dev='vda' bus='virtio'/>\n</disk>\n"
                 + disk(str(image), "vdb", "native"), name="off")
    monkeypatch.setenv("AIOHOOK_LOG_DIR", str(tmp_path / "log"))
    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe.linux import LinuxProbe

    plan = plan_xml(xml, "<t>", load_ruleset("default"), LinuxProbe())
    assert plan.disks[0].decision.changed  # the policy wants vda changed: it has no <driver>
    monkeypatch.setattr("aiohook.hook.filter.make_plan", lambda *a: plan)
    said = []
    monkeypatch.setattr("aiohook.hook.log.say", lambda level, message: said.append(message))
    fake_host.set_aio(65536, 65536)  # no room: degrade moves vdb
    st = SimpleNamespace(enforce="off", on_budget_exceeded="degrade", budget_reserve_events=0,
                         budget_check="events_max", on_error="allow", rules="default")
    assert rewrite("off", "restore", xml, st, time.monotonic()) == 0
    out = capsysbinary.readouterr().out
    assert out.count(b"<driver") == xml.count(b"<driver") and b"io='native'" not in out
    assert [m for m in said if "rewrote" in m] == [] and any("vdb: io native" in m for m in said)
