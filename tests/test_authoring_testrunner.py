"""`aiohook test` itself, with suites meant to fail, and `aiohook test --init`."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from xml.etree import ElementTree

import pytest
from paths import ROOT

from aiohook.cli import main

DEFAULT_SUITE = os.path.join(ROOT, "tests", "rules", "default")
SHARED = os.path.join(ROOT, "tests", "rules", "shared")
EDGES = os.path.join(SHARED, "authoring-edges.xml")
FACTS = os.path.join(SHARED, "facts.yaml")

GOOD = """\
  - id: lvm-plain
    domain: authoring-edges
    disk: vdc
    rule: block-device
    class: block
    io: native
    cache: none
"""


def make_suite(tmp_path, results: str, *, extra_top: str = "", name="suite", domains=None) -> str:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(EDGES, d)
    shutil.copy(FACTS, d)
    domains = domains or "  - file: authoring-edges.xml\n"
    (d / "aiohook-test.yaml").write_text(
        "version: 1\nrules: default\nfacts: facts.yaml\n"
        + extra_top
        + "domains:\n"
        + domains
        + "results:\n"
        + results
    )
    return str(d)


def read(path) -> str:
    with open(path) as fh:
        return fh.read()


def write(path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def run(capsys, *argv) -> tuple[int, str]:
    code = main(["test", *argv])
    return code, capsys.readouterr().out


def test_a_passing_suite(tmp_path, capsys):
    code, out = run(capsys, make_suite(tmp_path, GOOD))
    assert code == 0
    assert out.rstrip().splitlines()[-1] == "1 passed, 0 failed"
    header = next(line for line in out.splitlines() if line.strip().startswith("ID"))
    assert header.split() == ["ID", "DOMAIN", "DISK", "RULE", "EXPECTED", "GOT", "RESULT"]
    assert "lvm-plain" in out and "pass" in out


def test_missing_rule_fails(tmp_path, capsys):
    results = GOOD + textwrap.dedent("""\
      - id: ghost-rule
        domain: authoring-edges
        disk: vdd
        rule: no-such-rule
    """).replace("\n", "\n  ").rstrip(" ").join(["  ", ""])
    code, out = run(capsys, make_suite(tmp_path, results))
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "1 passed, 1 failed"
    assert "ghost-rule: rule 'no-such-rule' does not exist in" in out


def test_a_rule_deleted_from_the_ruleset_fails_its_expectation(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    text = read(os.path.join(ROOT, "aiohook", "rules.yaml"))
    start = text.index("  - name: block-device")
    end = text.index("  - name: preallocated-image")
    rules.write_text(text[:start] + text[end:])
    code, out = run(capsys, "--rules", str(rules), make_suite(tmp_path, GOOD))
    assert code == 1
    assert "lvm-plain: rule 'block-device' does not exist in" in out


def test_missing_disk_fails(tmp_path, capsys):
    results = (
        GOOD + "  - id: ghost-disk\n    domain: authoring-edges\n    disk: vdz\n    io: native\n"
    )
    code, out = run(capsys, make_suite(tmp_path, results))
    assert code == 1
    assert "1 passed, 1 failed" in out
    assert "ghost-disk: disk 'vdz' does not exist in domain 'authoring-edges'" in out


def test_missing_domain_fails(tmp_path, capsys):
    results = GOOD + "  - id: ghost-domain\n    domain: nowhere\n    disk: vda\n    io: native\n"
    code, out = run(capsys, make_suite(tmp_path, results))
    assert code == 1
    assert "ghost-domain: domain 'nowhere' does not exist in this suite" in out


def test_missing_domain_file_fails(tmp_path, capsys):
    domains = "  - file: authoring-edges.xml\n  - file: not-there.xml\n"
    code, out = run(capsys, make_suite(tmp_path, GOOD, domains=domains))
    assert code == 1
    assert "not-there.xml" in out and "1 passed, 1 failed" in out


def test_wrong_expectation_fails_with_expected_and_got(tmp_path, capsys):
    wrong = GOOD.replace("io: native", "io: threads").replace("lvm-plain", "wrong-io")
    code, out = run(capsys, make_suite(tmp_path, wrong))
    assert code == 1
    assert "0 passed, 1 failed" in out
    assert "wrong-io: io: expected threads, got native" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("wrong-io"))
    assert "io=threads" in row and "io=native" in row and row.rstrip().endswith("FAIL")


def test_domain_by_file_name(tmp_path, capsys):
    code, out = run(
        capsys,
        make_suite(
            tmp_path, GOOD.replace("domain: authoring-edges", "domain: authoring-edges.xml")
        ),
    )
    assert code == 0, out


def test_expected_xml_is_compared_canonically(tmp_path, capsys):
    suite = make_suite(
        tmp_path,
        GOOD,
        domains=("  - file: authoring-edges.xml\n    expect_xml: authoring-edges.expected.xml\n"),
    )
    expected = read(os.path.join(DEFAULT_SUITE, "authoring-edges.expected.xml"))
    # canonical form: attribute order, quoting, indentation and comments do not matter
    reformatted = expected.replace(
        "<driver name='qemu' type='raw' cache='none' io='native'/>",
        '<driver io="native" cache="none" type="raw" name="qemu" />',
    )
    reformatted = reformatted.replace("\n    <disk", "\n<!-- x -->\n        <disk")
    with open(os.path.join(suite, "authoring-edges.expected.xml"), "w") as fh:
        fh.write(reformatted)
    code, out = run(capsys, suite)
    assert code == 0, out
    # a real difference fails with a readable unified diff
    with open(os.path.join(suite, "authoring-edges.expected.xml"), "w") as fh:
        fh.write(
            expected.replace("cache='directsync' io='native'", "cache='directsync' io='threads'")
        )
    code, out = run(capsys, suite)
    assert code == 1
    assert "rewritten XML differs from the expected one" in out
    assert '-      <driver cache="directsync" io="threads" name="qemu" type="raw"/>' in out
    assert '+      <driver cache="directsync" io="native" name="qemu" type="raw"/>' in out


@pytest.mark.parametrize("text,message", [
    ('<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/hostname">]>\n<domain>&x;</domain>\n',
     "authoring-edges.expected.xml: DTDs and entity declarations are not allowed"),
    ("<domain>\n  <name>x</name>\n", "authoring-edges.expected.xml:3: malformed XML"),
])
def test_a_bad_expected_xml_is_a_failed_result_naming_it(tmp_path, capsys, text, message):
    """The expected XML is read as any domain XML is: no entity is expanded, and
    a malformed file is one failed result with file:line, not a traceback."""
    suite = make_suite(
        tmp_path,
        GOOD,
        domains=("  - file: authoring-edges.xml\n    expect_xml: authoring-edges.expected.xml\n"),
    )
    with open(os.path.join(suite, "authoring-edges.expected.xml"), "w") as fh:
        fh.write(text)
    code, out = run(capsys, suite)
    assert code == 1, out
    assert message in out, out
    assert "Traceback" not in out


def test_json_and_junit_formats(tmp_path, capsys):
    wrong = GOOD.replace("io: native", "io: threads")
    suite = make_suite(tmp_path, GOOD + wrong.replace("lvm-plain", "wrong"))
    code, out = run(capsys, "--format", "json", suite)
    assert code == 1
    data = json.loads(out)
    assert (data["passed"], data["failed"]) == (1, 1)
    res = {r["id"]: r for r in data["suites"][0]["results"]}
    assert res["wrong"]["result"] == "fail" and res["lvm-plain"]["result"] == "pass"
    code, out = run(capsys, "--format", "junit", suite)
    assert code == 1
    root = ElementTree.fromstring(out.split("\n", 1)[1])
    assert root.get("failures") == "1" and root.get("tests") == "2"
    failures = root.findall(".//failure")
    assert len(failures) == 1 and "expected threads, got native" in failures[0].get("message")


def test_manifests_are_found_recursively_and_summed(tmp_path, capsys):
    make_suite(tmp_path, GOOD, name="a")
    make_suite(tmp_path, GOOD.replace("io: native", "io: threads"), name="b")
    code, out = run(capsys, str(tmp_path))
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "1 passed, 1 failed"


@pytest.mark.parametrize(
    "top, message",
    [
        ("version: 2\n", "unsupported manifest version 2"),
        ("colour: blue\n", "unknown key 'colour'"),
    ],
)
def test_invalid_manifest_is_a_policy_error_with_line(tmp_path, capsys, top, message):
    suite = make_suite(tmp_path, GOOD)
    path = os.path.join(suite, "aiohook-test.yaml")
    text = read(path)
    text = text.replace("version: 1\n", top) if top.startswith("version") else text + top
    write(path, text)
    assert main(["test", suite]) == 4
    err = capsys.readouterr().err
    assert message in err and "aiohook-test.yaml:" in err


def test_expectation_without_any_field_is_rejected(tmp_path, capsys):
    suite = make_suite(tmp_path, "  - domain: authoring-edges\n    disk: vda\n")
    assert main(["test", suite]) == 4
    assert "at least one of rule, class, io, cache" in capsys.readouterr().err


def test_no_manifest_is_a_usage_error(tmp_path, capsys):
    assert main(["test", str(tmp_path)]) == 2
    assert "no aiohook-test.yaml" in capsys.readouterr().err


def test_init_scaffolds_a_passing_suite(tmp_path, capsys):
    d = tmp_path / "new"
    d.mkdir()
    shutil.copy(EDGES, d)
    shutil.copy(FACTS, d)
    assert main(["test", "--init", "--rules", "conservative", str(d)]) == 0
    assert "15 expectations" in capsys.readouterr().out
    import yaml

    data = yaml.safe_load((d / "aiohook-test.yaml").read_text())
    assert data["rules"] == "conservative" and data["facts"] == "facts.yaml"
    vdc = next(r for r in data["results"] if r["disk"] == "vdc")
    assert vdc == {
        "domain": "authoring-edges",
        "disk": "vdc",
        "rule": "block-device",
        "class": "block",
        "io": "native",
        "cache": "none",
    }
    code, out = run(capsys, str(d))
    assert code == 0 and "15 passed, 0 failed" in out
    # it never overwrites a manifest silently
    assert main(["test", "--init", str(d)]) == 2
    assert main(["test", "--init", "--force", str(d)]) == 0


def test_init_needs_domain_xmls(tmp_path, capsys):
    assert main(["test", "--init", str(tmp_path)]) == 2
    assert "no domain XML files" in capsys.readouterr().err
