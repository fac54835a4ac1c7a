"""`prepare begin`: compliance per `enforce`, then the AIO budget gate.

libvirt ignores the hook's output here (docs/facts.md section 1): the domain
starts with the XML it has, so aiohook can only let it go on or abort it:
the document as found is what QEMU gets, and what the budget gate counts.
"""

from __future__ import annotations

import sys
import time

from aiohook.budget.gate import gate_prepare
from aiohook.hook import log
from aiohook.hook.planning import describe, make_plan, probe_failures, unprobed


def noncompliant(plan) -> list:
    if plan.skipped:
        return []
    return [d for d in plan.disks if d.decision.changed]


def gate(domain: str, data: bytes, settings, started: float) -> int:
    plan = make_plan(domain, data, settings, "prepare")
    bad = noncompliant(plan) if settings.enforce != "off" else []
    entry = {"domain": domain, "op": "prepare", "subop": "begin", "enforce": settings.enforce,
             "disks": log.disk_entries(plan)}
    stuck = unprobed(plan)
    if stuck:
        entry["unprobed"] = stuck
    refusal = probe_failures(domain, "prepare", plan, settings)
    if refusal:
        sys.stderr.write(refusal + "\n")
        log.say(log.ERR, refusal)
        _record(entry, "error-refused", started, message=refusal)
        return 1

    if bad and settings.enforce == "refuse":
        details = "; ".join(describe(d) for d in bad)
        message = (f"aiohook: refusing to start {domain} (enforce: refuse): {len(bad)} disk(s) "
                   f"not as the rules want: {details}. Fix: aiohook apply {domain}, then start "
                   f"it again")
        sys.stderr.write(message + "\n")
        log.say(log.ERR, message)
        _record(entry, "refused", started, message=message)
        return 1
    for disk in bad:  # enforce: warn
        log.say(log.WARNING, f"{domain}: disk {describe(disk)}; starting anyway (enforce: warn); "
                             f"fix: aiohook apply {domain}")

    outcome = gate_prepare(plan, settings)
    if not outcome.allowed:
        sys.stderr.write(outcome.message.rstrip("\n") + "\n")
        log.say(log.ERR, f"{domain}: {outcome.message}")
        _record(entry, "budget-refused", started, message=outcome.message)
        return 1
    notes = {}
    if outcome.message:
        log.say(log.WARNING, f"{domain}: {outcome.message}")
        notes["budget"] = outcome.message
    if outcome.unrecorded:  # the ledger's dir is read-only or full: on_error decides
        from aiohook.hook.onerror import follow

        what = (f"could not book its {outcome.needed} AIO events ({outcome.unrecorded}), so "
                f"starts in parallel with it are not counted against it")
        message, code, result = follow(settings.on_error, "prepare", domain, what,
                                       unchecked="unbooked")
        sys.stderr.write(message + "\n")
        log.say(log.ERR, message)
        if code:
            _record(entry, result, started, error=what, message=message, **notes)
            return code
        notes["error"] = what
    elif bad:
        result = "warned"
    else:
        result = "compliant" if settings.enforce != "off" else "allowed"
    if bad:
        notes["message"] = f"{len(bad)} disk(s) not as the rules want; fix: aiohook apply {domain}"
    _record(entry, result, started, **notes)
    return 0


def _record(entry: dict, outcome: str, started: float, **extra) -> None:
    entry["outcome"] = outcome
    entry.update(extra)
    entry["ms"] = round((time.monotonic() - started) * 1000, 1)
    log.record(entry)
