"""`aiohook rules lint`: find rules that cannot do what they say, yamllint style.

Every finding carries file:line, the rule's name and a stable code:

  AH001 unknown-key          a key the ruleset schema does not know
  AH002 deprecated-key       a spelling aiohook does not read, with its replacement
  AH003 schema               any other schema violation (bad value, missing key)
  AH010 contradiction        a match/exclude alternative whose conditions contradict
  AH011 excludes-everything  an exclude with an empty alternative: the rule never selects
  AH012 duplicate-name       two rules share a name
  AH020 shadowed-rule        earlier rules select every disk this rule could select
  AH030 vetoed-override      every io mode of the action is always refused by a safety check
  AH031 vetoed-preference    one io mode of a preference list is always refused

The analyses are conservative: a finding is reported only when it holds for
every disk the rule's conditions allow (no false positives; some misses).
Duplicates and contradictions come from policy.ruleset (its errors are what
`rules validate` reports); vetoes are the engine's own answers over every
combination of the facts its safety checks read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from aiohook.facts import CACHE_MODES, IO_MODES, DiskFacts, HostFacts, SourceFacts
from aiohook.policy.conditions import CONDITIONS, UNSET
from aiohook.policy.engine import io_value, judged_cache
from aiohook.policy.ruleset import contradiction, rule_problems
from aiohook.policy.safety import (
    CHECKS,
    NATIVE_NEEDS_DIRECT_CACHE,
    NATIVE_NEEDS_O_DIRECT,
    NATIVE_NOT_ON_SPARSE,
    NATIVE_ONLY_WHERE_KNOWN_SAFE,
    NATIVE_SAFE_CLASSES,
    NO_EFFECT_CHECK,
    Candidate,
    io_has_effect,
    refusals,
)

CODES = {
    "unknown-key": "AH001",
    "deprecated-key": "AH002",
    "schema": "AH003",
    "contradiction": "AH010",
    "excludes-everything": "AH011",
    "duplicate-name": "AH012",
    "shadowed-rule": "AH020",
    "vetoed-override": "AH030",
    "vetoed-preference": "AH031",
}

# Spellings other tools use (QEMU -drive aio=, Proxmox, early drafts) that version 1
# does not read; lint names the key to use instead.
DEPRECATED_KEYS = {
    "aio": "io",
    "io_mode": "io",
    "cache_mode": "cache",
    "disk_class": "class",
    "storage_class": "class",
    "odirect": "o_direct",
    "direct_io": "o_direct",
    "disk_type": "type",
    "when": "match",
    "unless": "exclude",
    "then": "action",
}

ALL_TYPES = CONDITIONS["type"].values


@dataclass
class Finding:
    file: str
    line: int | None
    code: str
    name: str
    rule: str | None
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line or 0}"
        rule = f"rule '{self.rule}': " if self.rule else ""
        return f"{where}: {self.code} {self.name}: {rule}{self.message}"


def _finding(file, line, name, rule, message) -> Finding:
    return Finding(file, line, CODES[name], name, rule, message)


# --- entry point --------------------------------------------------------------


def lint_text(text: bytes, filename: str) -> list[Finding]:
    from aiohook.errors import PolicyError
    from aiohook.policy.ruleset import _schema_problems, build_ruleset
    from aiohook.yamlsource import load_located

    doc = load_located(text, filename, PolicyError)
    flagged: list[tuple] = []
    findings = _key_findings(doc, filename, flagged)
    schema_problems = _schema_problems(_without(doc, flagged))
    for p in schema_problems:
        findings.append(_finding(filename, p.line, "schema", None, p.message))
    if findings:  # the semantic analyses need a well-formed ruleset
        return _sorted(findings)
    ruleset = build_ruleset(text, filename)
    lines = {}
    for i in range(len(doc.data["rules"])):
        lines[i] = {k: doc.line(("rules", i, k)) for k in ("name", "match", "exclude", "action")}
        lines[i]["io"] = doc.line(("rules", i, "action", "io"))
    findings += [_finding(filename, p.line, p.check, p.rule, p.message) for p in rule_problems(doc)]
    findings += _shadowed(ruleset, lines, filename)
    findings += _vetoed(ruleset, lines, filename)
    return _sorted(findings)


def lint_file(path: str) -> list[Finding]:
    from aiohook.fsutil import read_bounded

    return lint_text(read_bounded(path, 4 << 20), path)


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line or 0, f.code))


# --- keys ---------------------------------------------------------------------


def _known_keys() -> dict[str, set]:
    from aiohook.policy.ruleset import schema

    s = schema()
    d = s["$defs"]
    return {
        "top": set(s["properties"]),
        "rule": set(d["rule"]["properties"]),
        "conditions": set(d["conditions"]["properties"]),
        "action": set(d["action"]["properties"]),
    }


def _without(doc, paths: list[tuple]):
    """The document with unknown keys removed and deprecated ones renamed, so the
    schema judges the rest without repeating those findings."""
    import copy

    from aiohook.yamlsource import LocatedYAML

    data = copy.deepcopy(doc.data)
    for path in paths:
        node = data
        for step in path[:-1]:
            node = node[step]
        value = node.pop(path[-1], None)
        new = DEPRECATED_KEYS.get(path[-1])
        if new and new not in node:
            node[new] = value
    return LocatedYAML(data, doc.lines, doc.filename)


def _key_findings(doc, filename, flagged: list) -> list[Finding]:
    known = _known_keys()
    out: list[Finding] = []
    data = doc.data

    def check(mapping, path, kind, rule, where):
        if not isinstance(mapping, dict):
            return
        for key in mapping:
            if key in known[kind]:
                continue
            line = doc.line(path + (key,))
            flagged.append(path + (key,))
            if key in DEPRECATED_KEYS and DEPRECATED_KEYS[key] in known[kind]:
                out.append(
                    _finding(
                        filename,
                        line,
                        "deprecated-key",
                        rule,
                        f"'{key}' {where} is not read; use '{DEPRECATED_KEYS[key]}'",
                    )
                )
            else:
                out.append(
                    _finding(
                        filename,
                        line,
                        "unknown-key",
                        rule,
                        f"unknown key '{key}' {where} (known: {', '.join(sorted(known[kind]))})",
                    )
                )

    if not isinstance(data, dict):
        return out
    check(data, (), "top", None, "at the top level")
    rules = data.get("rules")
    if not isinstance(rules, list):
        return out
    for i, raw in enumerate(rules):
        if not isinstance(raw, dict):
            continue
        name = raw.get("name") if isinstance(raw.get("name"), str) else f"#{i + 1}"
        path = ("rules", i)
        check(raw, path, "rule", name, "in a rule")
        for sel in ("match", "exclude"):
            value = raw.get(sel)
            if not isinstance(value, dict):
                continue
            if set(value) in ({"any"}, {"all"}):
                word = next(iter(value))
                items = value[word] if isinstance(value[word], list) else []
                for j, conj in enumerate(items):
                    check(conj, path + (sel, word, j), "conditions", name, f"in '{sel}' ({word})")
            else:
                check(value, path + (sel,), "conditions", name, f"in '{sel}'")
        check(raw.get("action"), path + ("action",), "action", name, "in 'action'")
    return out


# --- sets of values a conjunction allows ------------------------------------------


def _group(conj) -> dict[str, list]:
    out: dict[str, list] = {}
    for key, arg in conj:
        out.setdefault(key, []).append(arg)
    return out


def _allowed(key: str, args: list | None) -> set | None:
    """The values an enum/word condition allows (None: any word at all)."""
    cond = CONDITIONS[key]
    if not args:
        possible = cond.possible()
        return set(possible) if possible else None
    values = set(args[0])
    for arg in args[1:]:
        values &= set(arg)
    return values


def covers(earlier, later) -> bool:
    """Every disk the conjunction `later` selects is selected by `earlier` (conservative)."""
    e, l_ = _group(earlier), _group(later)
    for key, e_args in e.items():
        cond = CONDITIONS[key]
        l_args = l_.get(key, [])
        if cond.kind == "bool":
            if not l_args or any(a != e_args[0] for a in e_args + l_args):
                return False
        elif cond.kind == "glob":
            if not l_args:
                return False  # unset values match no glob
            for e_arg in e_args:
                if "*" in e_arg:
                    continue
                if not any(set(l_arg) <= set(e_arg) for l_arg in l_args):
                    return False
        else:
            want = _allowed(key, l_args)
            if want is None or not want <= _allowed(key, e_args):
                return False
    return True


def _shadowed(ruleset, lines, filename) -> list[Finding]:
    out = []
    rules = ruleset.rules
    for j, later in enumerate(rules):
        live = [c for c in later.match if not contradiction(c)]
        if not live:
            continue
        by = []
        for conj in live:
            hit = next(
                (
                    e
                    for e in rules[:j]
                    if not e.exclude
                    and any(not contradiction(ec) and covers(ec, conj) for ec in e.match)
                ),
                None,
            )
            if hit is None:
                break
            by.append(hit.name)
        else:
            names = ", ".join(f"'{n}'" for n in dict.fromkeys(by))
            out.append(
                _finding(
                    filename,
                    lines[j]["name"],
                    "shadowed-rule",
                    later.name,
                    f"never decides anything: every disk it selects is selected first by {names}",
                )
            )
    return out


# --- overrides the safety checks always veto -----------------------------------


# The facts the safety checks and the engine's cache handling read, each over every
# value it can take: the enum conditions, and the O_DIRECT probe (true, false, unknown).
FACT_SPACE = ("class", "type", "device", "cache", "io", "o_direct")
# io_uring support is the only host fact a check reads: judged on a host that has it,
# a veto holds on every host.
HOST = HostFacts(io_uring=True)


def _disks() -> list[DiskFacts]:
    """Every disk of the fact space (built once)."""
    if not _DISKS:
        sources = [SourceFacts(path="/lint", kind="unknown", o_direct=od) for od in (True, False, None)]
        _DISKS.extend(
            DiskFacts("lint", "vda", typ, dev, cache=_fact(cache), io=_fact(io), disk_class=cls,
                      host=source)
            for cls in CONDITIONS["class"].values
            for typ in CONDITIONS["type"].values
            for dev in CONDITIONS["device"].values
            for cache in CONDITIONS["cache"].possible()
            for io in CONDITIONS["io"].possible()
            for source in sources
        )
    return _DISKS


_DISKS: list[DiskFacts] = []


def _fact(value: str) -> str | None:
    return None if value == UNSET else value


class _Veto:
    """One disk the conjunction allows, the cache its io is judged with, and the checks
    that refuse the wanted io there."""

    __slots__ = ("disk", "cache", "checks")

    def __init__(self, disk, cache, checks):
        self.disk, self.cache, self.checks = disk, cache, checks


def _vetoes(wanted: str, conj, action) -> list[_Veto] | None:
    """The engine's refusals of `wanted` on the disks `conj` allows, or None when it
    gives `wanted` to some disk that does not have it already (or refuses it nowhere)."""
    keys = [(k, a) for k, a in conj if k in FACT_SPACE]
    out = []
    for disk in _disks():
        if not all(CONDITIONS[k].test(disk, a) for k, a in keys):
            continue
        io = io_value(disk, wanted)
        cache, _ = judged_cache(disk, HOST, action)
        refused = refusals(Candidate(io, cache), disk, HOST)
        if refused:
            out.append(_Veto(disk, cache, {check for check, _ in refused}))
        elif io != disk.io:
            return None
    return out or None


def _joined(values) -> str:
    return "/".join(sorted(_fact_word(v) for v in set(values)))


def _fact_word(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return UNSET if value is None else value


def _no_effect_why(vetoes: list[_Veto]) -> str:
    classes = {v.disk.disk_class for v in vetoes}
    never = {d.disk_class for d in _disks()} - {d.disk_class for d in _disks() if io_has_effect(d)}
    what = f"class {_joined(classes)}" if classes <= never else (
        f"type {_joined(v.disk.type for v in vetoes)}")
    return f"io has no effect on {what} disks, so {NO_EFFECT_CHECK.name} never lets a rule change it"


# How lint words a check that refuses an io, most telling first: the fact it reads,
# said of the whole match when the check refuses on every disk, else of those it does.
EXPLAINED = (
    (NATIVE_NOT_ON_SPARSE, "class", lambda v: v.disk.disk_class, "the match allows only class {}"),
    (NATIVE_NEEDS_O_DIRECT, "o_direct", lambda v: v.disk.o_direct, "the match requires o_direct: {}"),
    (NATIVE_ONLY_WHERE_KNOWN_SAFE, "class", lambda v: v.disk.disk_class,
     "class {} is not " + " or ".join(NATIVE_SAFE_CLASSES)),
    (NATIVE_NEEDS_DIRECT_CACHE, "cache after the rule", lambda v: v.cache,
     "cache after the rule is {}"),
)


def _vetoed_why(wanted: str, conj, action) -> str | None:
    """Why the engine refuses `wanted` on every disk `conj` allows, or None.

    Disks where io has no effect only explain a veto when they are all there is.
    """
    vetoes = _vetoes(wanted, conj, action)
    if vetoes is None:
        return None
    rest = [v for v in vetoes if NO_EFFECT_CHECK not in v.checks]
    if not rest:
        return _no_effect_why(vetoes)
    for check, _, read, whole in EXPLAINED:
        if all(check in v.checks for v in rest):
            return f"{check.name} refuses it ({whole.format(_joined(map(read, rest)))})"
    parts = []
    while rest:  # the check refusing on most of the remaining disks first
        check, fact, read, _ = max(EXPLAINED, key=lambda e: sum(e[0] in v.checks for v in rest))
        hit = [v for v in rest if check in v.checks]
        if not hit:
            break
        parts.append(f"{check.name} refuses it where {fact} is {_joined(map(read, hit))}")
        rest = [v for v in rest if check not in v.checks]
    parts += [f"{c.name} refuses it" for c in CHECKS if any(c in v.checks for v in rest)]
    return "; ".join(parts)


def _vetoed(ruleset, lines, filename) -> list[Finding]:
    out = []
    for i, rule in enumerate(ruleset.rules):
        live = [c for c in rule.match if not contradiction(c)]
        wanted = [w for w in rule.action.io if w != "keep"]
        if not live or not wanted:
            continue
        dead = {}
        for w in wanted:
            whys = [_vetoed_why(w, c, rule.action) for c in live]
            if all(whys):
                dead[w] = "; ".join(dict.fromkeys(whys))
        if not dead:
            continue
        if len(dead) == len(wanted):
            detail = "; ".join(f"{w}: {why}" for w, why in dead.items())
            out.append(
                _finding(
                    filename,
                    lines[i]["io"],
                    "vetoed-override",
                    rule.name,
                    f"the engine always vetoes io {'/'.join(wanted)} here: {detail}",
                )
            )
        else:
            for w, why in dead.items():
                out.append(
                    _finding(
                        filename,
                        lines[i]["io"],
                        "vetoed-preference",
                        rule.name,
                        f"preference {w} is always skipped: {why}",
                    )
                )
    return out


# --- rendering --------------------------------------------------------------------


def render_text(findings: list[Finding], files: list[str]) -> str:
    lines = [f.render() for f in findings]
    n = len(findings)
    lines.append(
        f"{n} finding{'s' if n != 1 else ''} in {len(files)} file{'s' if len(files) != 1 else ''}"
        if n
        else f"{', '.join(files)}: no findings"
    )
    return "\n".join(lines) + "\n"


def render_json(findings: list[Finding], files: list[str]) -> str:
    return json.dumps({"files": files, "findings": [asdict(f) for f in findings]}, indent=2) + "\n"


__all__ = [
    "CACHE_MODES",
    "CODES",
    "DEPRECATED_KEYS",
    "IO_MODES",
    "Finding",
    "covers",
    "lint_file",
    "lint_text",
]
