"""The Probe protocol against the running Linux host (see aiohook.probe.Probe).

The work is done in one module per concern:
- probe/sources.py: source paths (O_PATH, fstat, O_DIRECT, mountinfo, sysfs),
  bounded by one deadline per domain;
- probe/host.py: the kernel's sysctls and the QEMU and libvirt binaries;
- probe/pools.py: storage volumes through their pool definitions (lxml,
  imported on first use: the hook's hot path rarely needs it).
"""

from __future__ import annotations

from aiohook.facts import HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe import DEFAULT_PROBE_BUDGET_S
from aiohook.probe.host import (
    AIO_MAX_NR,
    AIO_NR,
    LIBVIRT_DAEMONS,
    BinaryFacts,
    kernel_io_uring,
    read_sysctl_int,
)
from aiohook.probe.sources import probe_sources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class LinuxProbe:
    """Probe protocol against the running host (see aiohook.probe.Probe)."""

    def __init__(
        self,
        pool_dir: str = "/etc/libvirt/storage",
        cache_dir: str | None = None,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        libvirt_daemons: Sequence[str] = LIBVIRT_DAEMONS,
    ):
        self.pool_dir = pool_dir
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.libvirt_daemons = tuple(libvirt_daemons)
        self.binaries = BinaryFacts(cache_dir)

    def source_facts(
        self, requests: Sequence[SourceRequest], budget_s: float = DEFAULT_PROBE_BUDGET_S
    ) -> dict[str, SourceFacts]:
        return probe_sources(requests, budget_s, self.proc_root, self.sys_root)

    def host_facts(self, emulator: str | None) -> HostFacts:
        facts = HostFacts()
        facts.io_uring, _ = kernel_io_uring(self.proc_root)
        facts.aio_max_nr = self._sysctl_int(AIO_MAX_NR)
        facts.aio_nr = self._sysctl_int(AIO_NR)
        qemu = self.binaries.qemu(emulator)
        facts.qemu_version = qemu.get("version")
        facts.qemu_io_uring = qemu.get("liburing")
        facts.libvirt_version = self.binaries.libvirt_version(self.libvirt_daemons)
        return facts

    def _sysctl_int(self, name: str) -> int | None:
        try:
            return read_sysctl_int(name, self.proc_root)
        except (OSError, ValueError):
            return None

    def resolve_volume(self, pool: str, volume: str) -> VolumeTarget:
        from aiohook.probe.pools import resolve_pool_volume

        return resolve_pool_volume(self.pool_dir, pool, volume)
