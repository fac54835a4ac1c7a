"""`aiohook facts`: probe this host for every source the domains use, as recorded facts."""

from __future__ import annotations

from aiohook.domxml import parse_domain
from aiohook.planner import source_requests
from aiohook.probe import DEFAULT_PROBE_BUDGET_S
from aiohook.probe.recorded import dump_facts


def collect_facts(inputs: list[tuple[str, bytes]], probe) -> str:
    """inputs: (label, XML bytes). The host facts are those of the first domain's emulator."""
    sources, volumes, host = {}, {}, None
    for label, data in inputs:
        doc = parse_domain(data, label)
        disks = doc.disks()
        requests, resolved = source_requests(disks, probe)
        sources.update(probe.source_facts(list(requests.values()), DEFAULT_PROBE_BUDGET_S))
        for index, target in resolved.items():
            volumes[disks[index].volume] = target
        if host is None:
            host = probe.host_facts(doc.emulator)
    if host is None:
        host = probe.host_facts(None)
    return dump_facts(host, sources, volumes)
