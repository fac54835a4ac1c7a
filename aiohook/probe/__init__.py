"""Host probes behind one interface.

`LinuxProbe` (probe/linux.py) asks the running host: source paths through
probe/sources.py, the kernel and the QEMU/libvirt binaries through
probe/host.py (the one reader of host facts: the budget and calibrate ask it
too), volumes through probe/pools.py. `RecordedProbe` (probe/recorded.py)
answers from a facts YAML file written by `aiohook facts`.
The policy never imports this package: it only sees DiskFacts/HostFacts.
"""

from __future__ import annotations

DEFAULT_PROBE_BUDGET_S = 2.0  # total wall time for all probes of one domain


def make_probe(facts_path: str | None = None):
    """The recorded facts at `facts_path` when given, else this host."""
    if facts_path:
        from aiohook.probe.recorded import RecordedProbe

        return RecordedProbe(facts_path)
    from aiohook.probe.linux import LinuxProbe

    return LinuxProbe()


def __getattr__(name: str):
    """`Probe` (aiohook.probe.protocol) is imported on first use: it needs typing."""
    if name == "Probe":
        from aiohook.probe.protocol import Probe

        return Probe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
