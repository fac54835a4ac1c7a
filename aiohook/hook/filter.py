"""`migrate begin` (incoming) and `restore begin`: the hook as an XML filter.

libvirt reads stdout as the replacement domain XML here, and only here;
empty output means "unchanged" (docs/facts.md section 1). aiohook changes only
<driver io=... cache=...> (host-side, so libvirt's ABI stability check passes);
the rest of the document is passed through byte for byte (DomainDocument.serialize).

With `enforce: off` the policy's rewrite is skipped. With
`on_budget_exceeded: degrade` the budget feature may then move native disks
to io_uring/threads so the domain fits (aiohook.budget.gate.degrade); with
`refuse`, a domain that would not fit is refused here, before the destination
of a migration starts anything (aiohook.budget.gate.check_incoming).
"""

from __future__ import annotations

import sys
import time

from aiohook.hook import log
from aiohook.hook.prepare import make_plan, probe_failures, unprobed


def rewrite(domain: str, op: str, data: bytes, settings, started: float) -> int:
    plan = make_plan(domain, data, settings, op)
    refusal = probe_failures(domain, op, plan, settings)
    if refusal:
        sys.stderr.write(refusal + "\n")
        log.say(log.ERR, refusal)
        log.record({"domain": domain, "op": op, "subop": "begin", "outcome": "error-refused",
                    "message": refusal, "unprobed": unprobed(plan), "disks": []})
        return 1
    if settings.enforce == "off":
        _undo(plan)
    degraded = degrade(plan, settings) if settings.on_budget_exceeded == "degrade" else []
    if settings.on_budget_exceeded == "refuse":
        from aiohook.budget.gate import check_incoming

        outcome = check_incoming(plan, settings)
        if not outcome.allowed:
            sys.stderr.write(outcome.message.rstrip("\n") + "\n")
            log.say(log.ERR, f"{domain}: {op}: {outcome.message}")
            log.record({"domain": domain, "op": op, "subop": "begin", "outcome": "budget-refused",
                        "message": outcome.message, "disks": log.disk_entries(plan),
                        "ms": round((time.monotonic() - started) * 1000, 1)})
            return 1
    for line in degraded:
        log.say(log.WARNING, f"{domain}: {op}: {line}")
    changed = any(d.decision.changed for d in plan.disks) and settings.enforce != "off"
    output = plan.document.serialize() if (changed or degraded) else b""
    if output and output != data:
        sys.stdout.buffer.write(output)
        outcome = "rewritten"
        for disk in plan.disks:
            if disk.decision.changed:
                from aiohook.hook.prepare import describe

                log.say(log.NOTICE, f"{domain}: {op}: rewrote disk {describe(disk)}")
    else:
        outcome = "unchanged"
    entry = {"domain": domain, "op": op, "subop": "begin", "enforce": settings.enforce,
             "outcome": outcome, "disks": log.disk_entries(plan) if settings.enforce != "off"
             else []}
    if degraded:
        entry["degraded"] = degraded
    entry["ms"] = round((time.monotonic() - started) * 1000, 1)
    log.record(entry)
    return 0


def _undo(plan) -> None:
    """enforce: off: put back io/cache as found, so only a budget degrade can change them."""
    disks = plan.document.disks()
    if len(disks) != len(plan.disks):
        return
    for element, disk in zip(disks, plan.disks):
        d = disk.decision
        if d.changed:
            element.set_driver_attr("cache", d.cache_before)
            element.set_driver_attr("io", d.io_before)


def degrade(plan, settings) -> list[str]:
    try:
        from aiohook.budget.gate import degrade as budget_degrade
    except ModuleNotFoundError as exc:
        if exc.name in ("aiohook.budget", "aiohook.budget.gate"):
            return []
        raise
    return list(budget_degrade(plan, settings) or [])
