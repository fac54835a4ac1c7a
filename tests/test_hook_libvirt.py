"""The hook under real libvirtds and QEMUs, on both stacks: installed with `aiohook
install` (inside the stack, by its own Python), libvirtd restarted, type='qemu'
domains on a preallocated file, a sparse file and a loop device.

Holds the host lock throughout. Restores the stack's /etc/libvirt/hooks exactly as
found, uninstalls, restarts libvirtd, removes every file it made. aiohook's settings,
logs, cache and state live in a scratch directory under /var/tmp (baked into the
launcher by install; the same path inside the chroot), so no real /etc/aiohook is
touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from libvirt_env import restore_tree, snapshot_tree

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

HOOKS_DIR = "/etc/libvirt/hooks"  # as the stack sees it
URI = "qemu:///system"  # as the stack sees it
QEMU = "/usr/bin/qemu-system-x86_64"


class Host:
    def __init__(self, stack, work: str):
        self.lv = stack
        self.stack = stack
        self.work = work
        self.config = os.path.join(work, "etc")
        self.logs = os.path.join(work, "log")
        self.env = dict(AIOHOOK_LOG_DIR=self.logs, AIOHOOK_CACHE_DIR=os.path.join(work, "cache"),
                        AIOHOOK_STATE_DIR=os.path.join(work, "state"),
                        AIOHOOK_CONFIG_DIR=self.config)

    def settings(self, text: str) -> None:
        with open(os.path.join(self.config, "aiohook.yaml"), "w") as fh:
            fh.write(text)

    def aiohook(self, *args: str, check: bool = True):
        done = self.stack.aiohook(*args, env=self.env, check=False)
        done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
        if check and done.returncode != 0:
            raise AssertionError(f"[{self.stack.name}] aiohook {args} -> {done.returncode}: "
                                 f"{done.stderr}")
        return done

    def io_uring_usable(self) -> bool:
        """aiohook's own verdict, by the stack's Python against the stack's QEMU."""
        code = ("from aiohook.probe.linux import LinuxProbe; "
                f"print(LinuxProbe().host_facts({QEMU!r}).io_uring_usable())")
        out = subprocess.run(self.stack.argv(*self.stack.python_argv("-c", code)),
                             capture_output=True, text=True, env=self.stack.aiohook_env(),
                             check=True).stdout
        return out.strip() == "True"

    def decisions(self, domain: str) -> list[dict]:
        path = os.path.join(self.logs, "decisions.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            entries = [json.loads(line) for line in fh]
        return [e for e in entries if e.get("domain") == domain]

    def define(self, name: str, disks: list[tuple[str, str, str]]) -> None:
        """disks: (type file|block, path, driver attributes)."""
        xml = []
        for i, (kind, path, attrs) in enumerate(disks):
            src = "file" if kind == "file" else "dev"
            xml.append(f"<disk type='{kind}' device='disk'><driver name='qemu' type='raw'"
                       f"{attrs}/><source {src}='{path}'/>"
                       f"<target dev='vd{chr(97 + i)}' bus='virtio'/></disk>")
        self.lv.define(self.lv.domain_xml(name, "\n".join(xml)))

    def virsh(self, *args: str, check: bool = True):
        return self.lv.virsh(*args, check=check, timeout=180)

    def xml(self, name: str, inactive: bool = False) -> str:
        args = ["dumpxml", "--inactive", name] if inactive else ["dumpxml", name]
        return self.virsh(*args).stdout.decode()


@pytest.fixture(scope="module")
def host(stack):
    from aiohook.lab.storage import LabUnavailable, StorageLab

    lv = stack
    hooks_dir = stack.hooks_dir
    saved = snapshot_tree(hooks_dir)
    work = tempfile.mkdtemp(prefix="aiohook-test-hook-", dir="/var/tmp")
    os.chmod(work, 0o755)  # QEMU runs as libvirt-qemu and must reach the images
    h = Host(lv, work)
    lab = StorageLab(os.path.join(work, "lab"))
    try:
        lab.__enter__()
        try:
            h.prealloc = lab.make("raw-preallocated").path
            h.sparse = lab.make("raw-sparse").path
            h.block = lab.make("loop-block").path
        except LabUnavailable as exc:
            pytest.skip(str(exc))
        os.chmod(lab.workdir, 0o755)
        out = h.aiohook("install", "--config-dir", h.config).stdout
        assert "qemu.d/50-aiohook" in out and "restart" in out
        lv.restart_libvirtd()
        yield h
    finally:
        lv.cleanup_test_domains()
        stack.aiohook("uninstall", check=False)
        restore_tree(hooks_dir, saved)
        lv.restart_libvirtd()
        lab.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        assert snapshot_tree(hooks_dir) == saved


def test_status_sees_the_installed_hook(host):
    done = host.aiohook("status", "--format", "json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads(done.stdout)
    assert info["installed"] and info["hook"] == f"{HOOKS_DIR}/qemu.d/50-aiohook"
    assert info["hook"] in info["libvirt_runs"]
    assert info["config_dir"] == host.config and info["problems"] == []
    python = host.stack.python_argv()[0]
    assert os.path.samefile(host.stack.path(info["interpreter"]), host.stack.path(python))


def test_refuse_blocks_virsh_start_with_aiohooks_message(host):
    name = host.lv.unique_name("refuse")
    host.settings("enforce: refuse\n")
    host.define(name, [("file", host.prealloc, ""), ("file", host.sparse, " io='threads'")])
    done = host.virsh("start", name, check=False)
    err = done.stderr.decode()
    assert done.returncode != 0
    assert f"aiohook: refusing to start {name} (enforce: refuse): 1 disk(s)" in err
    assert f"vda ({host.prealloc}): io=unset (threads) cache=unset -> wanted io=native " \
           f"cache=none (rule " in err
    assert f"aiohook apply {name}" in err
    assert host.virsh("domstate", name).stdout.decode().strip() == "shut off"
    assert host.decisions(name)[-1]["outcome"] == "refused"


def test_warn_starts_and_logs_the_line(host):
    name = host.lv.unique_name("warn")
    host.settings("enforce: warn\n")
    host.define(name, [("file", host.prealloc, "")])
    done = host.virsh("start", name, check=False)
    assert done.returncode == 0, done.stderr
    entry = [e for e in host.decisions(name) if e["op"] == "prepare"][-1]
    assert entry["outcome"] == "warned" and f"aiohook apply {name}" in entry["message"]
    assert entry["disks"][0]["io"] == {"before": None, "after": "native"}
    host.virsh("destroy", name)


def test_on_error_through_libvirtd(host):
    name = host.lv.unique_name("onerror")
    host.define(name, [("file", host.sparse, "")])
    host.settings("rules: missing-rules.yaml\non_error: refuse\n")
    done = host.virsh("start", name, check=False)
    err = done.stderr.decode()
    assert done.returncode != 0
    assert f"aiohook: refusing the start of {name} (on_error: refuse)" in err
    assert "missing-rules.yaml: no such file" in err
    host.settings("rules: missing-rules.yaml\non_error: allow\n")
    done = host.virsh("start", name, check=False)
    assert done.returncode == 0, done.stderr
    assert host.decisions(name)[-1]["outcome"] == "error-allowed"
    host.virsh("destroy", name)


def test_apply_then_start_runs_qemu_with_native_aio(host):
    name = host.lv.unique_name("apply")
    host.settings("enforce: warn\n")
    host.define(name, [("file", host.prealloc, ""), ("block", host.block, ""),
                       ("file", host.sparse, "")])
    before = host.xml(name, inactive=True)

    dry = host.aiohook("apply", "--connect", URI, "--dry-run", name).stdout
    assert "+" in dry and "io='native'" in dry and "(dry run)" in dry
    assert host.xml(name, inactive=True) == before

    # Running: only the persistent config changes, and aiohook says so.
    assert host.virsh("start", name).returncode == 0
    out = host.aiohook("apply", "--connect", URI, name).stdout
    # the sparse disk moves to io_uring where this host can run it (rule sparse-image)
    uring = host.io_uring_usable()
    assert f"{name}: defined with {3 if uring else 2} disk(s) changed" in out
    assert "only its persistent config changed" in out
    assert "io='native'" not in host.xml(name)  # the live domain is untouched
    persistent = host.xml(name, inactive=True)
    assert persistent.count("io='native'") == 2 and persistent.count("cache='none'") == 2
    host.virsh("destroy", name)

    # The next start is compliant, even under refuse, and QEMU gets aio=native.
    host.settings("enforce: refuse\n")
    log = host.stack.path(f"/var/log/libvirt/qemu/{name}.log")
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    done = host.virsh("start", name, check=False)
    assert done.returncode == 0, done.stderr
    with open(log, "rb") as fh:
        fh.seek(offset)
        cmdline = fh.read().decode("utf-8", "replace")
    assert cmdline.count('"aio":"native"') == 2, cmdline[-3000:]
    assert f'"filename":"{host.sparse}","aio":"native"' not in cmdline
    if uring:
        assert f'"filename":"{host.sparse}","aio":"io_uring"' in cmdline, cmdline[-3000:]
    assert host.xml(name).count("io='native'") == 2
    assert host.decisions(name)[-1]["outcome"] == "compliant"
    again = host.aiohook("apply", "--connect", URI, name).stdout
    assert f"{name}: unchanged (already as the rules want)" in again
    host.virsh("destroy", name)


def test_save_and_restore_rewrites_io(host):
    name = host.lv.unique_name("restore")
    host.settings("enforce: warn\n")
    host.define(name, [("file", host.prealloc, "")])
    assert host.virsh("start", name).returncode == 0
    assert "io='native'" not in host.xml(name)
    save = os.path.join(host.work, f"{name}.save")
    try:
        host.virsh("save", name, save)
        done = host.virsh("restore", save, check=False)
        assert done.returncode == 0, done.stderr
        live = host.xml(name)
        assert "cache='none' io='native'" in live
        entry = [e for e in host.decisions(name) if e["op"] == "restore"][-1]
        assert entry["outcome"] == "rewritten"
        # restore starts QEMU through prepare too: now compliant
        assert host.decisions(name)[-1]["outcome"] == "compliant"
    finally:
        host.virsh("destroy", name, check=False)
        if os.path.exists(save):
            os.unlink(save)
