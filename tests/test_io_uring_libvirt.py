"""aiohook's io_uring verdict against a real start, on both stacks (issue 9, section 5).

For kernel.io_uring_disabled = 0, 1 and 2 (restored afterwards), a domain with
io='io_uring' is started by the stack's libvirtd (no hook involved), and one read
is made through HMP qemu-io. Its outcome is one of: "io_uring" (ran, no fallback
line), "fallback" (QEMU logged "Unable to use linux io_uring, falling back to
thread pool") or "fails" (the start failed: QEMU < 9 sets io_uring up at open,
QEMU >= 10.2 refuses at open too). aiohook must never say io_uring is usable
where the outcome is not "io_uring".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from test_budget_shapes import disk

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

SYSCTL = "/proc/sys/kernel/io_uring_disabled"
URING_FALLBACK = "Unable to use linux io_uring, falling back to thread pool"
QEMU = "/usr/bin/qemu-system-x86_64"


@pytest.fixture(scope="module")
def image(stack):
    d = tempfile.mkdtemp(prefix="aiohook-uring-", dir="/var/tmp")
    os.chmod(d, 0o755)
    path = os.path.join(d, "u.raw")
    subprocess.run(["fallocate", "-l", "8M", path], check=True)
    os.chmod(path, 0o666)
    yield path
    stack.cleanup_test_domains()
    shutil.rmtree(d, ignore_errors=True)


def verdict(stack) -> tuple[bool, str]:
    """aiohook's answer, by the stack's Python against the stack's QEMU, and the
    safety check's reason when it says no."""
    code = ("from aiohook.probe.linux import LinuxProbe\n"
            "from aiohook.policy.safety import _io_uring_why\n"
            f"h = LinuxProbe().host_facts({QEMU!r})\n"
            "print(h.io_uring_usable(), _io_uring_why(h))")
    out = subprocess.run(stack.argv(*stack.python_argv("-c", code)), capture_output=True,
                         text=True, env=stack.aiohook_env(), check=True).stdout.strip()
    usable, why = out.split(" ", 1)
    return usable == "True", why


def outcome(stack, image) -> tuple[str, str]:
    import libvirt_env as env

    name = env.unique_name("uring")
    stack.define(env.domain_xml(name, disk(image, "vda", "io_uring")))
    try:
        started = stack.virsh("start", name, check=False)
        if started.returncode != 0:
            return "fails", started.stderr.decode().strip().splitlines()[-1]
        stack.hmp(name, 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "read 0 4k"')
        log = stack.domain_log(name)
        if URING_FALLBACK in log:
            return "fallback", next(line for line in log.splitlines() if URING_FALLBACK in line)
        return "io_uring", ""
    finally:
        stack.destroy_and_undefine(name)


@pytest.mark.parametrize("disabled", ["0", "1", "2"])
def test_io_uring_verdict_matches_a_real_start(stack, image, disabled, record_property):
    import libvirt_env as env

    if not os.path.exists(SYSCTL):
        pytest.skip("kernel.io_uring_disabled missing: this kernel is older than 6.6")
    with env.sysctl(SYSCTL, disabled):
        usable, why = verdict(stack)
        result, detail = outcome(stack, image)
    line = (f"[{stack.name} QEMU {stack.qemu_version}] io_uring_disabled={disabled}: aiohook says "
            f"{'usable' if usable else 'not usable ' + why}; a real start: {result} {detail}")
    print(line)
    record_property("io_uring", line)
    if usable:
        assert result == "io_uring", line
    if disabled == "0":  # nothing forbids it here, and both QEMUs are built with liburing
        assert usable and result == "io_uring", line
