"""Real libvirt stacks for the tests, each started when missing, all under one host lock.

Two stacks share this machine's kernel, and so one fs.aio-nr:

- ``host``: the machine's own libvirt 9.0 / QEMU 7.2 (Debian 12);
- ``modern``: libvirt 11.x / QEMU 10.x from bookworm-backports in a chroot
  (built by tests/stacks/build-modern.sh, cached under /var/cache/aiohook),
  with its own virtlogd and libvirtd, a tmpfs /run, and the checkout, /tmp and
  /var/tmp bind-mounted at the same paths (shared storage for migration).

Tests that touch a libvirtd, /etc/libvirt/hooks or host sysctls hold HOST_LOCK
for their whole duration (conftest.py's session fixtures do), so two suites or
two developers never change the host under each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid

from paths import ROOT

HOST_LOCK = "/run/aiohook-tests.lock"
DOMAIN_PREFIX = "aiohook-test-"
QEMU_BIN = "/usr/bin/qemu-system-x86_64"
CHECKOUT = str(ROOT)
MODERN_ROOT = os.environ.get("AIOHOOK_MODERN_ROOT", "/var/cache/aiohook/stack-modern")
QEMU_UID = 64055  # libvirt-qemu on both stacks (Debian's fixed uid)
STACKS = ("host", "modern")
GUEST_DIR = os.environ.get("AIOHOOK_GUEST_DIR", "/var/cache/aiohook/guest")
GUEST_DONE = "AIOHOOK-GUEST-READ-ALL-DONE"


def snapshot_tree(top: str) -> dict:
    """Every entry under top, top included: path -> (kind, mode, content or link target).
    Empty when top does not exist."""
    if not os.path.lexists(top):
        return {}
    paths = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return {path: _entry(path) for path in paths}


def _entry(path: str) -> tuple | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return ("link", st.st_mode, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", st.st_mode, None)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            return ("file", st.st_mode, fh.read())
    return ("other", st.st_mode, None)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def restore_tree(top: str, saved: dict) -> None:
    """Put top back as snapshot_tree saw it: what was made since is removed (top too,
    when it did not exist), what changed or went is rewritten with its mode. Links are
    not chmod-ed (that would change their target); other kinds (fifos...) are left."""
    now = snapshot_tree(top)
    for path in sorted(set(now) - set(saved), key=len, reverse=True):
        _remove(path)
    for path, (kind, mode, content) in sorted(saved.items(), key=lambda kv: len(kv[0])):
        current = _entry(path)
        if current == (kind, mode, content) or kind == "other":
            continue
        if current is not None and current[0] != kind:
            _remove(path)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "link":
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(content, path)
            continue
        else:
            with open(path, "wb") as fh:
                fh.write(content)
        os.chmod(path, stat.S_IMODE(mode))


class Unavailable(Exception):
    """A stack can't be used here; the message names what is missing."""


def run(*argv: str, check: bool = True, timeout: float = 120, input: bytes | None = None,
        env: dict | None = None):
    return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=check,
                          input=input, env=env)


@contextlib.contextmanager
def host_lock():
    fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def unique_name(tag: str) -> str:
    return f"{DOMAIN_PREFIX}{tag}-{uuid.uuid4().hex[:6]}"


def domain_xml(name: str, disks_xml: str, *, iothreads: int = 0, extra_devices: str = "",
               memory_mib: int = 32, vcpus: int = 1, os_xml: str = "", features: str = "",
               domain_type: str = "qemu") -> str:
    """A type='qemu' domain (no /dev/kvm needed); no guest OS unless os_xml is given."""
    iot = f"<iothreads>{iothreads}</iothreads>" if iothreads else ""
    boot = os_xml or ("<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>")
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  {iot}
  {boot}
  {features}
  <devices>
    <emulator>{QEMU_BIN}</emulator>
    {disks_xml}
    {extra_devices}
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def guest_parts(console: str) -> dict:
    """domain_xml() arguments for the tiny guest (tests/stacks/build-guest.sh) that
    reads every disk once per queue, then idles; its serial console goes to `console`."""
    if not os.path.exists(os.path.join(GUEST_DIR, "stamp")):
        raise Unavailable(f"no test guest at {GUEST_DIR}: run tests/stacks/build-guest.sh "
                          f"{GUEST_DIR} (make test does)")
    os_xml = (f"<os><type arch='x86_64' machine='pc'>hvm</type>"
              f"<kernel>{GUEST_DIR}/vmlinuz</kernel><initrd>{GUEST_DIR}/initrd.img</initrd>"
              f"<cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>")
    serial = (f"<serial type='file'><source path='{console}'/><target port='0'/></serial>"
              f"<console type='file'><source path='{console}'/><target type='serial' port='0'/>"
              f"</console>")
    # TCG by default: this project's machines expose /dev/kvm through PVM, where a stock
    # kernel does not boot; AIOHOOK_GUEST_TYPE=kvm uses KVM where it works.
    return {"os_xml": os_xml, "features": "<features><acpi/><apic/></features>",
            "serial": serial, "memory_mib": 256,
            "domain_type": os.environ.get("AIOHOOK_GUEST_TYPE", "qemu")}


def wait_for_guest(console: str, timeout: float = 90) -> str:
    """Wait until the guest printed that it read every disk; returns its console text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            with open(console, errors="replace") as fh:
                text = fh.read()
        except OSError:
            text = ""
        if GUEST_DONE in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"guest did not finish its reads in {timeout:.0f} s: {text[-2000:]}")


def aio_nr() -> int:
    with open("/proc/sys/fs/aio-nr") as fh:
        return int(fh.read())


@contextlib.contextmanager
def sysctl(path: str, value: str):
    """Set a /proc/sys value for the block's duration and restore it."""
    with open(path) as fh:
        old = fh.read().strip()
    with open(path, "w") as fh:
        fh.write(value)
    try:
        yield old
    finally:
        with open(path, "w") as fh:
            fh.write(old)


def _pids_rooted_at(root: str, comm: str) -> list[int]:
    """Processes named comm whose root directory is root ('/' for the host's own)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() != comm:
                    continue
            if os.path.realpath(os.readlink(f"/proc/{entry}/root")) == os.path.realpath(root):
                out.append(int(entry))
        except OSError:
            continue
    return out


class Stack:
    """One libvirt + QEMU stack: its daemons, its paths as the host sees them, and
    how to run aiohook inside it."""

    def __init__(self, name: str, root: str = "/"):
        self.name = name
        self.root = root
        self.chroot = root != "/"
        sock = os.path.join(root, "run/libvirt/libvirt-sock")
        self.uri = f"qemu+unix:///system?socket={sock}" if self.chroot else "qemu:///system"
        self.qemu_version: str | None = None
        self.libvirt_version: str | None = None

    def __repr__(self) -> str:
        return f"Stack({self.name})"

    unique_name = staticmethod(unique_name)
    domain_xml = staticmethod(domain_xml)

    # -- paths as the host sees them
    def path(self, inside: str) -> str:
        return os.path.join(self.root, inside.lstrip("/")) if self.chroot else inside

    @property
    def hooks_dir(self) -> str:
        return self.path("/etc/libvirt/hooks")

    def domain_log(self, name: str) -> str:
        try:
            with open(self.path(f"/var/log/libvirt/qemu/{name}.log"), errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def qemu_pid(self, name: str) -> int | None:
        try:
            with open(self.path(f"/run/libvirt/qemu/{name}.pid")) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def live_xml_file(self, name: str) -> str:
        return self.path(f"/run/libvirt/qemu/{name}.xml")

    # -- commands inside the stack
    def argv(self, *argv: str) -> list[str]:
        return ["chroot", self.root, *argv] if self.chroot else list(argv)

    def python_argv(self, *args: str) -> list[str]:
        """The stack's own Python (as the stack sees it): Debian's python3 with Debian's
        lxml/yaml/jsonschema in the chroot, the test venv's on the host."""
        return ["/usr/bin/python3" if self.chroot else sys.executable, *args]

    def aiohook_argv(self, *args: str) -> list[str]:
        """aiohook from this checkout, run by the stack's own Python."""
        return self.argv(*self.python_argv("-m", "aiohook", *args))

    def aiohook_env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        if self.chroot:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                   "PYTHONPATH": CHECKOUT}
        env.update(extra or {})
        return env

    def aiohook(self, *args: str, env: dict | None = None, check: bool = True,
                timeout: float = 300, input: bytes | None = None):
        done = subprocess.run(self.aiohook_argv(*args), capture_output=True, timeout=timeout,
                              env=self.aiohook_env(env), input=input, cwd="/")
        if check and done.returncode != 0:
            raise AssertionError(f"[{self.name}] aiohook {args} -> {done.returncode}: "
                                 f"{done.stderr.decode(errors='replace')}")
        return done

    def virsh(self, *args: str, check: bool = True, timeout: float = 120):
        return run("virsh", "-c", self.uri, *args, check=check, timeout=timeout)

    def define(self, xml: str) -> None:
        run("virsh", "-c", self.uri, "define", "/dev/stdin", input=xml.encode())

    def hmp(self, name: str, command: str, check: bool = True):
        return self.virsh("qemu-monitor-command", name, "--hmp", command, check=check)

    def destroy_and_undefine(self, name: str) -> None:
        self.virsh("destroy", name, check=False, timeout=60)
        self.virsh("undefine", name, "--managed-save", "--nvram", check=False, timeout=60)
        self.virsh("undefine", name, check=False, timeout=60)

    def cleanup_test_domains(self) -> None:
        out = self.virsh("list", "--all", "--name", check=False).stdout.decode()
        for name in out.split():
            if name.startswith(DOMAIN_PREFIX):
                self.destroy_and_undefine(name)

    # -- daemons
    def _daemon_pids(self, name: str) -> list[int]:
        return _pids_rooted_at(self.root, name)

    def ensure_running(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("not root: libvirtd tests need root")
        if self.chroot:
            self._mount()
        for tool in ("virsh", "libvirtd", "virtlogd"):
            if not any(os.path.exists(self.path(f"{d}/{tool}")) for d in ("/usr/bin", "/usr/sbin")):
                raise Unavailable(f"[{self.name}] {tool} missing: install libvirt-daemon-system "
                                  "libvirt-clients")
        if not os.path.exists(self.path(QEMU_BIN)):
            raise Unavailable(f"[{self.name}] qemu-system-x86_64 missing: install qemu-system-x86")
        if not self._daemon_pids("virtlogd"):
            run(*self.argv("virtlogd", "-d"))
        if not self._daemon_pids("libvirtd"):
            run(*self.argv("libvirtd", "-d"))
        self.wait()
        ver = self.virsh("version", "--daemon").stdout.decode()
        for line in ver.splitlines():
            if line.startswith("Running hypervisor: QEMU "):
                self.qemu_version = line.split()[-1]
            elif line.startswith("Running against daemon: "):
                self.libvirt_version = line.split()[-1]

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.virsh("version", check=False, timeout=30).returncode == 0:
                    return
            except subprocess.TimeoutExpired:  # the first start probes QEMU capabilities
                pass
            time.sleep(0.2)
        raise Unavailable(f"[{self.name}] libvirtd did not answer within {timeout:.0f} s")

    def restart_libvirtd(self) -> None:
        """libvirtd finds hooks only when it starts. Running domains survive the restart."""
        self._kill("libvirtd")
        run(*self.argv("libvirtd", "-d"))
        self.wait()

    def _kill(self, daemon: str, sig: int = signal.SIGTERM) -> None:
        for pid in self._daemon_pids(daemon):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while self._daemon_pids(daemon) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self._daemon_pids(daemon):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop a chroot stack's daemons and undo its mounts (the host's are left running)."""
        if not self.chroot:
            return
        with contextlib.suppress(Exception):
            self.cleanup_test_domains()
        self._kill("libvirtd")
        self._kill("virtlogd")
        self._umount()

    # -- the chroot's mounts
    def _mounts(self) -> list[tuple[str, list[str]]]:
        """(target inside, mount argv) in mount order."""
        binds = [("/proc", ["--bind", "/proc"]), ("/sys", ["--rbind", "/sys"]),
                 ("/dev", ["--rbind", "/dev"]), ("/run", ["-t", "tmpfs", "-o", "mode=755", "tmpfs"])]
        for shared in (CHECKOUT, "/var/tmp", "/tmp", GUEST_DIR):
            binds.append((shared, ["--rbind", shared]))
        return binds

    def _mounted(self, target: str) -> bool:
        with open("/proc/self/mounts") as fh:
            return any(line.split()[1] == target for line in fh)

    def _mount(self) -> None:
        if not os.path.exists(os.path.join(self.root, ".aiohook-stack")):
            raise Unavailable(f"[{self.name}] no stack at {self.root}: run "
                              f"tests/stacks/build-modern.sh {self.root} (make test does)")
        for inside, args in self._mounts():
            target = self.path(inside)
            if self._mounted(target):
                continue
            os.makedirs(target, exist_ok=True)
            run("mount", *args, target)
            if "--rbind" in args:
                run("mount", "--make-rslave", target)
        for d in ("/run/lock", "/run/libvirt"):
            os.makedirs(self.path(d), exist_ok=True)

    def _umount(self) -> None:
        for inside, _args in reversed(self._mounts()):
            target = self.path(inside)
            for _ in range(3):
                if not self._mounted(target):
                    break
                if run("umount", "-R", target, check=False).returncode != 0:
                    time.sleep(0.5)
            if self._mounted(target):
                run("umount", "-R", "-l", target, check=False)


HOST = Stack("host")
MODERN = Stack("modern", MODERN_ROOT)


def stack(name: str) -> Stack:
    return {"host": HOST, "modern": MODERN}[name]


@contextlib.contextmanager
def kvm_acl():
    """Let libvirt-qemu open /dev/kvm for the block's duration, then put the ACL back.

    Where QEMU's user can't open /dev/kvm, libvirt re-probes QEMU's capabilities on
    almost every call (4-7 s each): a harness quirk of hosts whose /dev/kvm group is
    not the QEMU user's, not something aiohook deals with."""
    if not os.path.exists("/dev/kvm") or shutil.which("setfacl") is None:
        yield False
        return
    before = run("getfacl", "-p", "/dev/kvm", check=False).stdout
    changed = False
    if f"user:{QEMU_UID}:" not in run("getfacl", "-pn", "/dev/kvm", check=False).stdout.decode():
        changed = run("setfacl", "-m", f"u:{QEMU_UID}:rw", "/dev/kvm", check=False).returncode == 0
    try:
        yield changed
    finally:
        if changed:
            run("setfacl", "--set-file=-", "/dev/kvm", input=before, check=False)
