"""`prepare begin`: compliance per `enforce`, then the AIO budget gate.

libvirt ignores the hook's output here (docs/facts.md section 1): the domain
starts with the XML it has, so aiohook can only let it go on or abort it.
The plan's document holds the XML as aiohook would rewrite it; each disk's
decision keeps io/cache as found (io_before), which is what QEMU will get.
"""

from __future__ import annotations

import sys
import time

from aiohook.hook import log


def make_plan(domain: str, data: bytes, settings, op: str):
    """Plan the domain XML from stdin with the settings' rules and the live host.
    The document is parsed by pyexpat when it can be (aiohook.domxml.lite: the
    tree lxml would build, without lxml's import), else by lxml."""
    from aiohook.domxml.lite import parse_domain_lite
    from aiohook.planner import plan_document
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe.linux import LinuxProbe

    ruleset = load_ruleset(settings.rules)
    return plan_document(parse_domain_lite(data, f"<{op} {domain}>"), ruleset, LinuxProbe())


def describe(disk) -> str:
    """'vda (/var/lib/x.raw): io=threads -> wanted io=native, cache=none (rule NAME)'."""
    f, d = disk.facts, disk.decision
    now = f"io={d.io_before or 'unset (threads)'}"
    want = f"wanted io={d.io_after or 'unset (threads)'}"
    if d.cache_before != d.cache_after:
        now += f" cache={d.cache_before or 'unset'}"
        want += f" cache={d.cache_after or 'unset'}"
    return f"{f.target or '?'} ({f.source or 'no source'}): {now} -> {want} (rule {d.rule})"


def noncompliant(plan) -> list:
    if plan.skipped:
        return []
    return [d for d in plan.disks if d.decision.changed]


def unprobed(plan) -> list[str]:
    """'vda (/mnt/x.raw): probe timed out after 2.0s' for each source that never answered."""
    out = []
    for disk in plan.disks:
        src = disk.facts.host
        if src is not None and src.kind == "unknown" and "timed out" in (src.error or ""):
            out.append(f"{disk.facts.target or '?'} ({src.path}): {src.error}")
    return out


def probe_failures(domain: str, op: str, plan, settings) -> str | None:
    """A source that never answered (dead NFS/FUSE) means aiohook could not check
    the domain: that follows on_error. Returns the refusal message, or None."""
    stuck = unprobed(plan)
    if not stuck:
        return None
    what = f"could not probe {len(stuck)} disk source(s): {'; '.join(stuck)}"
    action = "start" if op == "prepare" else op
    if settings.on_error == "refuse":
        return f"aiohook: refusing the {action} of {domain} (on_error: refuse): {what}"
    message = (f"aiohook: ERROR, {domain}: {what}; those disks are left as they are "
               f"(on_error: allow)")
    sys.stderr.write(message + "\n")
    log.say(log.ERR, message)
    return None


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

    outcome = budget_gate(plan, settings)
    if outcome is not None and not outcome.allowed:
        sys.stderr.write(outcome.message.rstrip("\n") + "\n")
        log.say(log.ERR, f"{domain}: {outcome.message}")
        _record(entry, "budget-refused", started, message=outcome.message)
        return 1
    notes = {}
    if outcome is not None and outcome.message:
        log.say(log.WARNING, f"{domain}: {outcome.message}")
        notes["budget"] = outcome.message
    unrecorded = getattr(outcome, "unrecorded", "") if outcome is not None else ""
    if unrecorded:  # the ledger's dir is read-only or full: on_error decides
        what = (f"could not book its {outcome.needed} AIO events ({unrecorded}), so starts "
                f"in parallel with it are not counted against it")
        if settings.on_error == "refuse":
            message = f"aiohook: refusing the start of {domain} (on_error: refuse): {what}"
            sys.stderr.write(message + "\n")
            log.say(log.ERR, message)
            _record(entry, "error-refused", started, error=what, message=message, **notes)
            return 1
        message = (f"aiohook: ERROR, letting the start of {domain} go on unbooked "
                   f"(on_error: allow): {what}")
        sys.stderr.write(message + "\n")
        log.say(log.ERR, message)
        notes["error"] = what
    if unrecorded:
        result = "error-allowed"
    elif bad:
        result = "warned"
    else:
        result = "compliant" if settings.enforce != "off" else "allowed"
    if bad:
        notes["message"] = f"{len(bad)} disk(s) not as the rules want; fix: aiohook apply {domain}"
    _record(entry, result, started, **notes)
    return 0


def budget_gate(plan, settings):
    """The budget feature's gate (aiohook.budget.gate), when it is there."""
    try:
        from aiohook.budget.gate import gate_prepare
    except ModuleNotFoundError as exc:
        if exc.name in ("aiohook.budget", "aiohook.budget.gate"):
            return None
        raise
    return gate_prepare(plan, settings)


def _record(entry: dict, outcome: str, started: float, **extra) -> None:
    entry["outcome"] = outcome
    entry.update(extra)
    entry["ms"] = round((time.monotonic() - started) * 1000, 1)
    log.record(entry)
