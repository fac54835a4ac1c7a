"""The AIO budget against real libvirtds and QEMUs, on both stacks (issue 4 and 9).

`stack` is each of the host's libvirt 9.0 / QEMU 7.2 and the chroot's libvirt 11
/ QEMU 10 (conftest.py). Every test holds the host lock; every sysctl and the
stack's /etc/libvirt/hooks are restored as found, also on failure. Contexts are
counted in /proc/PID/maps (exact per process); aio-nr is host-wide and shared
with other AIO users, so its increase is compared only in windows where no other
process changed its contexts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from libvirt_env import restore_tree, snapshot_tree
from test_budget_shapes import NEEDS_LIBVIRT, SHAPES, VCPUS, disk

from aiohook.budget import procscan
from aiohook.budget.demand import demand_for_document
from aiohook.domxml import parse_domain
from aiohook.facts import version_tuple

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

NATIVE_ERR = "Unable to use native AIO"  # QEMU < 9: refused start, or a later fallback
FALLBACK = "falling back to thread pool"  # any generation, native or io_uring


@pytest.fixture(scope="module")
def images(stack):
    d = tempfile.mkdtemp(prefix="aiohook-budget-", dir="/var/tmp")
    os.chmod(d, 0o755)
    im = {"dir": d}
    for i in range(12):
        p = os.path.join(d, f"f{i}.raw")
        subprocess.run(["fallocate", "-l", "8M", p], check=True)
        os.chmod(p, 0o666)
        im[f"f{i}"] = p
    for q in ("q0", "q1"):
        p = os.path.join(d, f"{q}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=falloc",
                        p, "8M"], check=True)
        os.chmod(p, 0o666)
        im[q] = p
    back = os.path.join(d, "blk.raw")
    subprocess.run(["fallocate", "-l", "8M", back], check=True)
    dev = subprocess.run(["losetup", "-f", "--show", back], capture_output=True, text=True,
                         check=True).stdout.strip()
    im["blk"] = dev
    try:
        yield im
    finally:
        stack.cleanup_test_domains()
        subprocess.run(["losetup", "-d", dev], check=False)
        shutil.rmtree(d, ignore_errors=True)


def snap():
    """(aio-nr, {pid: contexts}) read so that aio-nr did not move during the scan."""
    for _ in range(100):
        a = procscan_nr()
        holders = {h.pid: h.contexts for h in procscan.all_holders()}
        if procscan_nr() == a:
            return a, holders
        time.sleep(0.05)
    raise AssertionError("aio-nr never held still")


def procscan_nr() -> int:
    with open("/proc/sys/fs/aio-nr") as fh:
        return int(fh.read())


def _others_unchanged(s0, s1, pid) -> bool:
    return {p: c for p, c in s1[1].items() if p != pid} == s0[1]


def guest_domain(env, name, images, disks, iothreads, extra):
    parts = env.guest_parts(os.path.join(images["dir"], f"{name}.console"))
    return env.domain_xml(name, disks + parts["serial"], iothreads=iothreads, extra_devices=extra,
                          os_xml=parts["os_xml"], features=parts["features"],
                          memory_mib=parts["memory_mib"], vcpus=VCPUS,
                          domain_type=parts["domain_type"]), parts


def _skip_unless_libvirt(stack, shape):
    need = NEEDS_LIBVIRT.get(shape)
    if need and version_tuple(stack.libvirt_version or "0") < need:
        pytest.skip(f"{shape} needs libvirt >= {'.'.join(map(str, need))}; "
                    f"{stack.name} has {stack.libvirt_version}")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_demand_equals_measured(stack, images, shape, record_property):
    """Predicted contexts at a paused start and once the tiny guest read every disk
    (once per queue, from a CPU of that queue) equal what QEMU opened."""
    import libvirt_env as env

    _skip_unless_libvirt(stack, shape)
    disks, iot, extra = SHAPES[shape](images)
    name = env.unique_name("shape")
    xml, parts = guest_domain(env, name, images, disks, iot, extra)
    predicted = demand_for_document(parse_domain(xml.encode()), stack.qemu_version)
    stack.define(xml)
    console = os.path.join(images["dir"], f"{name}.console")
    try:
        for attempt in range(3):
            s0 = snap()
            stack.virsh("start", "--paused", name)
            pid = stack.qemu_pid(name)
            s1 = snap()
            stack.virsh("resume", name)
            env.wait_for_guest(console)
            time.sleep(0.5)
            s2 = snap()
            ctx_start, ctx_later = s1[1].get(pid, 0), s2[1].get(pid, 0)
            clean = _others_unchanged(s0, s1, pid) and _others_unchanged(s0, s2, pid)
            if clean or attempt == 2:
                break
            stack.virsh("destroy", name, check=False)
    finally:
        stack.destroy_and_undefine(name)
    per = predicted["events_per_context"]
    line = (f"[{stack.name} QEMU {stack.qemu_version}] {shape}: predicted "
            f"{predicted['events_at_start']}/{predicted['events_max']} ({predicted['model']}), "
            f"measured {ctx_start * per}/{ctx_later * per} (contexts {ctx_start}/{ctx_later})")
    print(line)
    record_property("measurement", line)
    assert (predicted["events_at_start"], predicted["events_max"]) == (ctx_start * per,
                                                                       ctx_later * per), line
    if clean:  # aio-nr agrees with /proc when nobody else moved
        assert (s1[0] - s0[0], s2[0] - s0[0]) == (ctx_start * per, ctx_later * per)
    assert FALLBACK not in stack.domain_log(name)


def test_budget_json_agrees_with_proc(stack, images):
    import libvirt_env as env

    names = []
    try:
        # each domain gets its own image files (QEMU locks images for writing)
        for shape, first in (("main-1native", 0), ("scsi-2ctl-iothreads-1-2", 3),
                             ("threads-iouring-only", 6)):
            im = {**images, **{f"f{i}": images[f"f{i + first}"] for i in range(3)}}
            disks, iot, extra = SHAPES[shape](im)
            name = env.unique_name("bj")
            stack.define(env.domain_xml(name, disks, iothreads=iot, extra_devices=extra))
            names.append(name)
        for name in names:
            stack.virsh("start", "--paused", name)

        def budget():
            data = json.loads(stack.aiohook("budget", "--format", "json").stdout)
            return data, {d["domain"]: d for d in data["domains"]}

        data, by_name = budget()
        for name in names:
            pid = stack.qemu_pid(name)
            with open(f"/proc/{pid}/maps") as fh:
                contexts = fh.read().count("/[aio]")
            got = by_name[name]
            assert (got["pid"], got["contexts"], got["events"]) == (pid, contexts, contexts * 1024)
        lazy = version_tuple(stack.qemu_version) >= (9, 0)
        assert by_name[names[1]]["contexts"] == (0 if lazy else 3)
        assert by_name[names[2]]["aio"]["state"] == "no-native"
        assert by_name[names[0]]["aio"]["state"] == ("not-opened-yet" if lazy else "native")
        assert not [f for f in data["silent_fallback"] if f["domain"] in names]
        if lazy:  # the first read opens the main loop's context: now native
            stack.hmp(names[0], "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "
                                '"read 0 4k"')
            data, by_name = budget()
            assert (by_name[names[0]]["contexts"], by_name[names[0]]["aio"]["state"]) == (1, "native")
        prom = stack.aiohook("budget", "--format", "prometheus").stdout.decode()
        assert f'aiohook_domain_aio_contexts{{domain="{names[1]}"}} {0 if lazy else 3}' in prom
        assert f'aiohook_domain_aio_state{{domain="{names[0]}",state="native"}} 1' in prom
        assert f'aiohook_domain_aio_silent_fallback{{domain="{names[0]}"}} 0' in prom
    finally:
        for name in names:
            stack.destroy_and_undefine(name)


def test_doctor_plans_with_the_generations_model(stack, images):
    """doctor, run inside the stack, counts each defined domain by its QEMU's model."""
    import libvirt_env as env

    names = []
    try:
        for shape in ("blk-iothreads-1-2-3", "scsi-2ctl-iothreads-1-2"):
            disks, iot, extra = SHAPES[shape](images)
            name = env.unique_name("doc")
            xml = env.domain_xml(name, disks, iothreads=iot, extra_devices=extra, vcpus=VCPUS)
            stack.define(xml)
            names.append((name, demand_for_document(parse_domain(xml.encode()),
                                                    stack.qemu_version)))
        done = stack.aiohook("doctor", "--format", "json", check=False)
        assert done.returncode in (0, 1), done.stderr
        rep = json.loads(done.stdout)
        by_name = {d["name"]: d for d in rep["domains"]}
        lazy = version_tuple(stack.qemu_version) >= (9, 0)
        for name, predicted in names:
            got = by_name[name]
            assert (got["events_at_start"], got["events_max"], got["model"]) == (
                predicted["events_at_start"], predicted["events_max"], predicted["model"])
            assert got["model"] == ("lazy" if lazy else "open-time")
        # 7.2: 4 + 3 contexts; 10.0: 3 + 2 (no main loop: every native disk is on an iothread)
        assert sum(by_name[n]["events_max"] for n, _ in names) == (5 if lazy else 7) * 1024
    finally:
        for name, _ in names:
            stack.destroy_and_undefine(name)


# ------------------------------------------------------------ with the real hook

@pytest.fixture(scope="module")
def hooked(stack):
    """aiohook's real hook installed with `aiohook install` into the stack's
    /etc/libvirt/hooks, private config/state/log dirs; libvirtd restarted; all
    restored afterwards."""
    hooks = stack.hooks_dir
    saved = snapshot_tree(hooks)
    base = tempfile.mkdtemp(prefix="aiohook-budget-hook-", dir="/var/tmp")
    os.chmod(base, 0o755)
    dirs = {k: os.path.join(base, k) for k in ("etc", "state", "log", "cache")}
    for d in dirs.values():
        os.makedirs(d)
    penv = {"AIOHOOK_CONFIG_DIR": dirs["etc"], "AIOHOOK_STATE_DIR": dirs["state"],
            "AIOHOOK_LOG_DIR": dirs["log"], "AIOHOOK_CACHE_DIR": dirs["cache"]}
    try:
        qemu_d = os.path.join(hooks, "qemu.d")
        for n in list(os.listdir(qemu_d) if os.path.isdir(qemu_d) else []):
            if n == "50-aiohook":  # someone else's aiohook launcher: ours replaces it here
                os.unlink(os.path.join(qemu_d, n))
        stack.aiohook("install", "--hooks-dir", "/etc/libvirt/hooks", "--config-dir", dirs["etc"],
                      env=penv)
        stack.restart_libvirtd()

        def configure(**settings):
            text = "enforce: off\non_error: allow\n"
            text += f"on_budget_exceeded: {settings.get('mode', 'refuse')}\n"
            text += (f"budget: {{reserve_events: {settings.get('reserve', 0)}, "
                     f"check: {settings.get('check', 'events_max')}}}\n")
            with open(os.path.join(dirs["etc"], "aiohook.yaml"), "w") as fh:
                fh.write(text)

        configure()
        yield type("Hooked", (), {"env": penv, "dirs": dirs, "configure": staticmethod(configure)})
    finally:
        stack.cleanup_test_domains()
        restore_tree(hooks, saved)
        stack.restart_libvirtd()
        shutil.rmtree(base, ignore_errors=True)


def _read_every_disk(stack, name):
    """One 4 KiB read on the virtio disk through HMP qemu-io: it submits from the
    main loop, so it opens the main loop's context (QEMU >= 9) deterministically."""
    return stack.hmp(name, 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend '
                           '"read 0 4k"', check=False)


def _start_all(stack, names, stagger_s: float = 0.0):
    """virsh start of every domain from its own thread; with stagger_s, thread i
    starts i * stagger_s later, so earlier domains are past `started` by then."""
    results = {}

    def start(name):
        time.sleep(names.index(name) * stagger_s)
        results[name] = stack.virsh("start", name, check=False)

    threads = [threading.Thread(target=start, args=(nm,)) for nm in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("stagger_s", [0.0, 1.5], ids=["burst", "staggered"])
def test_parallel_starts_never_overbook(stack, images, hooked, stagger_s):
    """Room for K contexts, N > K one-disk native domains started in parallel, then
    each reads its disk: exactly K run on native AIO, the others are refused by
    aiohook, and no QEMU anywhere logged a fallback or a refusal. Staggered, each
    start comes after the earlier ones' `started`: on QEMU >= 9 they hold no
    context yet, and only their bookings keep the next gate honest."""
    import libvirt_env as env

    n, k = 5, 2
    names = [env.unique_name(f"ob{i}") for i in range(n)]
    for i, name in enumerate(names):
        stack.define(env.domain_xml(name, disk(images[f"f{i}"], "vda", "native")))
    hooked.configure(mode="refuse")
    for _attempt in range(4):
        s0 = snap()
        limit = s0[0] + k * 1024 + 512  # room for K contexts, not K+1
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(limit)):
            results = _start_all(stack, names, stagger_s)
            running = [nm for nm in names if stack.qemu_pid(nm)]
            for nm in running:
                _read_every_disk(stack, nm)
            time.sleep(0.5)
            s1 = snap()
            pids = {stack.qemu_pid(nm): nm for nm in running}
            held = {nm: s1[1].get(pid, 0) for pid, nm in pids.items()}
        clean = ({p: c for p, c in s1[1].items() if p not in pids} == s0[1])
        texts = {nm: r.stdout.decode() + r.stderr.decode() for nm, r in results.items()}
        logs = "".join(stack.domain_log(nm) for nm in names)
        if clean:
            break
        for nm in names:  # another AIO user came or went: the window is not valid
            stack.virsh("destroy", nm, check=False)
    else:
        pytest.fail("no clean window: other processes kept changing aio-nr")
    try:
        assert NATIVE_ERR not in logs and FALLBACK not in logs, logs[-3000:]
        assert not any(NATIVE_ERR in t for t in texts.values())
        assert len(running) == k, texts
        assert held == {nm: 1 for nm in running}  # each runs on its own native context
        for nm in names:
            if nm in running:
                assert results[nm].returncode == 0
            else:
                assert results[nm].returncode != 0
                assert "AIO budget exceeded" in texts[nm] and f"domain '{nm}'" in texts[nm], texts[nm]
                assert "sysctl -w fs.aio-max-nr=" in texts[nm]
    finally:
        for nm in names:
            stack.destroy_and_undefine(nm)


def test_fallback_reported_only_where_it_happened(stack, images, hooked):
    """A fallback induced for real (on_budget_exceeded: warn, a low limit) next to an
    idle domain: `aiohook budget` reports exactly the domains that fell back."""
    import libvirt_env as env

    lazy = version_tuple(stack.qemu_version) >= (9, 0)
    hooked.configure(mode="warn")
    names = [env.unique_name(f"fb{i}") for i in range(4)]
    consoles = {}
    for i, name in enumerate(names):
        if lazy:  # QEMU >= 9: main-loop disks, I/O by HMP; each fails at its first read
            stack.define(env.domain_xml(name, disk(images[f"f{i}"], "vda", "native")))
        else:  # QEMU < 9: the main loop opens at start; an iothread's context when the
            # guest's driver starts, and only that one falls back
            xml, _ = guest_domain(env, name, images,
                                  disk(images[f"f{i}"], "vda", "native", iothread="1"), 1, "")
            stack.define(xml)
            consoles[name] = os.path.join(images["dir"], f"{name}.console")
    s0 = snap()
    try:
        # QEMU >= 9: room for one context; QEMU < 9: for the 4 opened at start, plus one
        limit = s0[0] + (1 if lazy else 5) * 1024 + 512
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(limit)):
            for name in names:
                assert stack.virsh("start", "--paused", name, check=False).returncode == 0
            active, idle = names[:3], names[3]
            for name in active:
                stack.virsh("resume", name)
                if lazy:
                    _read_every_disk(stack, name)
                else:
                    env.wait_for_guest(consoles[name])
            time.sleep(0.5)
            data = json.loads(stack.aiohook("budget", "--format", "json").stdout)
            prom = stack.aiohook("budget", "--format", "prometheus").stdout.decode()
        fell = {nm for nm in names if FALLBACK in stack.domain_log(nm)}
        assert len(fell) >= 1 and idle not in fell, fell
        reported = {f["domain"] for f in data["silent_fallback"]}
        assert reported == fell
        states = {d["domain"]: d["aio"]["state"] for d in data["domains"] if d["domain"] in names}
        assert states[idle] == ("not-opened-yet" if lazy else "partial")
        for nm in fell:
            assert f'aiohook_domain_aio_state{{domain="{nm}",state="fallback"}} 1' in prom
        for f in data["silent_fallback"]:
            assert f["disks"]["native"] == {"lines": 1, "candidates": ["vda"], "matched": True}
    finally:
        for name in names:
            stack.destroy_and_undefine(name)


def test_degrade_on_restore_under_pressure(stack, images, hooked):
    import libvirt_env as env

    name = env.unique_name("deg")
    stack.define(env.domain_xml(name, disk(images["f8"], "vda", "native")))
    save = os.path.join(hooked.dirs["state"], "..", f"{name}.save")
    try:
        hooked.configure(mode="degrade")
        stack.virsh("start", name)
        _read_every_disk(stack, name)
        assert (procscan.aio_contexts(stack.qemu_pid(name)) or 0) == 1
        stack.virsh("save", name, save)
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(procscan_nr() + 512)):
            r = stack.virsh("restore", save, check=False)
            assert r.returncode == 0, r.stderr.decode()
            _read_every_disk(stack, name)
            pid = stack.qemu_pid(name)
            with open(stack.live_xml_file(name)) as fh:
                live = fh.read()
            assert "io='native'" not in live and ("io='io_uring'" in live or "io='threads'" in live)
            assert procscan.aio_contexts(pid) == 0
        assert NATIVE_ERR not in stack.domain_log(name)
        assert FALLBACK not in stack.domain_log(name)
    finally:
        stack.destroy_and_undefine(name)
        if os.path.exists(save):
            os.unlink(save)


SLOW_START_HOOK = """#!/bin/sh
# test helper: holds `start begin` so that libvirtd can be killed mid-start
cat >/dev/null
if [ "$2" = start ] && [ "$3" = begin ]; then touch "{marker}.$1"; sleep 60; fi
exit 0
"""


def test_libvirtd_restart_keeps_what_came_up_and_releases_what_did_not(stack, images, hooked):
    """libvirtd is killed while B is starting (held in `start begin` by a slow
    hook) and A runs. After the restart A's booking is kept (on QEMU >= 9 A holds
    nothing yet), B's is released at once, and the next gates are right."""
    import signal

    import libvirt_env as env

    hooked.configure(mode="refuse")
    a, b, c, d = (env.unique_name(t) for t in ("rs-a", "rs-b", "rs-c", "rs-d"))
    for i, name in enumerate((a, b, c, d)):
        stack.define(env.domain_xml(name, disk(images[f"f{i}"], "vda", "native")))
    slow = os.path.join(stack.hooks_dir, "qemu.d", "60-aiohook-test-slow")
    marker = os.path.join(hooked.dirs["state"], "..", "slow")
    ledger_file = os.path.join(hooked.dirs["state"], "aio-ledger.json")

    def booked():
        try:
            with open(ledger_file) as fh:
                return json.load(fh)["reservations"]
        except (OSError, ValueError):
            return {}

    try:
        assert stack.virsh("start", a, check=False).returncode == 0
        with open(slow, "w") as fh:
            fh.write(SLOW_START_HOOK.format(marker=marker))
        os.chmod(slow, 0o755)
        stack.restart_libvirtd()
        starting = subprocess.Popen(["virsh", "-c", stack.uri, "start", b],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{marker}.{b}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b in booked() and booked()[b]["state"] == "pending"
        stack._kill("libvirtd", signal.SIGKILL)
        starting.wait(timeout=30)
        os.unlink(slow)
        subprocess.run(["pkill", "-f", f"{marker}"], check=False)
        time.sleep(2)  # the daemon's start time is read from btime, in whole seconds
        subprocess.run(stack.argv("libvirtd", "-d"), check=True)
        stack.wait()
        assert stack.qemu_pid(a) and not stack.qemu_pid(b)
        s0 = snap()
        # room for A's booked-but-unopened contexts plus exactly one more
        a_held = s0[1].get(stack.qemu_pid(a), 0)
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(s0[0] + (2 - a_held) * 1024 + 512)):
            first = stack.virsh("start", c, check=False)
            second = stack.virsh("start", d, check=False)
            now = booked()
        assert first.returncode == 0, first.stderr.decode()
        assert second.returncode != 0 and "AIO budget exceeded" in second.stderr.decode()
        assert b not in now
        if a_held == 0:  # QEMU >= 9: nothing opened yet, and the booking survived
            assert now[a]["state"] == "running" and now[a]["events"] == 1024
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(slow)
        for name in (a, b, c, d):
            stack.destroy_and_undefine(name)
