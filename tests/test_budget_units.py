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
from test_budget_shapes import SHAPES, disk

from aiohook.budget import demand, gate, ledger, procscan, supply
from aiohook.domxml import parse_domain
from aiohook.facts import HostFacts

IMAGES = {f"f{i}": f"/img/f{i}.raw" for i in range(6)} | {"blk": "/dev/loop9"}
EXPECTED = {  # shape -> (events_at_start, events_max) on QEMU >= 5.0
    "main-1native": (1024, 1024),
    "main-2native-1iouring": (1024, 1024),
    "blk-iothread1-plus-main": (1024, 2048),
    "blk-iothreads-1-2-3": (1024, 4096),
    "scsi-2ctl-iothreads-1-2": (3072, 3072),
    "scsi-2ctl-same-iothread": (2048, 2048),
    "scsi-ctl-no-iothread": (1024, 1024),
    "mixed-native-threads-iouring": (1024, 2048),
    "threads-iouring-only": (0, 0),
    "cdrom-native": (1024, 1024),
    "block-loop-native": (1024, 1024),
    "scsi-iothread-plus-blk-iothread": (2048, 3072),
}


def domain(disks_xml: str, iothreads: int = 0, extra: str = "", name: str = "d") -> bytes:
    iot = f"<iothreads>{iothreads}</iothreads>" if iothreads else ""
    return (f"<domain type='qemu'><name>{name}</name>{iot}<devices>"
            f"<emulator>/usr/bin/qemu-system-x86_64</emulator>{disks_xml}{extra}"
            f"</devices></domain>").encode()


def shape_doc(name: str):
    disks, iot, extra = SHAPES[name](IMAGES)
    return parse_domain(domain(disks, iot, extra))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demand_shapes(name):
    d = demand.demand_for_document(shape_doc(name), "7.2.22")
    assert (d["events_at_start"], d["events_max"]) == EXPECTED[name]


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
    d = demand.demand_for_document(parse_domain(domain(queues, 2)), "10.0")
    assert (d["events_at_start"], d["events_max"]) == (1024, 3072)


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
    monkeypatch.setattr(supply, "PROC_ROOT", str(proc))
    monkeypatch.setattr(procscan, "PROC_ROOT", str(proc))
    monkeypatch.setattr(procscan, "LIBVIRT_RUN_DIR", str(run))
    monkeypatch.setenv("AIOHOOK_STATE_DIR", str(tmp_path / "state"))

    def set_aio(max_nr, nr):
        (proc / "sys/fs/aio-max-nr").write_text(f"{max_nr}\n")
        (proc / "sys/fs/aio-nr").write_text(f"{nr}\n")

    set_aio(65536, 0)
    return SimpleNamespace(set_aio=set_aio, state=tmp_path / "state", proc=proc, run=run)


def settings(mode="refuse", reserve=0, check="events_at_start"):
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


def test_gate_uses_io_as_found_not_rewrite(fake_host):
    from aiohook.planner import DiskPlan

    fake_host.set_aio(1024, 1024)
    plan = _plan(ONE)
    plan.document.disks()[0].set_driver_attr("io", "threads")  # aiohook's rewrite
    plan.disks = [DiskPlan(None, SimpleNamespace(io_before="native"))]
    assert not gate.gate_prepare(plan, settings()).allowed


def test_settle_started_and_release(fake_host):
    fake_host.set_aio(65536, 0)
    assert gate.gate_prepare(_plan(ONE), settings()).allowed
    ledger.settle("one", "start", "begin")
    assert "one" in ledger.snapshot()
    ledger.settle("one", "started", "begin")
    assert ledger.snapshot() == {}
    # events_max: the not-yet-opened iothread contexts stay reserved while it runs
    two = domain(disk("/a", "vda", "native", iothread="1"), 1, name="two")
    assert gate.gate_prepare(_plan(two), settings(check="events_max")).reserved
    ledger.settle("two", "started", "begin")
    assert ledger.snapshot()["two"]["state"] == "running"
    ledger.settle("two", "stopped", "end")
    assert ledger.snapshot() == {}


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
    supply.PROC_ROOT = proc
    procscan.PROC_ROOT = proc
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
    lines = gate.degrade(plan, settings("degrade"))
    ios = {d.target: d.io for d in plan.document.disks()}
    assert sum(v != "native" for v in ios.values()) == 1 and "io_uring" in ios.values()
    assert plan.aio["events_at_start"] == 2048 and lines
    fake_host.set_aio(65536, 65536 - 512)  # no room at all: threads without io_uring
    plan = _plan(x, io_uring=False)
    gate.degrade(plan, settings("degrade"))
    assert {d.io for d in plan.document.disks()} == {"threads"}
    fake_host.set_aio(65536, 0)
    plan = _plan(x)
    assert gate.degrade(plan, settings("degrade")) == []


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


def test_silent_fallback_detected_from_status_xml(tmp_path):
    from aiohook.budget.cli import silent_fallbacks

    status = (b"<domstatus state='running' pid='42'><monitor path='/x'/>"
              + domain(disk("/a", "vda", "native"), name="quiet") + b"</domstatus>")
    (tmp_path / "quiet.xml").write_bytes(status)
    (tmp_path / "loud.xml").write_bytes(b"<domstatus>" + domain(disk("/a", "vda", "native"),
                                                                  name="loud") + b"</domstatus>")
    holders = [procscan.AioHolder(42, 0, 0, "quiet", "qemu", "9.1.0"),
               procscan.AioHolder(43, 1, 1024, "loud", "qemu", "9.1.0")]
    out = silent_fallbacks(holders, str(tmp_path))
    assert [f["domain"] for f in out] == ["quiet"]
    assert out[0]["predicted_contexts_at_start"] == 1 and out[0]["native_disks"] == ["vda"]


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
