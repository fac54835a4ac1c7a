"""`aiohook rules lint`: planted findings are found; shipped rulesets are clean;
every shadow/veto finding is checked against the engine over a grid of disks."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from paths import ROOT

from aiohook.authoring import lint
from aiohook.cli import main
from aiohook.facts import CACHE_MODES, DISK_CLASSES, DiskFacts, HostFacts, SourceFacts
from aiohook.policy.engine import first_match, resolve
from aiohook.policy.loader import load_ruleset, profile_path

FIXTURES = os.path.join(ROOT, "tests", "lint_fixtures")
SHIPPED = [profile_path(p) for p in ("default", "io_uring", "conservative")]


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def codes(findings) -> list[tuple[int, str, str | None]]:
    return [(f.line, f.name, f.rule) for f in findings]


@pytest.mark.parametrize("path", SHIPPED)
def test_no_findings_on_shipped_rulesets(path):
    assert lint.lint_file(path) == []


def test_cli_shipped_rulesets_are_clean(capsys):
    assert main(["rules", "lint", "default", "io_uring", "conservative"]) == 0
    assert "no findings" in capsys.readouterr().out


def test_planted_shadowed_rules():
    found = lint.lint_file(fixture("shadowed.yaml"))
    assert codes(found) == [
        (14, "shadowed-rule", "lvm-direct"),
        (36, "shadowed-rule", "after-catch-all"),
    ]
    assert all(f.code == "AH020" for f in found)
    assert "'block-device'" in found[0].message
    assert "'catch-all'" in found[1].message


def test_planted_contradictions():
    found = lint.lint_file(fixture("contradiction.yaml"))
    assert codes(found) == [
        (6, "contradiction", "sparse-and-block"),
        (15, "contradiction", "direct-and-not"),
        (27, "contradiction", "dead-exclude"),
    ]
    assert "'class' must be block and file-sparse at once" in found[0].message
    assert "'o_direct' must be both true and false" in found[1].message


def test_planted_vetoed_overrides():
    found = lint.lint_file(fixture("vetoed.yaml"))
    assert codes(found) == [
        (10, "vetoed-preference", "dead-preference"),
        (26, "vetoed-override", "native-on-sparse"),
        (33, "vetoed-override", "native-on-network"),
        (40, "vetoed-override", "uring-on-nvme-type"),
        (48, "vetoed-override", "native-without-o-direct"),
        (56, "vetoed-override", "native-host-cache"),
        (63, "vetoed-override", "native-forced-writeback"),
    ]
    by_rule = {f.rule: f.message for f in found}
    assert "native-not-on-sparse" in by_rule["native-on-sparse"]
    assert "no-io-without-effect" in by_rule["native-on-network"]
    assert "native-needs-o-direct" in by_rule["native-without-o-direct"]
    assert "native-needs-direct-cache" in by_rule["native-host-cache"]


def test_vetoes_are_the_engines_answers():
    """Before lint asked the engine, it reported the first rule (the engine never refuses
    io a disk already has, so threads is never vetoed there) and missed the second (native
    is never added to a disk of unknown class)."""
    found = lint.lint_file(fixture("vetoed_engine.yaml"))
    assert codes(found) == [
        (18, "vetoed-preference", "native-on-unknown"),
        (26, "vetoed-preference", "native-kept-with-host-cache"),
    ]
    assert found[0].message.startswith(
        "preference native is always skipped: native-only-where-known-safe refuses it "
        "where class is unknown; "
    )
    assert found[1].message == (
        "preference native is always skipped: native-needs-direct-cache refuses it "
        "(cache after the rule is unsafe)"
    )


ERRORS = """\
version: 1
rules:
  - name: twice
    description: d
    match: {class: block}
    action: {io: native}
  - name: twice
    description: d
    match: {class: file-sparse}
    action: {io: threads}
  - name: dead
    description: d
    match:
      all: [{readonly: true}, {readonly: false}]
    action: {io: threads}
"""

WARNINGS = """\
version: 1
rules:
  - name: dead-exclude
    description: d
    match: {class: block}
    exclude:
      all: [{io: native}, {io: threads}]
    action: {io: threads}
"""


def test_validate_reports_the_error_tier_of_lints_detector(tmp_path):
    """One detector: `rules validate` reports its errors in lint's words."""
    from aiohook.policy.ruleset import validate_ruleset

    path = tmp_path / "r.yaml"
    path.write_text(ERRORS)
    found = lint.lint_file(str(path))
    assert [(f.line, f.name, f.message) for f in found] == [
        (7, "duplicate-name", "duplicate name (first at line 3)"),
        (13, "contradiction", "can never match: 'readonly' must be both true and false"),
    ]
    problems = validate_ruleset(ERRORS.encode(), str(path))
    assert [(p.line, p.message) for p in problems] == [
        (f.line, f"rule '{f.rule}': {f.message}") for f in found
    ]


def test_validate_leaves_lints_warnings_out(tmp_path):
    from aiohook.policy.ruleset import validate_ruleset

    path = tmp_path / "r.yaml"
    path.write_text(WARNINGS)
    found = lint.lint_file(str(path))
    assert [(f.line, f.name, f.message) for f in found] == [
        (6, "contradiction", "'exclude' alternative 1 can never hold: "
         "'io' must be native and threads at once"),
    ]
    assert validate_ruleset(WARNINGS.encode(), str(path)) == []


def test_unknown_and_deprecated_keys_name_key_and_rule():
    found = lint.lint_file(fixture("keys.yaml"))
    assert codes(found) == [
        (3, "unknown-key", None),
        (8, "deprecated-key", "old-spellings"),
        (9, "unknown-key", "old-spellings"),
        (11, "deprecated-key", "old-spellings"),
        (15, "unknown-key", "extra-key"),
        (19, "deprecated-key", "extra-key"),
    ]
    text = [f.render() for f in found]
    assert any("'disk_class' in 'match' is not read; use 'class'" in t for t in text)
    assert any("unknown key 'transprot'" in t for t in text)
    assert text[4].startswith(fixture("keys.yaml") + ":15: AH001 unknown-key: rule 'extra-key'")


def test_other_schema_errors_are_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - name: x\n    description: d\n    match: {class: blok}\n"
        "    action: {io: native}\n"
    )
    found = lint.lint_file(str(bad))
    assert [(f.line, f.code) for f in found] == [(5, "AH003")]


def test_text_format_is_one_parsable_line_per_finding(capsys):
    assert main(["rules", "lint", fixture("shadowed.yaml")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"{fixture('shadowed.yaml')}:14: AH020 shadowed-rule: rule 'lvm-direct': "
        "never decides anything: every disk it selects is selected first by "
        "'block-device'"
    )
    assert lines[-1] == "2 findings in 1 file"


def test_json_format(capsys):
    assert (
        main(
            [
                "rules",
                "lint",
                "--format",
                "json",
                fixture("contradiction.yaml"),
                fixture("shadowed.yaml"),
            ]
        )
        == 1
    )
    data = json.loads(capsys.readouterr().out)
    assert len(data["files"]) == 2
    assert {f["code"] for f in data["findings"]} == {"AH010", "AH020"}
    first = data["findings"][0]
    assert set(first) == {"file", "line", "code", "name", "rule", "message"}


def test_codes_are_stable():
    assert lint.CODES == {
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


# --- soundness: findings hold for every disk of a grid --------------------------------


def disk_grid():
    classes = DISK_CLASSES
    types = ("file", "block", "network", "volume", "nvme")
    devices = ("disk", "cdrom")
    caches = (None,) + CACHE_MODES
    ios = (None, "native", "threads", "io_uring")
    o_directs = (True, False, None)
    transports = (None, "lvm", "krbd", "loop")
    fss = (None, "cifs", "ext4")
    for cls, typ, dev, cache, io, od, tr, fs in itertools.product(
        classes, types, devices, caches, ios, o_directs, transports, fss
    ):
        host = SourceFacts(path="/x", kind="file", o_direct=od, transport=tr, fs=fs)
        yield DiskFacts(
            domain="d",
            target="vda",
            type=typ,
            device=dev,
            cache=cache,
            io=io,
            disk_class=cls,
            host=host,
        )


HOSTS = (HostFacts(io_uring=True, qemu_version="8.0"), HostFacts(io_uring=False))


@pytest.mark.parametrize(
    "name",
    ["shadowed.yaml", "vetoed.yaml", "vetoed_engine.yaml"] + [os.path.basename(p) for p in SHIPPED],
)
def test_findings_hold_for_every_disk(name):
    path = (
        fixture(name)
        if os.path.exists(fixture(name))
        else next(p for p in SHIPPED if os.path.basename(p) == name)
    )
    ruleset = load_ruleset(path, use_cache=False)
    findings = lint.lint_file(path)
    shadowed = {f.rule for f in findings if f.name == "shadowed-rule"}
    vetoed = {f.rule for f in findings if f.name in ("vetoed-override", "vetoed-preference")}
    deciders = set()
    for facts in disk_grid():
        rule = first_match(ruleset, facts)
        if rule is not None:
            deciders.add(rule.name)
        for r in ruleset.rules:
            if r.name in vetoed and r.selects(facts):
                dead = [
                    m
                    for f in findings
                    if f.rule == r.name
                    for m in r.action.io
                    if f"io {m}" in f.message
                    or f"preference {m}" in f.message
                    or f"{m}:" in f.message
                ]
                for host in HOSTS:
                    d = resolve(facts, host, r.action, r.name, "")
                    assert not (d.io_after in dead and d.io_after != facts.io), (r.name, facts)
    assert not shadowed & deciders
