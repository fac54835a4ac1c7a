"""A real libvirtd for the tests: started when missing, shared under one host lock.

Tests that touch libvirtd, /etc/libvirt/hooks or host sysctls hold HOST_LOCK for
their whole duration (the `libvirt_host` fixture in conftest.py does), so two
suites or two developers never change the host under each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import uuid

HOST_LOCK = "/run/aiohook-tests.lock"
DOMAIN_PREFIX = "aiohook-test-"
QEMU_BIN = "/usr/bin/qemu-system-x86_64"


class Unavailable(Exception):
    """libvirt can't be used here; the message names what is missing."""


def run(*argv: str, check: bool = True, timeout: float = 120, input: bytes | None = None):
    return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=check,
                          input=input)


def virsh(*args: str, check: bool = True, timeout: float = 120):
    return run("virsh", "-c", "qemu:///system", *args, check=check, timeout=timeout)


@contextlib.contextmanager
def host_lock():
    fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _running(name: str) -> bool:
    return run("pgrep", "-x", name, check=False).returncode == 0


def ensure_libvirtd() -> None:
    """Start virtlogd and libvirtd by hand (no systemd) and wait until virsh answers."""
    if os.geteuid() != 0:
        raise Unavailable("not root: libvirtd tests need root")
    for tool in ("virsh", "libvirtd", "virtlogd"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise Unavailable(f"{tool} missing: install libvirt-daemon-system libvirt-clients")
    if not os.path.exists(QEMU_BIN):
        raise Unavailable("qemu-system-x86_64 missing: install qemu-system-x86")
    if not _running("virtlogd"):
        run("virtlogd", "-d")
    if not _running("libvirtd"):
        run("libvirtd", "-d")
    wait_for_libvirtd()


def wait_for_libvirtd(timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if virsh("version", check=False, timeout=30).returncode == 0:
                return
        except subprocess.TimeoutExpired:  # the first start probes QEMU capabilities
            pass
        time.sleep(0.2)
    raise Unavailable(f"libvirtd did not answer within {timeout:.0f} s")


def restart_libvirtd() -> None:
    """libvirtd finds hooks only when it starts. Running domains survive the restart."""
    run("pkill", "-x", "libvirtd", check=False)
    deadline = time.monotonic() + 20
    while _running("libvirtd") and time.monotonic() < deadline:
        time.sleep(0.1)
    run("libvirtd", "-d")
    wait_for_libvirtd()


def unique_name(tag: str) -> str:
    return f"{DOMAIN_PREFIX}{tag}-{uuid.uuid4().hex[:6]}"


def domain_xml(name: str, disks_xml: str, *, iothreads: int = 0, extra_devices: str = "",
               memory_mib: int = 32) -> str:
    """A type='qemu' domain (no /dev/kvm needed) with no guest OS."""
    iot = f"<iothreads>{iothreads}</iothreads>" if iothreads else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  {iot}
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>{QEMU_BIN}</emulator>
    {disks_xml}
    {extra_devices}
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def define(xml: str) -> None:
    run("virsh", "-c", "qemu:///system", "define", "/dev/stdin", input=xml.encode())


def destroy_and_undefine(name: str) -> None:
    virsh("destroy", name, check=False, timeout=60)
    virsh("undefine", name, "--managed-save", "--nvram", check=False, timeout=60)
    virsh("undefine", name, check=False, timeout=60)


def cleanup_test_domains() -> None:
    out = virsh("list", "--all", "--name", check=False).stdout.decode()
    for name in out.split():
        if name.startswith(DOMAIN_PREFIX):
            destroy_and_undefine(name)


def qemu_pid(name: str) -> int | None:
    try:
        with open(f"/run/libvirt/qemu/{name}.pid") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


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
