"""Render plans for people (text table) and programs (JSON)."""

from __future__ import annotations

import json

from aiohook.planner import DomainPlan


def _short(value: str | None) -> str:
    return value if value is not None else "unset"


def _arrow(before: str | None, after: str | None) -> str:
    if before == after:
        return _short(before)
    return f"{_short(before)} -> {_short(after)}"


def key_facts(facts) -> str:
    parts = []
    host = facts.host
    if host is not None:
        if host.transport:
            parts.append(host.transport)
        if host.fs:
            parts.append(host.fs)
        if host.o_direct is not None:
            parts.append("o_direct" if host.o_direct else "no-o_direct")
        if host.error:
            parts.append(host.error)
    if facts.format and facts.format != "raw":
        parts.append(facts.format)
    if facts.iothread:
        parts.append(f"iothread {facts.iothread}")
    if facts.readonly:
        parts.append("readonly")
    return ", ".join(parts)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render_text(plans: list[DomainPlan], errors: list[tuple[str, str]] = ()) -> str:
    out = []
    for plan in plans:
        changed = sum(1 for d in plan.disks if d.decision.changed)
        head = f"domain {plan.name or '?'} ({plan.file}): {len(plan.disks)} disks, {changed} to change"
        if plan.skipped:
            head += " [skipped by metadata]"
        if plan.aio:
            head += (f"; AIO events at start {plan.aio.get('events_at_start')}, "
                     f"max {plan.aio.get('events_max')}")
        out.append(head)
        if not plan.disks:
            out.append("")
            continue
        rows = [["TARGET", "DEVICE", "CLASS", "FACTS", "IO", "CACHE", "RULE"]]
        for d in plan.disks:
            f, dec = d.facts, d.decision
            rows.append([f.target or "?", f.device, f.disk_class, key_facts(f),
                         _arrow(dec.io_before, dec.io_after),
                         _arrow(dec.cache_before, dec.cache_after),
                         dec.rule + (" *" if dec.changed else "")])
        out.extend(_table(rows))
        for d in plan.disks:
            out.append(f"    {d.facts.target or '?'}: {d.facts.source or '-'}: {d.decision.reason}")
        out.append("")
    for file, message in errors:
        out.append(f"error: {message}")
    total = sum(len(p.disks) for p in plans)
    changed = sum(1 for p in plans for d in p.disks if d.decision.changed)
    out.append(f"{len(plans)} domains, {total} disks, {changed} to change"
               + (f", {len(errors)} inputs rejected" if errors else ""))
    return "\n".join(out) + "\n"


def render_json(plans: list[DomainPlan], errors: list[tuple[str, str]] = ()) -> str:
    doc = {"domains": [p.to_json() for p in plans]}
    if errors:
        doc["errors"] = [{"file": f, "error": m} for f, m in errors]
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
