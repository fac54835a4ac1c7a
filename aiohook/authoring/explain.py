"""`aiohook explain`: why each disk got its io/cache.

For every disk: each rule in order, matched or why not (the failing condition
with the fact's value); rules after the first match are shown as not reached,
with whether they would have matched. Then the safety checks: the vetoes that
refused a preference, the replacement of a refused explicit io, and every check
on the final outcome. Then the decision.
"""

from __future__ import annotations

import json

from aiohook.policy.engine import PIN_RULE, SKIP_RULE, explain_rule
from aiohook.policy.safety import CHECKS, Candidate, applicable


def explain_plan(plan, ruleset, disk: str | None = None) -> list[dict]:
    disks = [d for d in plan.disks if disk is None or d.facts.target == disk]
    if disk is not None and not disks:
        from aiohook.errors import UsageError

        targets = ", ".join(d.facts.target or "?" for d in plan.disks)
        raise UsageError(f"domain '{plan.name}' has no disk '{disk}' (disks: {targets})")
    return [_explain_disk(d, plan.host, ruleset) for d in disks]


def _explain_disk(dp, host, ruleset) -> dict:
    f, d = dp.facts, dp.decision
    steps = []
    decided = False
    by_name = {t.rule: t for t in d.trace}
    for index, rule in enumerate(ruleset.rules, 1):
        if d.rule in (SKIP_RULE, PIN_RULE):
            matched, why = explain_rule(rule, f)
            steps.append(
                {
                    "n": index,
                    "rule": rule.name,
                    "status": "not consulted",
                    "matched": matched,
                    "why": why,
                }
            )
            continue
        matched, why = explain_rule(rule, f)
        trace = by_name.get(rule.name)
        if trace is not None and not decided:
            status = "matched, decides" if trace.matched else "no match"
            decided = trace.matched
        else:
            status = "not reached"
        steps.append(
            {
                "n": index,
                "rule": rule.name,
                "line": rule.line,
                "status": status,
                "matched": matched,
                "why": why,
            }
        )
    final = Candidate(d.io_after, d.cache_after)
    checks = []
    judging = applicable(f)
    for check in CHECKS:
        if check not in judging:
            checks.append(
                {
                    "check": check.name,
                    "verdict": "n/a",
                    "why": "io has no effect on this disk; libvirt judges the rest",
                }
            )
            continue
        why = check.refuse(final, f, host)
        checks.append(
            {"check": check.name, "verdict": "refuses" if why else "ok", "why": why or check.doc}
        )
    return {
        "target": f.target,
        "class": f.disk_class,
        "class_reason": f.class_reason,
        "source": f.source,
        "facts": f.to_dict(),
        "rules": steps,
        "vetoes": [
            {"check": v.check, "io": v.io or "unset", "cache": v.cache or "unset", "why": v.why}
            for v in d.vetoes
        ],
        "checks": checks,
        "decision": {
            "rule": d.rule,
            "io": {"before": d.io_before, "after": d.io_after},
            "cache": {"before": d.cache_before, "after": d.cache_after},
            "changed": d.changed,
            "replaced_by": d.replaced_by,
            "reason": d.reason,
        },
    }


def _u(v):
    return v if v is not None else "unset"


def render_text(plan, explained: list[dict]) -> str:
    out = [f"domain {plan.name} ({plan.file})"]
    if plan.skipped:
        out.append("  domain metadata <aiohook:skip/>: no rule is consulted")
    for e in explained:
        out.append("")
        out.append(
            f"disk {e['target']}: class {e['class']}"
            + (f" ({e['class_reason']})" if e["class_reason"] else "")
            + (f", source {e['source']}" if e["source"] else "")
        )
        facts = ", ".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in e["facts"].items()
        )
        out.append(f"  facts: {facts}")
        out.append("  rules, in order:")
        width = max((len(s["rule"]) for s in e["rules"]), default=0)
        for s in e["rules"]:
            why = s["why"].removeprefix("matched: ")
            if s["status"] == "not reached" or s["status"] == "not consulted":
                would = "would match" if s["matched"] else "would not match"
                text = f"{s['status']} ({would}: {why})"
            elif s["matched"]:
                text = f"MATCHED -> decides ({why})"
            else:
                text = f"no match: {s['why']}"
            out.append(f"    {s['n']:>2}. {s['rule'].ljust(width)}  {text}")
        dec = e["decision"]
        out.append("  safety checks (vetoes on the way):")
        if e["vetoes"]:
            for v in e["vetoes"]:
                out.append(f"    VETO {v['check']}: io={v['io']} cache={v['cache']}: {v['why']}")
        else:
            out.append("    no vetoes")
        if dec["replaced_by"]:
            out.append(
                f"    REPLACED io={_u(dec['io']['before'])} by io={_u(dec['io']['after'])}: "
                f"asked rule '{dec['replaced_by']}', which decides this disk when the XML sets no io"
            )
        out.append(
            f"  safety checks on the outcome io={_u(dec['io']['after'])} "
            f"cache={_u(dec['cache']['after'])}:"
        )
        for c in e["checks"]:
            out.append(f"    {c['verdict']:>7}  {c['check']}: {c['why']}")
        io = dec["io"]
        cache = dec["cache"]

        def arrow(b, a):
            return _u(b) if b == a else f"{_u(b)} -> {_u(a)}"

        out.append(
            f"  decision: io {arrow(io['before'], io['after'])}, cache "
            f"{arrow(cache['before'], cache['after'])} by {dec['rule']}"
            + (" (changed)" if dec["changed"] else " (unchanged)")
        )
        out.append(f"    {dec['reason']}")
    return "\n".join(out) + "\n"


def render_json(plan, explained: list[dict]) -> str:
    return (
        json.dumps(
            {"domain": plan.name, "file": plan.file, "skipped": plan.skipped, "disks": explained},
            indent=2,
        )
        + "\n"
    )
