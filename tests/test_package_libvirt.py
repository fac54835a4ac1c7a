"""The Debian package end to end, in the modern chroot stack (libvirt 11 / QEMU 10):
installed with `apt-get install ./aiohook_*.deb` inside the chroot, libvirtd
restarted by the test (the package only says it must be), a domain started and
restored: the packaged hook's decision log and QEMU's own command line show the
decision. Then `dpkg -r` with libvirtd running, and `dpkg --purge`.

Only the chroot stack (the host's /etc/libvirt is never touched). Restores what it
changed in the chroot: the package is purged, /etc/libvirt/hooks, /etc/aiohook,
/etc/sysctl.d, aiohook's log, state and cache directories are put back exactly as
found, and libvirtd is restarted again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from libvirt_env import restore_tree, snapshot_tree
from test_package_deb import CHECKOUT, HOOK, MARKER, build_deb

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

# What the package or its hook may change inside the chroot, as the chroot sees it.
KEPT = ("/etc/libvirt/hooks", "/etc/aiohook", "/etc/sysctl.d", "/var/log/aiohook",
        "/var/lib/aiohook", "/var/cache/aiohook", "/run/aiohook",
        "/var/lib/prometheus/node-exporter")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
       "DEBIAN_FRONTEND": "noninteractive"}


class Packaged:
    def __init__(self, stack):
        self.stack = stack
        self.apt_output = ""
        self.daemons_before_install: list[int] = []
        self.daemons_after_install: list[int] = []

    def chroot(self, *argv: str, check: bool = True, input: bytes | None = None):
        done = subprocess.run(self.stack.argv(*argv), capture_output=True, env=ENV,
                              input=input, timeout=600, check=False, cwd="/")
        if check and done.returncode != 0:
            raise AssertionError(f"chroot {argv} -> {done.returncode}: "
                                 f"{done.stdout.decode(errors='replace')[-2000:]}"
                                 f"{done.stderr.decode(errors='replace')[-2000:]}")
        return done

    def dpkg_status(self) -> str:
        return self.chroot("dpkg-query", "-W", "-f=${Status}", "aiohook",
                           check=False).stdout.decode()

    def decisions(self, domain: str) -> list[dict]:
        path = self.stack.path("/var/log/aiohook/decisions.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return [e for e in map(json.loads, fh) if e.get("domain") == domain]

    def libvirtds(self) -> list[int]:
        return sorted(self.stack._daemon_pids("libvirtd"))

    def qemu_cmdline(self, name: str) -> str:
        pid = self.stack.qemu_pid(name)
        assert pid, f"{name} has no running QEMU"
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")


@pytest.fixture(scope="module")
def packaged(stack):
    if stack.name != "modern":
        pytest.skip("the package is installed into the modern chroot stack only "
                    "(this test never touches the host's /etc/libvirt)")
    deb = build_deb()
    p = Packaged(stack)
    if p.dpkg_status() not in ("", "unknown ok not-installed"):
        pytest.skip(f"aiohook is already installed in the chroot: {p.dpkg_status()}")
    saved = {top: snapshot_tree(stack.path(top)) for top in KEPT}
    # The checkout is mounted at the same path inside the chroot; /var/tmp is shared.
    inside = deb if deb.startswith(CHECKOUT + "/") else None
    scratch = None
    if inside is None:
        scratch = tempfile.mkdtemp(prefix="aiohook-test-deb-", dir="/var/tmp")
        os.chmod(scratch, 0o755)
        inside = shutil.copy(deb, scratch)
    try:
        p.daemons_before_install = p.libvirtds()
        done = p.chroot("apt-get", "install", "-y", "--no-install-recommends", inside)
        p.apt_output = done.stdout.decode() + done.stderr.decode()
        p.daemons_after_install = p.libvirtds()
        stack.restart_libvirtd()  # the test does it: the package only says it is needed
        yield p
    finally:
        stack.cleanup_test_domains()
        p.chroot("dpkg", "--purge", "aiohook", check=False)
        purged = {top: os.path.lexists(stack.path(top)) for top in
                  ("/etc/aiohook", "/var/log/aiohook", "/run/aiohook", "/var/lib/aiohook", HOOK)}
        for top, before in saved.items():
            restore_tree(stack.path(top), before)
        stack.restart_libvirtd()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        assert {top: snapshot_tree(stack.path(top)) for top in KEPT} == saved
        assert purged == dict.fromkeys(purged, False), f"left after dpkg --purge: {purged}"


@pytest.fixture(scope="module")
def image():
    work = tempfile.mkdtemp(prefix="aiohook-test-pkg-", dir="/var/tmp")
    os.chmod(work, 0o755)  # QEMU runs as libvirt-qemu
    path = os.path.join(work, "prealloc.raw")
    with open(path, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 16 << 20)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(work, ignore_errors=True)


def disk(path: str) -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{path}'/><target dev='vda' bus='virtio'/></disk>")


def test_the_package_says_restart_and_never_restarts_libvirtd(packaged):
    from aiohook.admin.install import RESTART_NOTE

    assert RESTART_NOTE in packaged.apt_output
    assert packaged.daemons_before_install and \
        packaged.daemons_after_install == packaged.daemons_before_install
    with open(packaged.stack.path(HOOK)) as fh:
        launcher = fh.read()
    assert launcher.startswith("#!/usr/bin/python3 -IS\n") and MARKER in launcher
    info = json.loads(packaged.chroot("aiohook", "status", "--format", "json").stdout)
    assert info["installed"] and info["hook"] == HOOK and info["problems"] == []
    assert info["daemon"] == "libvirtd"


def test_a_domain_started_in_the_chroot_is_decided_by_the_packaged_hook(packaged, image):
    st = packaged.stack
    name = st.unique_name("pkg")
    st.define(st.domain_xml(name, disk(image)))
    save = os.path.join(os.path.dirname(image), f"{name}.save")
    try:
        # prepare: the packaged default settings warn, and QEMU runs with the XML as it is
        done = st.virsh("start", name, check=False)
        assert done.returncode == 0, done.stderr
        entry = [e for e in packaged.decisions(name) if e["op"] == "prepare"][-1]
        assert entry["outcome"] == "warned" and f"aiohook apply {name}" in entry["message"]
        assert entry["disks"][0]["io"] == {"before": None, "after": "native"}
        assert '"aio":"native"' not in packaged.qemu_cmdline(name)
        # restore: the packaged hook rewrites the XML, and QEMU opens the image with native AIO
        st.virsh("save", name, save)
        done = st.virsh("restore", save, check=False)
        assert done.returncode == 0, done.stderr
        restored = [e for e in packaged.decisions(name) if e["op"] == "restore"][-1]
        assert restored["outcome"] == "rewritten"
        assert restored["disks"][0]["io"] == {"before": None, "after": "native"}
        cmdline = packaged.qemu_cmdline(name)
        assert f'"filename":"{image}","aio":"native"' in cmdline, cmdline[-3000:]
        assert "cache='none' io='native'" in st.virsh("dumpxml", name).stdout.decode()
        assert packaged.decisions(name)[-1]["outcome"] == "compliant"  # its prepare
    finally:
        st.destroy_and_undefine(name)
        if os.path.exists(save):
            os.unlink(save)


def test_dpkg_remove_with_libvirtd_running(packaged, image):
    """The hook goes at once (libvirt looks into qemu.d at each call); the settings stay;
    libvirtd keeps running."""
    st = packaged.stack
    daemons = packaged.libvirtds()
    done = packaged.chroot("dpkg", "-r", "aiohook")
    assert f"aiohook: removed {HOOK}".encode() in done.stdout + done.stderr
    assert not os.path.lexists(st.path(HOOK))
    assert os.path.exists(st.path("/etc/aiohook/aiohook.yaml"))
    assert packaged.dpkg_status() == "deinstall ok config-files"
    assert packaged.libvirtds() == daemons
    name = st.unique_name("pkg-removed")
    st.define(st.domain_xml(name, disk(image)))
    try:
        done = st.virsh("start", name, check=False)
        assert done.returncode == 0, done.stderr
        assert packaged.decisions(name) == []  # no hook ran
    finally:
        st.destroy_and_undefine(name)
