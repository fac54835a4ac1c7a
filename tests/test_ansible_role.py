"""The Ansible role deploy/ansible/roles/aiohook, run with ansible from PyPI (the test
extra) through deploy/ansible/site.yml:

- against a private copy of the modern chroot stack, through the
  community.general.chroot connection: install from the .deb, settings and site
  rules checked (lint, the site's rule suite) before they are activated, a refused
  change, fs.aio-max-nr from `aiohook doctor`, a libvirtd restart only when the
  hook is new and allowed, and a second run that changes nothing. In the copy,
  /proc/sys/fs/aio-max-nr is a bind-mounted scratch file, so the role's sysctl
  write never reaches the host's kernel; no libvirtd runs there (the restart is a
  command that leaves a mark);
- against this host in check mode, which changes nothing: the package would be
  installed, and the site's rules are really checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from paths import standalone_suite
from test_package_deb import CHECKOUT, HOOK, build_deb, chroot_copy

ANSIBLE_DIR = os.path.join(CHECKOUT, "deploy", "ansible")
PLAYBOOK = os.path.join(ANSIBLE_DIR, "site.yml")
CONSERVATIVE = os.path.join(CHECKOUT, "aiohook", "profiles", "conservative.yaml")
DEFAULT_RULES = os.path.join(CHECKOUT, "aiohook", "rules.yaml")
SHADOWED = os.path.join(CHECKOUT, "tests", "lint_fixtures", "shadowed.yaml")
# the role copies a suite directory alone: a self-contained copy of the conservative suite
SUITE = standalone_suite("conservative", Path(tempfile.gettempdir()) / f"aiohook-suite-{os.getuid()}")
RESTARTS = "/var/tmp/libvirtd-restarts"  # inside the chroot
AIO_MAX_NR = "/proc/sys/fs/aio-max-nr"


def ansible_playbook() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(path):
        path = shutil.which("ansible-playbook") or ""
    if not path:
        pytest.skip("ansible-playbook missing: pip install -e '.[test]' (make test does)")
    return path


class Run:
    def __init__(self, done: subprocess.CompletedProcess, host: str):
        self.rc = done.returncode
        self.out = done.stdout + done.stderr
        match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", done.stdout, re.MULTILINE)
        self.recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))} \
            if match else {}

    def __repr__(self) -> str:
        errors = [line[:1500] for line in self.out.splitlines()
                  if line.startswith(("fatal:", "[ERROR]", "ERROR!"))]
        return f"rc={self.rc} recap={self.recap}\n" + "\n".join(errors or [self.out[-4000:]])


def playbook(tmp_path, inventory: str, host: str, extra: dict, *flags: str) -> Run:
    work = tmp_path / f"ansible-{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    (work / "inventory.ini").write_text(inventory)
    (work / "vars.json").write_text(json.dumps(extra))
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(work), "ANSIBLE_HOME": str(work / "home"),
           "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_REMOTE_TEMP": str(work / "remote-tmp"),
           "ANSIBLE_CONFIG": os.path.join(ANSIBLE_DIR, "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "0",
           "ANSIBLE_PIPELINING": "1", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([ansible_playbook(), "-i", str(work / "inventory.ini"), PLAYBOOK,
                           "-e", f"@{work / 'vars.json'}", *flags], capture_output=True,
                          text=True, env=env, cwd=ANSIBLE_DIR, timeout=900, check=False)
    return Run(done, host)


@pytest.fixture(scope="module")
def deb():
    return build_deb()


# ---------------------------------------------------------------- the chroot


def native_domain(name: str) -> str:
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/vg0/{name}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""


@pytest.fixture(scope="module")
def hv():
    """The chroot copy, with two defined domains that take 1024 AIO events each and a
    scratch file standing in for fs.aio-max-nr (1024, so doctor wants more)."""
    ansible_playbook()
    host_limit = open(AIO_MAX_NR).read()
    with chroot_copy("ansible") as root:
        for name in ("db-1", "web-1"):
            with open(root.path(f"/etc/libvirt/qemu/{name}.xml"), "w") as fh:
                fh.write(native_domain(name))
        fake = root.path("/var/tmp/fake-aio-max-nr")
        with open(fake, "w") as fh:
            fh.write("1024\n")
        target = root.path(AIO_MAX_NR)
        subprocess.run(["mount", "--bind", fake, target], check=True, capture_output=True)
        try:
            # the copy's /proc is a private mount: nothing propagates back to the host
            assert open(AIO_MAX_NR).read() == host_limit
            assert open(target).read() == "1024\n"
            root.fake_limit = fake
            root.inventory = (f"[hypervisors]\nhv-chroot ansible_host={root.root} "
                              "ansible_connection=community.general.chroot "
                              "ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n")
            yield root
        finally:
            subprocess.run(["umount", target], capture_output=True)
            assert open(AIO_MAX_NR).read() == host_limit


def site_vars(deb: str, **more) -> dict:
    return {"aiohook_deb": deb, "aiohook_settings": {"enforce": "refuse",
                                                     "budget": {"reserve_events": 2048}},
            "aiohook_rules_file": CONSERVATIVE, "aiohook_test_suites": [SUITE],
            "aiohook_restart_libvirtd": True,
            "aiohook_libvirtd_restart_command": ["sh", "-c", f"echo restarted >> {RESTARTS}"],
            "aiohook_set_aio_max_nr": True, **more}


def restarts(root) -> int:
    path = root.path(RESTARTS)
    return len(open(path).readlines()) if os.path.exists(path) else 0


@pytest.fixture(scope="module")
def first_run(hv, deb, tmp_path_factory):
    run = playbook(tmp_path_factory.mktemp("first"), hv.inventory, "hv-chroot", site_vars(deb))
    assert run.rc == 0 and run.recap.get("failed") == 0, run
    return run


def test_first_run_installs_the_package_settings_and_rules(hv, first_run):
    assert first_run.recap["changed"] > 0
    status = hv.run("dpkg-query", "-W", "-f=${Status}", "aiohook").stdout.decode()
    assert status == "install ok installed"
    assert "# aiohook-launcher: 1" in hv.read(HOOK)
    settings = hv.read("/etc/aiohook/aiohook.yaml")
    assert "managed by Ansible" in settings and "enforce: refuse" in settings
    with open(CONSERVATIVE) as fh:
        assert hv.read("/etc/aiohook/rules.yaml") == fh.read()
    assert "suites: 88 passed, 0 failed" in first_run.out
    info = json.loads(hv.run("aiohook", "status", "--format", "json").stdout)
    assert info["settings"]["enforce"] == "refuse"
    assert info["settings"]["budget"]["reserve_events"] == 2048
    assert info["rules_file"] == "/etc/aiohook/rules.yaml" and "rules_error" not in info
    assert not [p for p in os.listdir("/tmp") if p.endswith(".aiohook")]


def test_first_run_restarts_libvirtd_once_because_the_hook_is_new(hv, first_run):
    assert restarts(hv) == 1


def test_first_run_sets_aio_max_nr_from_doctor(hv, first_run):
    # 2 domains x 1024 events + 2048 reserve + what other AIO users hold: one 64 Ki step
    report = json.loads(hv.run("aiohook", "doctor", "--format", "json", check=False).stdout)
    assert report["aio_max_nr"] == 65536 and report["needed"] <= 65536
    assert open(hv.fake_limit).read().strip() == "65536"
    assert "\nfs.aio-max-nr = 65536\n" in hv.read("/etc/sysctl.d/60-aiohook.conf")


def test_second_run_changes_nothing(hv, deb, first_run, tmp_path):
    run = playbook(tmp_path, hv.inventory, "hv-chroot", site_vars(deb))
    assert run.rc == 0 and run.recap["changed"] == 0 and run.recap["failed"] == 0, run
    assert restarts(hv) == 1


@pytest.mark.parametrize("rules, why", [
    (DEFAULT_RULES, "the new rules fail the site's suites, nothing was activated"),
    (SHADOWED, "aiohook rules lint refused the new rules, nothing was activated"),
], ids=["suite-fails", "lint-fails"])
def test_a_change_that_fails_the_checks_is_refused(hv, deb, first_run, tmp_path, rules, why):
    before = hv.read("/etc/aiohook/rules.yaml"), hv.read("/etc/aiohook/aiohook.yaml")
    run = playbook(tmp_path, hv.inventory, "hv-chroot",
                   site_vars(deb, aiohook_rules_file=rules,
                             aiohook_settings={"enforce": "warn"}))
    assert run.rc != 0 and run.recap["failed"] == 1, run
    assert why in run.out
    assert (hv.read("/etc/aiohook/rules.yaml"), hv.read("/etc/aiohook/aiohook.yaml")) == before
    assert not [p for p in os.listdir("/tmp") if p.endswith(".aiohook")]


def test_invalid_settings_are_refused(hv, deb, first_run, tmp_path):
    before = hv.read("/etc/aiohook/aiohook.yaml")
    run = playbook(tmp_path, hv.inventory, "hv-chroot",
                   site_vars(deb, aiohook_settings={"enforce": "sometimes"}))
    assert run.rc != 0 and "aiohook refuses the new settings, nothing was activated" in run.out
    assert hv.read("/etc/aiohook/aiohook.yaml") == before


def test_from_the_sites_apt_repository_a_new_hook_without_permission_is_only_reported(
        hv, deb, first_run, tmp_path):
    """A repository (here a flat file: one) instead of the .deb; the hook is new again,
    but the operator did not allow a restart: the role says so and restarts nothing."""
    hv.run("dpkg", "--purge", "aiohook")
    repo = hv.path("/var/tmp/aiohook-repo")
    os.makedirs(repo)
    shutil.copy(deb, repo)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo,
                              capture_output=True, check=True).stdout
    with open(os.path.join(repo, "Packages"), "wb") as fh:
        fh.write(packages)
    source = {"aiohook_deb": "", "aiohook_restart_libvirtd": False,
              "aiohook_apt_repository": "deb [trusted=yes] file:/var/tmp/aiohook-repo ./"}
    run = playbook(tmp_path, hv.inventory, "hv-chroot", site_vars(deb, **source))
    assert run.rc == 0 and run.recap["failed"] == 0, run
    assert "aiohook's hook is new to libvirtd, which finds hooks only when it starts" in run.out
    assert restarts(hv) == 1
    status = hv.run("dpkg-query", "-W", "-f=${Status}", "aiohook").stdout.decode()
    assert status == "install ok installed"
    again = playbook(tmp_path, hv.inventory, "hv-chroot", site_vars(deb, **source))
    assert again.rc == 0 and again.recap["changed"] == 0, again


# ---------------------------------------------------------------- this host, in check mode


def host_state() -> dict:
    """What the role could change here. fs.aio-max-nr is left out: other suites change it
    under the host lock (the role's write, a command, never runs in check mode:
    skipped_writes() shows it)."""
    def listing(top):
        out = {}
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return out

    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "aiohook"], capture_output=True,
                          text=True, check=False).stdout
    return {"aiohook": listing("/etc/aiohook"), "hooks": listing("/etc/libvirt/hooks"),
            "sysctl.d": listing("/etc/sysctl.d"), "deploy": listing("/var/cache/aiohook-deploy"),
            "dpkg": dpkg,
            "staging": sorted(p for p in os.listdir("/tmp") if p.endswith(".aiohook"))}


def skipped_writes(run: Run) -> list[str]:
    """The tasks that write with a command, and whether check mode ran them."""
    out = []
    for task in ("Raise fs.aio-max-nr to aiohook doctor's recommendation",
                 "Restart libvirtd with the site's command so that it finds the new hook"):
        match = re.search(rf"TASK \[aiohook : {re.escape(task)}\][^\n]*\n(\S+)", run.out)
        out.append(f"{task}: {match.group(1) if match else 'not run'}")
    return out


LOCAL = ("[hypervisors]\nlocalhost ansible_connection=local "
         "ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n")


def local_vars(deb: str, **more) -> dict:
    # the package isn't installed here: the checks run with this checkout's aiohook
    return {**site_vars(deb), "aiohook_command": os.path.join(os.path.dirname(sys.executable),
                                                              "aiohook"), **more}


def test_check_mode_on_this_host_checks_the_rules_and_changes_nothing(deb, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("not root: the role's checks read root's files")
    before = host_state()
    run = playbook(tmp_path, LOCAL, "localhost", local_vars(deb), "--check", "--diff")
    assert run.rc == 0 and run.recap["failed"] == 0, run
    assert run.recap["changed"] > 0  # the package would be installed
    assert "suites: 88 passed, 0 failed" in run.out
    assert host_state() == before
    assert skipped_writes(run) == [
        "Raise fs.aio-max-nr to aiohook doctor's recommendation: skipping:",
        "Restart libvirtd with the site's command so that it finds the new hook: skipping:"]


def test_check_mode_on_this_host_refuses_rules_that_fail_the_suite(deb, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("not root: the role's checks read root's files")
    before = host_state()
    run = playbook(tmp_path, LOCAL, "localhost", local_vars(deb, aiohook_rules_file=DEFAULT_RULES),
                   "--check")
    assert run.rc != 0 and "the new rules fail the site's suites" in run.out, run
    assert host_state() == before
