"""Plan a domain: parse, probe, classify, decide. The document stays as read; the
plan's decisions give its edits (DomainPlan.edits), applied when serializing."""

from __future__ import annotations

from aiohook.classify import classify
from aiohook.facts import DiskFacts, SourceRequest
from aiohook.policy.engine import decide
from aiohook.probe import DEFAULT_PROBE_BUDGET_S
from aiohook.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aiohook.domxml import DomainDocument
    from aiohook.facts import HostFacts, SourceFacts, VolumeTarget
    from aiohook.policy.engine import Decision
    from aiohook.policy.ruleset import Ruleset
    from aiohook.probe import Probe


class DiskPlan(Record):
    FIELDS = ("facts", "decision", "line")

    def __init__(self, facts: DiskFacts, decision: Decision, line: int | None = None):
        self.facts = facts
        self.decision = decision
        self.line = line

    def to_json(self) -> dict:
        f, d = self.facts, self.decision
        return {
            "target": f.target,
            "device": f.device,
            "type": f.type,
            "source": f.source,
            "class": f.disk_class,
            "class_reason": f.class_reason,
            "facts": f.to_dict(),
            "io": {"before": d.io_before, "after": d.io_after},
            "cache": {"before": d.cache_before, "after": d.cache_after},
            "rule": d.rule,
            "changed": d.changed,
            "reason": d.reason,
        }


class DomainPlan(Record):
    FIELDS = ("name", "file", "document", "host", "disks", "skipped", "aio")

    def __init__(self, name: str, file: str, document: DomainDocument, host: HostFacts,
                 disks: list[DiskPlan] | None = None, skipped: bool = False,
                 aio: dict | None = None):
        self.name = name
        self.file = file
        self.document = document
        self.host = host
        self.disks = [] if disks is None else disks
        self.skipped = skipped
        self.aio = aio  # the AIO demand of the rewritten domain (budget), for reports

    @property
    def changed(self) -> bool:
        return any(d.decision.changed for d in self.disks)

    @property
    def edits(self) -> dict[int, dict[str, str | None]]:
        """What the decisions change: {disk index: {"cache": ..., "io": ...}}
        (aiohook.domxml.document's edits; a value None removes the attribute)."""
        return {i: {"cache": d.decision.cache_after, "io": d.decision.io_after}
                for i, d in enumerate(self.disks) if d.decision.changed}

    def rewritten(self, edits: dict | None = None) -> bytes:
        """The domain XML as aiohook rewrites it: with the plan's edits, or with `edits`."""
        return self.document.serialize(self.edits if edits is None else edits)

    def to_json(self) -> dict:
        out = {
            "name": self.name,
            "file": self.file,
            "changed": self.changed,
            "skipped": self.skipped,
            "host": self.host.to_dict(),
            "disks": [d.to_json() for d in self.disks],
        }
        if self.aio is not None:
            out["aio"] = self.aio
        return out


def plan_xml(data: bytes, file: str, ruleset: Ruleset, probe: Probe, *,
             budget_s: float = DEFAULT_PROBE_BUDGET_S, explain: bool = False) -> DomainPlan:
    from aiohook.domxml import parse_domain

    return plan_document(parse_domain(data, file), ruleset, probe, budget_s=budget_s,
                         explain=explain)


def plan_document(doc: DomainDocument, ruleset: Ruleset, probe: Probe, *,
                  budget_s: float = DEFAULT_PROBE_BUDGET_S, explain: bool = False) -> DomainPlan:
    overrides = doc.overrides()
    disks = doc.disks()
    name = doc.name
    requests, volumes = source_requests(disks, probe)
    sources = probe.source_facts(list(requests.values()), budget_s) if requests else {}
    host = probe.host_facts(doc.emulator)
    plan = DomainPlan(name, doc.source, doc, host, skipped=overrides.skip)
    for i, disk in enumerate(disks):
        volume = volumes.get(i)
        path = volume.path if volume is not None else disk.source_path
        source = sources.get(path) if path and disk.type in ("file", "block", "volume") else None
        facts = disk_facts(name, disk, source, volume)
        decision = decide(facts, host, ruleset, pin=overrides.pins.get(facts.target or ""),
                          skip=overrides.skip, explain=explain)
        plan.disks.append(DiskPlan(facts, decision, disk.sourceline))
    return plan


def source_requests(disks, probe: Probe) -> tuple[dict[str, SourceRequest], dict[int, VolumeTarget]]:
    """The host paths to probe (one request per path) and each volume disk's resolution."""
    volumes: dict[int, VolumeTarget] = {}
    requests: dict[str, SourceRequest] = {}
    for i, disk in enumerate(disks):
        path = disk.source_path if disk.type in ("file", "block") else None
        if disk.type == "volume" and disk.volume:
            volumes[i] = probe.resolve_volume(*disk.volume)
            if volumes[i].kind in ("file", "block"):
                path = volumes[i].path
        if path:
            requests.setdefault(path, SourceRequest(path, disk.format))
    return requests, volumes


def disk_facts(domain: str, disk, source: SourceFacts | None,
               volume: VolumeTarget | None) -> DiskFacts:
    disk_class, reason = classify(disk.type, disk.has_source, source, volume)
    if disk.type == "network":
        shown = f"{disk.protocol}:{disk.network_name}" if disk.network_name else disk.protocol
    elif disk.type == "volume" and disk.volume:
        shown = "/".join(disk.volume)
    else:
        shown = disk.source_path
    extra = {"resolved_volume": volume.path} if volume is not None and volume.path else {}
    return DiskFacts(
        domain=domain,
        target=disk.target,
        type=disk.type,
        device=disk.device,
        bus=disk.bus,
        format=disk.format,
        source=shown,
        protocol=disk.protocol or (volume.protocol if volume else None),
        iothread=disk.iothread,
        cache=disk.cache,
        io=disk.io,
        readonly=disk.readonly,
        shareable=disk.shareable,
        disk_class=disk_class,
        class_reason=reason,
        host=source,
        extra=extra,
    )
