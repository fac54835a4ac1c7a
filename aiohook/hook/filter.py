"""`migrate begin` (incoming) and `restore begin`: the hook as an XML filter.

libvirt reads stdout as the replacement domain XML here, and only here;
empty output means "unchanged" (docs/facts.md section 1). aiohook changes only
<driver io=... cache=...> (host-side, so libvirt's ABI stability check passes);
the rest of the document is passed through byte for byte (DomainDocument.serialize).

With `enforce: off` the policy's edits are left out. With
`on_budget_exceeded: degrade` the budget feature may then add edits that move
native disks to io_uring/threads so the domain fits (aiohook.budget.gate.degrade);
with `refuse`, a domain that would not fit is refused here, before the destination
of a migration starts anything (aiohook.budget.gate.check_incoming).
"""

from __future__ import annotations

import sys
import time

from aiohook.budget.gate import check_incoming, degrade
from aiohook.domxml.document import merge_edits
from aiohook.hook import log
from aiohook.hook.planning import describe, make_plan, probe_failures, unprobed


def rewrite(domain: str, op: str, data: bytes, settings, started: float) -> int:
    plan = make_plan(domain, data, settings, op)
    refusal = probe_failures(domain, op, plan, settings)
    if refusal:
        sys.stderr.write(refusal + "\n")
        log.say(log.ERR, refusal)
        log.record({"domain": domain, "op": op, "subop": "begin", "outcome": "error-refused",
                    "message": refusal, "unprobed": unprobed(plan), "disks": []})
        return 1
    edits = plan.edits if settings.enforce != "off" else {}
    degraded = []
    if settings.on_budget_exceeded == "degrade":
        more = degrade(plan, settings, edits)
        edits, degraded = merge_edits(edits, more.edits), more.lines
    if settings.on_budget_exceeded == "refuse":
        outcome = check_incoming(plan, settings, edits)
        if not outcome.allowed:
            sys.stderr.write(outcome.message.rstrip("\n") + "\n")
            log.say(log.ERR, f"{domain}: {op}: {outcome.message}")
            log.record({"domain": domain, "op": op, "subop": "begin", "outcome": "budget-refused",
                        "message": outcome.message, "disks": log.disk_entries(plan),
                        "ms": round((time.monotonic() - started) * 1000, 1)})
            return 1
    for line in degraded:
        log.say(log.WARNING, f"{domain}: {op}: {line}")
    changed = plan.changed and settings.enforce != "off"
    output = plan.rewritten(edits) if (changed or degraded) else b""
    if output and output != data:
        sys.stdout.buffer.write(output)
        outcome = "rewritten"
        for disk in plan.disks:
            if changed and disk.decision.changed:
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
