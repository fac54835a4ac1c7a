"""docs/rules.md stays in sync with the ruleset schema, the condition registry,
the safety checks, the lint codes and the test manifest schema."""

from __future__ import annotations

import json
import os
import re

import pytest
from paths import ROOT

from aiohook.authoring import lint
from aiohook.authoring.testrunner import manifest_schema
from aiohook.policy.conditions import CONDITIONS
from aiohook.policy.ruleset import schema
from aiohook.policy.safety import CHECKS

with open(os.path.join(ROOT, "docs", "rules.md")) as _fh:
    DOC = _fh.read()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert match, f"docs/rules.md has no '## {title}' section"
    return match.group(1)


def subsections(title: str) -> dict[str, str]:
    body = section(title)
    parts = re.split(r"^### `([^`]+)`\n", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_condition_documented_and_no_stale_ones():
    documented = set(subsections("Conditions"))
    in_schema = set(schema()["$defs"]["conditions"]["properties"])
    assert in_schema == set(CONDITIONS), "schema and condition registry disagree"
    assert documented - in_schema == set(), f"stale in docs: {documented - in_schema}"
    assert in_schema - documented == set(), f"undocumented: {in_schema - documented}"


def test_every_action_key_documented_and_no_stale_ones():
    documented = set(subsections("Actions"))
    assert documented == set(schema()["$defs"]["action"]["properties"])


@pytest.mark.parametrize("title", ["Conditions", "Actions", "Selectors"])
def test_every_entry_has_a_yaml_example(title):
    for key, body in subsections(title).items():
        assert "```yaml" in body, f"{title} '{key}' has no example"


def test_every_condition_value_is_documented():
    subs = subsections("Conditions")
    for key, cond in CONDITIONS.items():
        for value in cond.values:
            assert f"`{value}`" in subs[key], f"condition {key}: value {value} undocumented"
        assert cond.kind != "bool" or "true" in subs[key]


def test_every_io_action_value_is_documented():
    io_doc = subsections("Actions")["io"]
    io_schema = schema()["$defs"]["action"]["properties"]["io"]["oneOf"][0]["enum"]
    for value in io_schema:
        assert f"`{value}`" in io_doc, f"action io {value} undocumented"
    cache_modes = schema()["$defs"]["cacheMode"]["enum"]
    for value in cache_modes:
        assert f"`{value}`" in subsections("Actions")["cache"]


def test_selectors_rule_and_top_level_keys_documented():
    assert set(subsections("Selectors")) == {"any", "all"}
    body = section("Ruleset structure")
    for key in list(schema()["properties"]) + list(schema()["$defs"]["rule"]["properties"]):
        assert f"| `{key}` |" in body, f"key {key} undocumented"


def test_safety_checks_documented():
    body = section("Safety checks")
    documented = set(re.findall(r"^\| `([^`]+)` \|", body, re.MULTILINE))
    assert documented == {c.name for c in CHECKS}


def test_lint_codes_and_deprecated_keys_documented():
    body = section("Lint codes")
    rows = set(re.findall(r"^\| (AH\d{3}) \| ([a-z-]+) \|", body, re.MULTILINE))
    assert rows == {(code, name) for name, code in lint.CODES.items()}
    for key in lint.DEPRECATED_KEYS:
        assert f"`{key}`" in body, f"deprecated key {key} undocumented"


def test_manifest_keys_documented():
    body = section("Test suites")
    s = manifest_schema()
    keys = set(s["properties"])
    keys |= set(s["properties"]["domains"]["items"]["properties"])
    keys |= set(s["properties"]["results"]["items"]["properties"])
    for key in keys:
        assert f"`{key}`" in body, f"manifest key {key} undocumented"
    assert json.loads(json.dumps(s))["properties"]["version"]["const"] == 1
