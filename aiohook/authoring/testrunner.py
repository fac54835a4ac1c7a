"""`aiohook test`: run rule test suites (aiohook-test.yaml manifests), Kyverno style.

A manifest (schemas/test-manifest.schema.json, version 1) sits beside its domain
XMLs and recorded facts and lists the expected result per domain and disk:

    version: 1
    name: default ruleset
    rules: ../../../aiohook/rules.yaml   # a path, or a profile name; default: packaged
    facts: facts.yaml                    # recorded facts for every domain below
    domains:
      - file: nova-lvm-ephemeral.xml
        expect_xml: nova-lvm-ephemeral.expected.xml   # optional, compared in C14N
      - file: no-io-uring-host.xml
        facts: facts-no-io-uring.yaml                 # optional per-domain facts
    results:
      - id: lvm-root                     # optional; default DOMAIN/DISK
        domain: instance-0000002a        # the domain's <name> or its file name
        disk: vda                        # the target dev
        rule: block-device               # the deciding rule
        class: block
        io: native                       # io after; unset = no io attribute
        cache: none                      # cache after

An expectation naming a rule, domain or disk that does not exist fails.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from aiohook.errors import AiohookError, PolicyError

MANIFEST = "aiohook-test.yaml"
MANIFEST_SCHEMA = "test-manifest.schema.json"
FIELDS = ("rule", "class", "io", "cache")


@dataclass
class Result:
    id: str
    domain: str
    disk: str
    rule: str  # the deciding rule we got ('' when there is no disk)
    expected: str
    got: str
    ok: bool
    message: str = ""  # why it failed

    @classmethod
    def error(cls, id: str, domain: str, expected: str, message: str, disk: str = "-") -> Result:
        """A check that could not be made: nothing was decided to compare."""
        return cls(id, domain, disk, rule="", expected=expected, got="-", ok=False, message=message)

    @classmethod
    def xml(cls, id: str, domain: str, same: bool, message: str = "") -> Result:
        """The comparison of a domain's rewritten XML with the expected file."""
        got = "same (C14N)" if same else "differs (C14N)"
        return cls(id, domain, "-", rule="", expected="rewritten XML", got=got, ok=same,
                   message=message)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "domain": self.domain,
            "disk": self.disk,
            "rule": self.rule,
            "expected": self.expected,
            "got": self.got,
            "result": "pass" if self.ok else "fail",
            "message": self.message,
        }


@dataclass
class SuiteReport:
    manifest: str
    name: str
    rules: str
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)

    @property
    def passed(self) -> int:
        return sum(r.ok for r in self.results)


# --- finding and reading manifests ------------------------------------------


def find_manifests(dirs: list[str]) -> list[str]:
    found = []
    for d in dirs:
        if os.path.isfile(d):
            found.append(d)
            continue
        if not os.path.isdir(d):
            from aiohook.errors import FileAccessError

            raise FileAccessError("no such directory", file=d)
        for root, subdirs, files in os.walk(d):
            subdirs.sort()
            if MANIFEST in files:
                found.append(os.path.join(root, MANIFEST))
    return found


def manifest_schema() -> dict:
    from aiohook import config

    return config.schema(MANIFEST_SCHEMA)


def load_manifest(path: str):
    """The manifest as LocatedYAML; PolicyError with file:line when it is invalid
    (config's one loader; the wording is in test-manifest.schema.json)."""
    from aiohook import config

    return config.load_file(path, MANIFEST_SCHEMA, PolicyError)


# --- running ------------------------------------------------------------------


def _rel(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def manifest_rules_path(manifest: str, spec: str | None) -> str | None:
    """The manifest's 'rules:' as a path: relative to the manifest, else a profile name."""
    from aiohook.policy.loader import PROFILES, profile_path

    if spec is None:
        return profile_path("default")  # the packaged rules, never this host's /etc
    candidate = _rel(os.path.dirname(manifest), spec)
    if os.path.exists(candidate) or spec not in PROFILES:
        return candidate
    return profile_path(spec)


def run_manifest(path: str, rules_override: str | None = None) -> SuiteReport:
    from aiohook.policy.loader import load_ruleset, resolve_rules_path

    doc = load_manifest(path)
    data = doc.data
    base = os.path.dirname(path)
    spec = (
        rules_override
        if rules_override is not None
        else manifest_rules_path(path, data.get("rules"))
    )
    ruleset = load_ruleset(spec, use_cache=False)
    report = SuiteReport(
        path, data.get("name") or os.path.basename(base) or path, resolve_rules_path(spec)
    )
    plans, by_file, load_failures = {}, {}, []
    probes: dict[str, object] = {}
    for entry in data["domains"]:
        file = entry["file"]
        facts = entry.get("facts", data.get("facts"))
        try:
            plan = _plan(_rel(base, file), _rel(base, facts) if facts else None, ruleset, probes)
        except AiohookError as exc:
            load_failures.append(
                Result(file, file, "-", rule="", expected="a domain", got="error", ok=False,
                       message=exc.one_line())
            )
            continue
        by_file[os.path.basename(file)] = plan
        by_file[file] = plan
        plans.setdefault(plan.name, plan)
        if entry.get("expect_xml"):
            report.results.append(_compare_xml(plan, _rel(base, entry["expect_xml"]), file))
    report.results[:0] = load_failures
    known_rules = {r.name for r in ruleset.rules}
    for raw in data["results"]:
        report.results.append(_check(raw, plans, by_file, known_rules, ruleset.source))
    return report


def _plan(xml_path: str, facts_path: str | None, ruleset, probes: dict):
    from aiohook.domxml.files import read_xml
    from aiohook.planner import plan_xml
    from aiohook.probe import make_probe

    key = facts_path or ""
    if key not in probes:
        probes[key] = make_probe(facts_path) if facts_path else _no_facts_probe()
    return plan_xml(read_xml(xml_path), xml_path, ruleset, probes[key])


def _no_facts_probe():
    """A suite without recorded facts must not depend on this host: every source is unknown."""
    from aiohook.facts import HostFacts
    from aiohook.probe.recorded import RecordedProbe

    return RecordedProbe.from_facts(HostFacts(), {}, missing="no recorded facts")


def _got(disk_plan) -> dict:
    d, f = disk_plan.decision, disk_plan.facts
    return {
        "rule": d.rule,
        "class": f.disk_class,
        "io": d.io_after or "unset",
        "cache": d.cache_after or "unset",
    }


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={values[k]}" for k in FIELDS if k in values)


def _check(raw: dict, plans: dict, by_file: dict, known_rules: set, rules_source: str) -> Result:
    from aiohook.policy.engine import NO_RULE, PIN_RULE, SKIP_RULE

    domain, disk = raw["domain"], raw["disk"]
    rid = raw.get("id") or f"{domain}/{disk}"
    want = {k: raw[k] for k in FIELDS if k in raw}
    expected = _fmt(want)
    plan = plans.get(domain) or by_file.get(domain)
    if plan is None:
        return Result.error(
            rid,
            domain,
            expected,
            f"domain '{domain}' does not exist in this suite "
            f"(domains: {', '.join(sorted(plans)) or 'none'})",
            disk=disk,
        )
    target = next((d for d in plan.disks if d.facts.target == disk), None)
    if target is None:
        targets = ", ".join(d.facts.target or "?" for d in plan.disks)
        return Result.error(
            rid,
            domain,
            expected,
            f"disk '{disk}' does not exist in domain '{plan.name}' (disks: {targets})",
            disk=disk,
        )
    got_all = _got(target)
    got = {k: got_all[k] for k in want}
    if "rule" in want and want["rule"] not in known_rules | {NO_RULE, SKIP_RULE, PIN_RULE}:
        return Result(
            rid,
            domain,
            disk,
            rule=got_all["rule"],
            expected=expected,
            got=_fmt(got),
            ok=False,
            message=f"rule '{want['rule']}' does not exist in {rules_source}",
        )
    wrong = [k for k in want if want[k] != got[k]]
    message = "; ".join(f"{k}: expected {want[k]}, got {got[k]}" for k in wrong)
    if wrong:
        message += f" ({target.decision.reason})"
    return Result(rid, domain, disk, rule=got_all["rule"], expected=expected, got=_fmt(got),
                  ok=not wrong, message=message)


# --- expected XML -------------------------------------------------------------


def canonical(data: bytes, source: str) -> str:
    """C14N 2.0 without whitespace-only text and comments, then pretty-printed for diffs.
    Read as any domain XML is (domxml.parse_domain): no DTD, no entity, nothing fetched."""
    from lxml import etree

    from aiohook.domxml.document import hardened_parser, parse_domain

    tree = parse_domain(data, source).root.getroottree()
    c14n = etree.canonicalize(tree, strip_text=True, with_comments=False)
    root = etree.fromstring(c14n.encode(), hardened_parser())
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def _compare_xml(plan, expected_path: str, file: str) -> Result:
    from aiohook.domxml.files import read_xml

    rid = f"{os.path.basename(file)}:xml"
    try:
        want = canonical(read_xml(expected_path), expected_path)
    except AiohookError as exc:
        return Result.error(rid, plan.name, os.path.basename(expected_path), exc.one_line())
    got = canonical(plan.rewritten(), file)
    if got == want:
        return Result.xml(rid, plan.name, same=True)
    diff = "".join(
        difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile=f"{expected_path} (expected, C14N)",
            tofile=f"{file} rewritten (C14N)",
        )
    )
    return Result.xml(
        rid, plan.name, same=False, message="rewritten XML differs from the expected one:\n" + diff
    )


# --- rendering ----------------------------------------------------------------


def totals(reports: list[SuiteReport]) -> tuple[int, int]:
    return sum(r.passed for r in reports), sum(r.failed for r in reports)


def render_text(reports: list[SuiteReport]) -> str:
    out = []
    for rep in reports:
        out.append(f"{rep.manifest}: {rep.name} (rules: {rep.rules})")
        rows = [["ID", "DOMAIN", "DISK", "RULE", "EXPECTED", "GOT", "RESULT"]]
        rows += [
            [r.id, r.domain, r.disk, r.rule or "-", r.expected, r.got, "pass" if r.ok else "FAIL"]
            for r in rep.results
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        failures = [r for r in rep.results if not r.ok]
        if failures:
            out.append("  failures:")
            for r in failures:
                lines = r.message.splitlines() or [""]
                out.append(f"    {r.id}: {lines[0]}")
                out += ["      " + line for line in lines[1:]]
        out.append("")
    passed, failed = totals(reports)
    out.append(f"{passed} passed, {failed} failed")
    return "\n".join(out) + "\n"


def render_json(reports: list[SuiteReport]) -> str:
    passed, failed = totals(reports)
    return (
        json.dumps(
            {
                "suites": [
                    {
                        "manifest": r.manifest,
                        "name": r.name,
                        "rules": r.rules,
                        "passed": r.passed,
                        "failed": r.failed,
                        "results": [x.to_json() for x in r.results],
                    }
                    for r in reports
                ],
                "passed": passed,
                "failed": failed,
            },
            indent=2,
        )
        + "\n"
    )


def render_junit(reports: list[SuiteReport]) -> str:
    passed, failed = totals(reports)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="aiohook" tests="{passed + failed}" failures="{failed}">',
    ]
    for rep in reports:
        out.append(
            f'  <testsuite name={quoteattr(rep.name)} tests="{len(rep.results)}" '
            f'failures="{rep.failed}" file={quoteattr(rep.manifest)}>'
        )
        for r in rep.results:
            name = quoteattr(f"{r.id} ({r.domain} {r.disk})")
            classname = quoteattr(rep.manifest)
            if r.ok:
                out.append(f"    <testcase name={name} classname={classname}/>")
            else:
                out.append(f"    <testcase name={name} classname={classname}>")
                out.append(
                    f"      <failure message={quoteattr(r.message.splitlines()[0] if r.message else 'failed')}>"
                    f"{escape(f'expected {r.expected}, got {r.got}: {r.message}')}</failure>"
                )
                out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "junit": render_junit}


def run(dirs: list[str], rules: str | None = None) -> list[SuiteReport]:
    manifests = find_manifests(dirs)
    if not manifests:
        from aiohook.errors import UsageError

        raise UsageError(f"no {MANIFEST} found under {' '.join(dirs)}")
    return [run_manifest(m, rules) for m in manifests]
