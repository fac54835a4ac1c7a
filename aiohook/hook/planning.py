"""What the gate (prepare.py) and the filter (filter.py) both do with a plan:
make it from stdin, describe a disk, and follow on_error for sources that
never answered. Imported by both; imports neither.
"""

from __future__ import annotations

import sys

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
    if settings.on_error == "refuse":
        from aiohook.hook.onerror import follow

        return follow("refuse", op, domain, what)[0]
    message = (f"aiohook: ERROR, {domain}: {what}; those disks are left as they are "
               f"(on_error: allow)")
    sys.stderr.write(message + "\n")
    log.say(log.ERR, message)
    return None
