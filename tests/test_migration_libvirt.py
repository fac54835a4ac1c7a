"""Live migration end to end (issue 10): real `virsh migrate` from the host's
libvirt 9.0 / QEMU 7.2 to the chroot's libvirt 11 / QEMU 10, where the
destination's `migrate begin` hook decides io from its own storage, QEMU, rules
and AIO budget. A refused migration leaves the VM running on the source.

Both stacks run aiohook's hook from this checkout, each with its own settings,
state and logs under one scratch directory in /var/tmp (the same path in both).
Shared storage is /var/tmp, bind-mounted at the same path in the chroot;
non-shared storage is /var/lib/aiohook-migtest, a different directory on each
side. Every hooks directory and sysctl is restored; the chroot's host_uuid is
part of its build (tests/stacks/build-modern.sh), not changed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from libvirt_env import restore_tree, snapshot_tree
from test_budget_libvirt import snap
from test_budget_shapes import disk

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

FALLBACK = "falling back to thread pool"
NONSHARED = "/var/lib/aiohook-migtest"
_port = iter(range(49300, 49400))


class Side:
    """One end of a migration: a stack with aiohook's hook installed, its own dirs."""

    def __init__(self, stack, base: str):
        self.stack = stack
        self.dirs = {k: os.path.join(base, stack.name, k) for k in ("etc", "state", "log", "cache")}
        for d in self.dirs.values():
            os.makedirs(d)
        self.env = {"AIOHOOK_CONFIG_DIR": self.dirs["etc"], "AIOHOOK_STATE_DIR": self.dirs["state"],
                    "AIOHOOK_LOG_DIR": self.dirs["log"], "AIOHOOK_CACHE_DIR": self.dirs["cache"]}

    def settings(self, text: str) -> None:
        with open(os.path.join(self.dirs["etc"], "aiohook.yaml"), "w") as fh:
            fh.write(text)

    def decisions(self, domain: str) -> list[dict]:
        path = os.path.join(self.dirs["log"], "decisions.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return [e for e in map(json.loads, fh) if e.get("domain") == domain]

    def ledger(self) -> dict:
        path = os.path.join(self.dirs["state"], "aio-ledger.json")
        if not os.path.exists(path):
            return {}
        with open(path) as fh:
            return json.load(fh)["reservations"]


@pytest.fixture(scope="module")
def sides(_host_session):
    """(source, destination): the host's stack and the chroot's, hooks installed."""
    from conftest import SELECTED, _start

    if SELECTED != ["host", "modern"]:
        pytest.skip("migration needs both stacks (AIOHOOK_STACKS=host,modern)")
    stacks = [_start(_host_session, name) for name in ("host", "modern")]
    base = tempfile.mkdtemp(prefix="aiohook-migrate-", dir="/var/tmp")
    os.chmod(base, 0o755)
    saved = {st.name: snapshot_tree(st.hooks_dir) for st in stacks}
    made_nonshared = []
    pair = [Side(st, base) for st in stacks]
    try:
        for side in pair:
            qemu_d = os.path.join(side.stack.hooks_dir, "qemu.d")
            if os.path.exists(os.path.join(qemu_d, "50-aiohook")):
                os.unlink(os.path.join(qemu_d, "50-aiohook"))
            side.stack.aiohook("install", "--config-dir", side.dirs["etc"], env=side.env)
            side.settings("enforce: warn\n")
            side.stack.restart_libvirtd()
            path = side.stack.path(NONSHARED)
            if not os.path.exists(path):
                os.makedirs(path, mode=0o755)
                made_nonshared.append(path)
        yield pair
    finally:
        for side in pair:
            side.stack.cleanup_test_domains()
            restore_tree(side.stack.hooks_dir, saved[side.stack.name])
            side.stack.restart_libvirtd()
        for path in made_nonshared:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared_dir():
    d = tempfile.mkdtemp(prefix="aiohook-mig-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def image(path: str, sparse: bool = False, size: str = "16M") -> str:
    subprocess.run(["truncate" if sparse else "fallocate", "-s" if sparse else "-l", size, path],
                   check=True)
    os.chmod(path, 0o666)
    return path


def migrate(src, dst, name: str, *extra: str, check: bool = False):
    port = next(_port)
    return src.stack.virsh("migrate", "--live", "--unsafe", *extra, name, dst.stack.uri,
                           "--migrateuri", f"tcp://127.0.0.1:{port}", check=check, timeout=300)


def cmdline_since_last_start(stack, name: str) -> str:
    log = stack.domain_log(name)
    return log[log.rfind("starting up"):]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def syslog_capture():
    """A datagram socket on /dev/log for the block (the chroot's /dev is the host's);
    yields a function returning every message received so far."""
    if os.path.exists("/dev/log"):
        pytest.skip("a syslog daemon owns /dev/log here; not intercepting it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    sock.settimeout(0.2)
    got: list[str] = []

    def messages() -> list[str]:
        while True:
            try:
                got.append(sock.recv(65536).decode(errors="replace"))
            except (TimeoutError, BlockingIOError, OSError):
                return got

    try:
        yield messages
    finally:
        sock.close()
        os.unlink("/dev/log")


def test_destination_decides_with_its_own_rules(sides, shared_dir):
    """Shared storage; the destination runs the io_uring profile, the source the
    default one. The domain arrives with what the destination decided, QEMU there
    runs that aio, and the decision is in the destination's log and syslog."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\nrules: io_uring\n")
    name = env.unique_name("mig-rules")
    img = image(os.path.join(shared_dir, "p.raw"))
    src.stack.define(env.domain_xml(name, disk(img, "vda", None, cache="none")))
    try:
        src.stack.virsh("start", name)
        before = src.stack.virsh("dumpxml", name).stdout.decode()
        assert "io=" not in before.split("<disk", 1)[1].split("</disk>", 1)[0]
        with syslog_capture() as messages:
            done = migrate(src, dst, name)
            assert done.returncode == 0, done.stderr.decode()
            logged = messages()
        after = dst.stack.virsh("dumpxml", name).stdout.decode()
        cmdline = cmdline_since_last_start(dst.stack, name)
        entry = [e for e in dst.decisions(name) if e["op"] == "migrate"][-1]
        assert entry["outcome"] == "rewritten"
        wanted = entry["disks"][0]["io"]["after"]
        assert wanted == "io_uring"  # the kernel here allows it; the default profile says native
        assert f"io='{wanted}'" in after and f'"aio":"{wanted}"' in cmdline, cmdline[-2000:]
        assert any(f"{name}: migrate: rewrote disk vda" in m for m in logged), logged
        assert src.stack.qemu_pid(name) is None  # it moved
    finally:
        src.stack.destroy_and_undefine(name)
        dst.stack.destroy_and_undefine(name)


def test_copy_storage_onto_a_sparse_image_never_runs_native(sides):
    """Non-shared storage, --copy-storage-all: preallocated with io='native' on the
    source, pre-created sparse (truncate) on the destination. The destination's hook
    sees the sparse image and QEMU there never gets aio=native."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\n")
    name = env.unique_name("mig-copy")
    path = os.path.join(NONSHARED, f"{name}.raw")
    image(src.stack.path(path))
    image(dst.stack.path(path), sparse=True)
    src.stack.define(env.domain_xml(name, disk(path, "vda", "native")))
    try:
        src.stack.virsh("start", name)
        before = src.stack.virsh("dumpxml", name).stdout.decode()
        assert "io='native'" in before
        done = migrate(src, dst, name, "--copy-storage-all")
        assert done.returncode == 0, done.stderr.decode()
        after = dst.stack.virsh("dumpxml", name).stdout.decode()
        cmdline = cmdline_since_last_start(dst.stack, name)
        entry = [e for e in dst.decisions(name) if e["op"] == "migrate"][-1]
        disk_entry = entry["disks"][0]
        print(f"source XML driver: {before.split('<driver', 2)[1].split('/>')[0]}")
        print(f"destination XML driver: {after.split('<driver', 2)[1].split('/>')[0]}")
        print(f"destination decision: {disk_entry}")
        assert disk_entry["class"] == "file-sparse" and disk_entry["io"]["before"] == "native"
        assert disk_entry["io"]["after"] in ("io_uring", "threads")
        assert "io='native'" not in after and '"aio":"native"' not in cmdline
        assert f'"aio":"{disk_entry["io"]["after"]}"' in cmdline
    finally:
        src.stack.destroy_and_undefine(name)
        dst.stack.destroy_and_undefine(name)
        for st in (src.stack, dst.stack):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(st.path(path))


def _running_source(src, name: str, img: str, **kw) -> str:
    import libvirt_env as env

    src.stack.define(env.domain_xml(name, disk(img, "vda", None, cache="none", **kw)))
    src.stack.virsh("start", name)
    return src.stack.virsh("domstate", name).stdout.decode().strip()


def test_refused_by_the_destination_budget_loses_nothing(sides, shared_dir):
    """refuse: no room on the destination for the native context its rules want.
    virsh migrate fails with aiohook's message at `migrate begin`; the VM runs on
    the source, its disk unchanged; nothing is defined or booked on the destination."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\non_budget_exceeded: refuse\n")
    name = env.unique_name("mig-refuse")
    img = image(os.path.join(shared_dir, "r.raw"))
    assert _running_source(src, name, img) == "running"
    pid, digest = src.stack.qemu_pid(name), sha256(img)
    try:
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(snap()[0] + 512)):
            done = migrate(src, dst, name)
        err = done.stderr.decode()
        print(f"virsh migrate said: {err}")
        assert done.returncode != 0
        assert "AIO budget exceeded" in err and f"domain '{name}'" in err, err
        assert src.stack.virsh("domstate", name).stdout.decode().strip() == "running"
        assert src.stack.qemu_pid(name) == pid and sha256(img) == digest
        assert name not in dst.stack.virsh("list", "--all", "--name").stdout.decode().split()
        assert name not in dst.ledger()
        assert [e["outcome"] for e in dst.decisions(name)] == ["budget-refused"]
        assert dst.decisions(name)[0]["op"] == "migrate"
    finally:
        src.stack.destroy_and_undefine(name)
        dst.stack.destroy_and_undefine(name)


def test_degrade_moves_just_enough_on_the_destination(sides, shared_dir):
    """degrade: the destination's rules want native on two disks in two threads
    (QEMU 10: the main loop and iothread 1, 2 contexts); there is room for one.
    It migrates with one disk moved off native, and the destination's ledger books
    exactly the one context left."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\non_budget_exceeded: degrade\n")
    name = env.unique_name("mig-degrade")
    a, b = image(os.path.join(shared_dir, "a.raw")), image(os.path.join(shared_dir, "b.raw"))
    disks = disk(a, "vda", None, cache="none") + disk(b, "vdb", None, cache="none", iothread="1")
    src.stack.define(env.domain_xml(name, disks, iothreads=1))
    try:
        src.stack.virsh("start", name)
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(snap()[0] + 1024 + 512)):
            done = migrate(src, dst, name)
            assert done.returncode == 0, done.stderr.decode()
            after = dst.stack.virsh("dumpxml", name).stdout.decode()
            booked = dst.ledger().get(name)
        assert after.count("io='native'") == 1, after
        entry = [e for e in dst.decisions(name) if e["op"] == "migrate"][-1]
        assert len(entry["degraded"]) == 2 and "io native ->" in entry["degraded"][0]
        assert booked is not None and booked["events"] == 1024
        assert FALLBACK not in dst.stack.domain_log(name)
    finally:
        src.stack.destroy_and_undefine(name)
        dst.stack.destroy_and_undefine(name)


def test_parallel_incoming_migrations_never_overbook(sides, shared_dir):
    """Room for K=2 contexts on the destination, N=4 domains migrating in at once,
    each wanting one native context there: exactly 2 arrive, 2 are refused and
    keep running on the source; after a read each, no fallback anywhere."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\non_budget_exceeded: refuse\n")
    names = [env.unique_name(f"mig-par{i}") for i in range(4)]
    for i, name in enumerate(names):
        assert _running_source(src, name, image(os.path.join(shared_dir, f"m{i}.raw"))) == "running"
    results = {}
    try:
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(snap()[0] + 2 * 1024 + 512)):
            def go(name):
                results[name] = migrate(src, dst, name)

            threads = [threading.Thread(target=go, args=(n,)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            arrived = [n for n in names if dst.stack.qemu_pid(n)]
            for n in arrived:
                dst.stack.hmp(n, 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend '
                                 '"read 0 4k"')
            time.sleep(0.5)
            held = {n: len([1 for line in open(f"/proc/{dst.stack.qemu_pid(n)}/maps")
                            if "/[aio]" in line]) for n in arrived}
        texts = {n: r.stderr.decode() for n, r in results.items()}
        assert len(arrived) == 2, texts
        assert held == {n: 1 for n in arrived}
        for n in names:
            if n in arrived:
                assert results[n].returncode == 0 and src.stack.qemu_pid(n) is None
            else:
                assert results[n].returncode != 0 and "AIO budget exceeded" in texts[n], texts[n]
                assert src.stack.virsh("domstate", n).stdout.decode().strip() == "running"
        assert not any(FALLBACK in dst.stack.domain_log(n) for n in arrived)
    finally:
        for n in names:
            src.stack.destroy_and_undefine(n)
            dst.stack.destroy_and_undefine(n)


def test_migrating_back_to_the_older_stack(sides, shared_dir):
    """QEMU 10 -> QEMU 7.2 works for machine types both know (here pc-i440fx-7.2).
    Back on the host, its own hook decides and gates with QEMU 7.2's open-time
    model: refused while the host has no room (the VM keeps running on the chroot
    side), then accepted, with QEMU 7.2 holding its native context from the start."""
    import libvirt_env as env

    src, dst = sides
    dst.settings("enforce: warn\n")
    src.settings("enforce: warn\non_budget_exceeded: refuse\n")
    name = env.unique_name("mig-back")
    img = image(os.path.join(shared_dir, "back.raw"))
    assert _running_source(src, name, img) == "running"
    try:
        assert migrate(src, dst, name).returncode == 0
        there = dst.stack.qemu_pid(name)
        assert "io='native'" in dst.stack.virsh("dumpxml", name).stdout.decode()
        with env.sysctl("/proc/sys/fs/aio-max-nr", str(snap()[0] + 512)):
            refused = migrate(dst, src, name)
        assert refused.returncode != 0 and "AIO budget exceeded" in refused.stderr.decode()
        assert dst.stack.qemu_pid(name) == there
        assert dst.stack.virsh("domstate", name).stdout.decode().strip() == "running"
        back = migrate(dst, src, name)
        assert back.returncode == 0, back.stderr.decode()
        pid = src.stack.qemu_pid(name)
        assert pid and dst.stack.qemu_pid(name) is None
        assert '"aio":"native"' in cmdline_since_last_start(src.stack, name)
        with open(f"/proc/{pid}/maps") as fh:
            assert fh.read().count("/[aio]") == 1  # QEMU 7.2: opened at start
        outcomes = [e["outcome"] for e in src.decisions(name) if e["op"] == "migrate"]
        assert outcomes == ["budget-refused", "unchanged"]
    finally:
        src.stack.destroy_and_undefine(name)
        dst.stack.destroy_and_undefine(name)
