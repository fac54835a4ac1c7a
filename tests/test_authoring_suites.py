"""The shipped rule suites (tests/rules/): they pass, cover every rule, and catch mutations.

Mutations are generated in tmp from the suite's own ruleset: swapping native and
threads everywhere, deleting each rule in turn, and swapping each pair of rules
that overlap (some case disk is selected by both). Each must make the suite fail.
"""

from __future__ import annotations

import os

import pytest
import yaml
from paths import RULES_DIR

from aiohook.authoring import testrunner
from aiohook.policy.engine import PIN_RULE, SKIP_RULE
from aiohook.policy.loader import load_ruleset

SUITES = ("default", "io_uring", "conservative")


def manifest(suite: str) -> str:
    return os.path.join(RULES_DIR, suite, testrunner.MANIFEST)


def rules_path(suite: str) -> str:
    doc = testrunner.load_manifest(manifest(suite))
    return testrunner.manifest_rules_path(manifest(suite), doc.data.get("rules"))


def run_suite(suite: str, rules: str | None = None) -> testrunner.SuiteReport:
    return testrunner.run_manifest(manifest(suite), rules)


def case_disks(suite: str):
    """(DiskFacts, decision, HostFacts) of every disk the suite has an expectation for."""
    path = manifest(suite)
    data = testrunner.load_manifest(path).data
    base = os.path.dirname(path)
    ruleset = load_ruleset(rules_path(suite), use_cache=False)
    wanted = {(r["domain"], r["disk"]) for r in data["results"]}
    probes: dict = {}
    out = []
    for entry in data["domains"]:
        facts = entry.get("facts", data.get("facts"))
        plan = testrunner._plan(
            os.path.join(base, entry["file"]), os.path.join(base, facts), ruleset, probes
        )
        for d in plan.disks:
            if (plan.name, d.facts.target) in wanted:
                out.append((d.facts, d.decision, plan.host))
    return out


def write_rules(tmp_path, data: dict, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def raw_rules(suite: str) -> dict:
    with open(rules_path(suite)) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("suite", SUITES)
def test_shipped_suite_passes(suite):
    report = run_suite(suite)
    failures = [f"{r.id}: {r.message}" for r in report.results if not r.ok]
    assert not failures, "\n".join(failures)
    assert report.passed > 50


def test_shipped_suites_through_the_cli(capsys):
    from aiohook.cli import main

    assert main(["test", str(RULES_DIR)]) == 0
    out = capsys.readouterr().out
    total = sum(run_suite(s).passed for s in SUITES)
    assert out.rstrip().splitlines()[-1] == f"{total} passed, 0 failed"


@pytest.mark.parametrize("suite", SUITES)
def test_every_rule_has_a_case(suite):
    """A rule that decides none of the suite's expectations is untested: fail."""
    data = testrunner.load_manifest(manifest(suite)).data
    expected_rules = {r.get("rule") for r in data["results"]}
    ruleset = load_ruleset(rules_path(suite), use_cache=False)
    missing = [r.name for r in ruleset.rules if r.name not in expected_rules]
    assert not missing, f"rules of {ruleset.source} with no case in {manifest(suite)}: {missing}"


@pytest.mark.parametrize("suite", SUITES)
def test_every_expectation_names_the_deciding_rule(suite):
    """The mutation guarantees below rest on every case pinning its deciding rule."""
    data = testrunner.load_manifest(manifest(suite)).data
    assert all("rule" in r and "io" in r for r in data["results"])


@pytest.mark.parametrize("suite", SUITES)
def test_covers_refused_explicit_native_on_sparse(suite):
    """Issue 15: explicit native on a sparse image, on hosts with and without io_uring."""
    hosts = {
        host.io_uring_usable()
        for f, d, host in case_disks(suite)
        if f.disk_class == "file-sparse" and d.io_before == "native" and d.replaced_by
    }
    assert hosts == {True, False}


# --- mutations ------------------------------------------------------------------


def _swap_native_threads(value):
    swap = {"native": "threads", "threads": "native"}
    if isinstance(value, str):
        return swap.get(value, value)
    if isinstance(value, list):
        return [_swap_native_threads(v) for v in value]
    if isinstance(value, dict):
        return {
            k: (v if k in ("name", "description") else _swap_native_threads(v))
            for k, v in value.items()
        }
    return value


@pytest.mark.parametrize("suite", SUITES)
def test_swapping_native_and_threads_fails_the_suite(suite, tmp_path):
    data = raw_rules(suite)
    mutated = dict(data, rules=[_swap_native_threads(r) for r in data["rules"]])
    assert mutated != data
    report = run_suite(suite, write_rules(tmp_path, mutated, "swapped"))
    assert report.failed > 0


@pytest.mark.parametrize("suite", SUITES)
def test_deleting_any_rule_fails_the_suite(suite, tmp_path):
    data = raw_rules(suite)
    survivors = []
    for i, rule in enumerate(data["rules"]):
        mutated = dict(data, rules=data["rules"][:i] + data["rules"][i + 1 :])
        report = run_suite(suite, write_rules(tmp_path, mutated, f"without-{i}"))
        if report.failed == 0:
            survivors.append(rule["name"])
    assert not survivors, f"deleting these rules goes unnoticed: {survivors}"


def overlapping_pairs(suite: str) -> list[tuple[int, int]]:
    """(i, j), i < j, for rules that both select some case disk the rules decide."""
    ruleset = load_ruleset(rules_path(suite), use_cache=False)
    disks = [f for f, d, _ in case_disks(suite) if d.rule not in (SKIP_RULE, PIN_RULE)]
    rules = ruleset.rules
    return [
        (i, j)
        for i in range(len(rules))
        for j in range(i + 1, len(rules))
        if any(rules[i].selects(f) and rules[j].selects(f) for f in disks)
    ]


@pytest.mark.parametrize("suite", SUITES)
def test_reordering_overlapping_rules_fails_the_suite(suite, tmp_path):
    data = raw_rules(suite)
    pairs = overlapping_pairs(suite)
    # the catch-all overlaps everything, and the suites place disks in overlaps
    assert len(pairs) >= len(data["rules"]) - 1
    survivors = []
    for i, j in pairs:
        rules = list(data["rules"])
        rules[i], rules[j] = rules[j], rules[i]
        report = run_suite(suite, write_rules(tmp_path, dict(data, rules=rules), f"swap-{i}-{j}"))
        if report.failed == 0:
            survivors.append((data["rules"][i]["name"], data["rules"][j]["name"]))
    assert not survivors, f"reordering these overlapping rules goes unnoticed: {survivors}"


def test_mutation_helpers_find_real_overlaps():
    """Sanity: the default suite has disks where explicit-io and block-device overlap."""
    names = [r.name for r in load_ruleset(rules_path("default"), use_cache=False).rules]
    pairs = {(names[i], names[j]) for i, j in overlapping_pairs("default")}
    assert ("explicit-io", "block-device") in pairs
    assert ("no-io-effect", "removable-or-empty") in pairs
    assert ("no-o-direct", "host-page-cache") in pairs
