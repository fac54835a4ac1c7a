"""The interface every probe offers (aiohook.probe.Probe).

Its own module: typing costs the hook ~2 ms to import, and the hook needs the
interface only as a type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohook.facts import HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe import DEFAULT_PROBE_BUDGET_S


class Probe(Protocol):
    def host_facts(self, emulator: str | None) -> HostFacts:
        """Host capabilities for a domain whose <emulator> is `emulator`."""

    def source_facts(
        self, requests: Sequence[SourceRequest], budget_s: float = DEFAULT_PROBE_BUDGET_S
    ) -> dict[str, SourceFacts]:
        """Facts for every requested path, keyed by request path. Never blocks
        longer than budget_s: a path not answered in time gets kind='unknown'
        and error naming the timeout."""

    def resolve_volume(self, pool: str, volume: str) -> VolumeTarget:
        """Resolve <source pool= volume=> through the pool definition."""
