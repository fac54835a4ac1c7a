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


class TextReport:
    """A table per domain, written as each domain is planned, then a summary line."""

    def __init__(self, stream):
        self.stream = stream
        self.domains = self.disks = self.changed = 0

    def domain(self, plan: DomainPlan) -> None:
        self.domains += 1
        self.disks += len(plan.disks)
        self.changed += sum(1 for d in plan.disks if d.decision.changed)
        self.stream.write("\n".join(domain_lines(plan)) + "\n")

    def finish(self, errors: list[tuple[str, str]] = ()) -> None:
        # the errors themselves go to stderr, one line each (cli.cmd_plan)
        self.stream.write(f"{self.domains} domains, {self.disks} disks, {self.changed} to change"
                          + (f", {len(errors)} inputs rejected" if errors else "") + "\n")


def domain_lines(plan: DomainPlan) -> list[str]:
    changed = sum(1 for d in plan.disks if d.decision.changed)
    head = f"domain {plan.name or '?'} ({plan.file}): {len(plan.disks)} disks, {changed} to change"
    if plan.skipped:
        head += " [skipped by metadata]"
    if plan.aio:
        head += (f"; AIO events at start {plan.aio.get('events_at_start')}, "
                 f"max {plan.aio.get('events_max')} (QEMU {plan.aio.get('qemu_version') or '?'}: "
                 f"{plan.aio.get('model', '?')})")
    out = [head]
    if plan.disks:
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
    return out


class JsonReport:
    """{"domains": [...], "errors": [...]}, written one domain at a time."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0
        stream.write('{"domains": [')

    def domain(self, plan: DomainPlan) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(plan.to_json()))
        self.count += 1

    def finish(self, errors: list[tuple[str, str]] = ()) -> None:
        self.stream.write("\n]")
        if errors:
            self.stream.write(', "errors": ' + json.dumps([{"file": f, "error": m}
                                                           for f, m in errors]))
        self.stream.write("}\n")
