"""Bad input through the real CLI (`python -m aiohook` in a subprocess).

Every case: the documented exit code (aiohook/errors.py), exactly one line on
stderr naming file:line where there is one, no traceback, and nothing written:
`rewrite --output-dir` leaves the directory as it was (an existing output file
is not truncated) when any input, the rules or the facts are bad.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from paths import FACTS, FIXTURES, ROOT

GOOD = FIXTURES / "minimal-file.xml"

EXIT_FINDINGS, EXIT_USAGE, EXIT_BAD_XML, EXIT_BAD_POLICY, EXIT_BAD_FACTS, EXIT_IO = 1, 2, 3, 4, 5, 6


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("aiohook-env")
    return {**os.environ, "AIOHOOK_CONFIG_DIR": str(base / "etc"),
            "AIOHOOK_CACHE_DIR": str(base / "cache"), "PYTHONPATH": str(ROOT)}


def aiohook(env, *args, stdin: bytes | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "aiohook", *map(str, args)], input=stdin,
                          capture_output=True, timeout=timeout, env=env)


def one_line_error(res, code: int, where: str | None = None) -> str:
    """Assert the failure shape; return the message."""
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}: {err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"wanted one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("aiohook: error: "), lines[0]
    assert "internal error" not in lines[0]
    if where is not None:
        assert where in lines[0], f"{where!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---------------------------------------------------------------- domain XML

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain type='kvm'><name>&lol9;</name></domain>
"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE domain [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<domain type='kvm'><name>&xxe;</name><description>&xxe;</description></domain>
"""
PARAM_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE domain [ <!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe; ]>
<domain type='kvm'><name>x</name></domain>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE domain SYSTEM "http://198.51.100.1/domain.dtd">
<domain type='kvm'><name>x</name></domain>
"""


def _utf16(text: str) -> bytes:
    return text.encode("utf-16")  # with BOM: the byte-level "<!DOCTYPE" check can't see it


def _utf7(text: str) -> bytes:
    return text.encode("utf-7")


def _garbage() -> bytes:
    rng = random.Random(1234)
    return bytes(rng.randrange(256) for _ in range(8192))


XML_CASES = {
    # name: (bytes, text that must be in the one-line error, e.g. "file:line")
    "malformed": (b"<domain type='kvm'>\n  <name>x</name\n</domain>\n", ":3: malformed XML"),
    "truncated": (GOOD.read_bytes()[:-30], "malformed XML"),
    "two-roots": (b"<domain><name>a</name></domain>\n<domain/>\n", ":2: malformed XML"),
    "not-domain": (b"<?xml version='1.0'?>\n<network>\n  <name>default</name>\n</network>\n",
                   ":2: root element is <network>"),
    "namespaced-domain": (b"<domain xmlns='http://example.org/'><name>x</name></domain>",
                          "expected <domain>"),
    "billion-laughs": (LAUGHS, "DTDs and entity declarations are not allowed"),
    "external-entity": (XXE, "DTDs and entity declarations are not allowed"),
    "parameter-entity": (PARAM_ENTITY, "DTDs and entity declarations are not allowed"),
    "external-dtd": (EXTERNAL_DTD, "DTDs and entity declarations are not allowed"),
    "utf16-external-entity": (
        _utf16('<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE domain '
               '[<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<domain><name>&xxe;</name></domain>'),
        "DTDs and entity declarations are not allowed"),
    "utf16-billion-laughs": (
        _utf16(LAUGHS.decode().replace('<?xml version="1.0"?>',
                                       '<?xml version="1.0" encoding="UTF-16"?>')),
        "bad.xml"),
    "utf7-doctype": (
        b'<?xml version="1.0" encoding="UTF-7"?>\n'
        + _utf7('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
        + b"\n<domain><name>&x;</name></domain>\n",
        "DTDs and entity declarations are not allowed"),
    "undefined-entity": (b"<domain><name>a &nbsp; b</name></domain>", ":1: malformed XML"),
    "empty": (b"", "empty input"),
    "whitespace-only": (b"  \n\t\n", "empty input"),
    "binary-garbage": (_garbage(), "malformed XML"),
    "nul-bytes": (b"<domain>\x00\x00</domain>", "malformed XML"),
    "non-utf8-undeclared": ("<domain><name>café</name></domain>".encode("latin-1"),
                            ":1: malformed XML"),
    "bad-encoding-declaration": (b'<?xml version="1.0" encoding="no-such-charset"?><domain/>',
                                 "malformed XML"),
    "aiohook-pin-bad-io": (
        b"<domain type='kvm'>\n  <name>x</name>\n  <metadata>\n"
        b"    <a:policy xmlns:a='http://aiohook.org/xmlns/policy/1'>\n"
        b"      <a:disk target='vda' io='turbo'/>\n    </a:policy>\n  </metadata>\n</domain>\n",
        "bad.xml:5: aiohook metadata"),
    "aiohook-unknown-element": (
        b"<domain type='kvm'>\n  <name>x</name>\n  <metadata>\n"
        b"    <a:policy xmlns:a='http://aiohook.org/xmlns/policy/1'>\n"
        b"      <a:sikp/>\n    </a:policy>\n  </metadata>\n</domain>\n",
        "bad.xml:5: aiohook metadata: unknown element"),
}


@pytest.fixture(scope="module")
def big_xml(tmp_path_factory) -> Path:
    """A 50 MB domain: well-formed, just too large."""
    path = tmp_path_factory.mktemp("big") / "big.xml"
    with open(path, "wb") as fh:
        fh.write(b"<domain type='kvm'>\n  <name>big</name>\n  <description>")
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            fh.write(chunk)
        fh.write(b"</description>\n</domain>\n")
    return path


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    data, expected = XML_CASES[case]
    path = tmp_path / "bad.xml"
    path.write_bytes(data)
    return path, expected


@pytest.mark.parametrize("case", sorted(XML_CASES))
def test_bad_xml_plan(env, tmp_path, case):
    path, expected = _bad_file(tmp_path, case)
    res = aiohook(env, "plan", "--facts", FACTS, path)
    msg = one_line_error(res, EXIT_BAD_XML, expected)
    assert str(path) in msg
    assert b"root:" not in res.stdout + res.stderr  # /etc/passwd never leaks


@pytest.mark.parametrize("case", sorted(XML_CASES))
def test_bad_xml_rewrite_writes_nothing(env, tmp_path, case):
    path, expected = _bad_file(tmp_path, case)
    out = tmp_path / "out"
    out.mkdir()
    (out / "minimal-file.xml").write_bytes(b"previous output, must survive\n")
    before = snapshot(out)
    res = aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", out, GOOD, path)
    one_line_error(res, EXIT_BAD_XML, expected)
    assert res.stdout == b""
    assert snapshot(out) == before

    res = aiohook(env, "rewrite", "--facts", FACTS, path)  # single input: stdout
    one_line_error(res, EXIT_BAD_XML, expected)
    assert res.stdout == b""


@pytest.mark.parametrize("case", ["malformed", "external-entity", "empty", "binary-garbage"])
def test_bad_xml_on_stdin(env, case):
    data, expected = XML_CASES[case]
    expected = expected.replace("bad.xml", "<stdin>")
    for verb in ("plan", "rewrite"):
        res = aiohook(env, verb, "--facts", FACTS, "-", stdin=data)
        msg = one_line_error(res, EXIT_BAD_XML, expected.split(":", 2)[-1] if ":" in expected else expected)
        assert "<stdin>" in msg
    assert aiohook(env, "rewrite", "--facts", FACTS, "-", stdin=data).stdout == b""


def test_external_parameter_entity_is_never_opened(env, tmp_path):
    """A UTF-16 DOCTYPE slips past a byte-level check; its external parameter entity
    must still not be opened (a FIFO would hang the parser, /dev/zero would eat memory)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    path = tmp_path / "pe.xml"
    path.write_bytes(_utf16(
        f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY % pe SYSTEM "file://{fifo}">'
        f' %pe;]><domain><name>x</name></domain>'))
    res = aiohook(env, "plan", "--facts", FACTS, path, timeout=20)
    one_line_error(res, EXIT_BAD_XML, "DTDs and entity declarations are not allowed")


def test_50mb_xml(env, big_xml, tmp_path):
    res = aiohook(env, "plan", "--facts", FACTS, big_xml)
    one_line_error(res, EXIT_BAD_XML, "byte limit")
    out = tmp_path / "out"
    out.mkdir()
    res = aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", out, GOOD, big_xml)
    one_line_error(res, EXIT_BAD_XML, "byte limit")
    assert list(out.iterdir()) == []
    res = aiohook(env, "plan", "--facts", FACTS, "-", stdin=big_xml.read_bytes())
    one_line_error(res, EXIT_BAD_XML, "<stdin>")


def test_declared_latin1_is_fine(env, tmp_path):
    """Not bad input: a declared non-UTF-8 encoding is well-formed XML."""
    path = tmp_path / "latin1.xml"
    path.write_bytes(b"<?xml version='1.0' encoding='ISO-8859-1'?>\n<domain type='kvm'>"
                     b"<name>caf\xe9</name><devices/></domain>\n")
    res = aiohook(env, "plan", "--facts", FACTS, "--format", "json", path)
    assert res.returncode == 0, res.stderr
    assert '"name": "caf\\u00e9"' in res.stdout.decode()


def test_missing_and_unreadable_inputs(env, tmp_path):
    res = aiohook(env, "plan", "--facts", FACTS, tmp_path / "nope.xml")
    one_line_error(res, EXIT_IO, "nope.xml")
    res = aiohook(env, "plan", "--facts", FACTS, tmp_path)
    one_line_error(res, EXIT_IO, str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    res = aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", out, GOOD, tmp_path / "nope.xml")
    one_line_error(res, EXIT_IO, "nope.xml")
    assert list(out.iterdir()) == []
    res = aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", tmp_path / "nodir", GOOD, GOOD)
    assert res.returncode in (EXIT_USAGE, EXIT_IO)
    one_line_error(res, res.returncode)


# ---------------------------------------------------------------- rules files

BASE_RULES = """\
version: 1
description: a small ruleset
rules:
  - name: first
    description: the first rule
    match:
      class: block
    action:
      io: native
      cache_if_unset: none
  - name: second
    description: the second rule
    action:
      io: keep
"""


def _edit(old: str, new: str) -> str:
    assert old in BASE_RULES
    return BASE_RULES.replace(old, new, 1)


ALIAS_BOMB = "version: 1\n" + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}" if i else '"x"'] * 10) + "]\n"
    for i in range(9)) + "rules: []\n"

RULES_CASES = {
    # name: (text, text in the error, exit code of `rules validate`)
    "unknown-top-key": (BASE_RULES + "colour: red\n", "bad.yaml:15: unknown key 'colour' at the top level", 1),
    "unknown-rule-key": (_edit("    description: the first rule\n",
                               "    description: the first rule\n    colour: red\n"),
                         "bad.yaml:6: rule 'first': unknown key 'colour'", 1),
    "unknown-match-key": (_edit("      class: block\n", "      class: block\n      flavour: x\n"),
                          "bad.yaml:8: rule 'first': unknown key 'flavour'", 1),
    "unknown-match-key-in-any": (_edit("      class: block\n",
                                       "      any:\n        - class: block\n        - colour: x\n"),
                                 "bad.yaml:9: rule 'first': unknown key 'colour'", 1),
    "unknown-action-key": (_edit("      io: native\n", "      io: native\n      speed: fast\n"),
                           "bad.yaml:10: rule 'first': unknown key 'speed'", 1),
    "bad-class-value": (_edit("class: block", "class: blok"),
                        "bad.yaml:7: rule 'first': condition 'class': 'blok' is not one of", 1),
    "bad-io-value": (_edit("      io: native\n", "      io: turbo\n"), "bad.yaml:9: rule 'first': action 'io'", 1),
    "bad-cache-value": (_edit("cache_if_unset: none", "cache_if_unset: fast"),
                        "bad.yaml:10: rule 'first': 'cache_if_unset': 'fast' is not one of", 1),
    "missing-name": (_edit("  - name: first\n    description", "  - description"),
                     "bad.yaml:4: rule #1: missing key 'name'", 1),
    "missing-description": (_edit("    description: the first rule\n", ""),
                            "bad.yaml:4: rule 'first': missing key 'description'", 1),
    "missing-action": (_edit("    action:\n      io: native\n      cache_if_unset: none\n", ""),
                       "bad.yaml:4: rule 'first': missing key 'action'", 1),
    "missing-rules": ("version: 1\n", "bad.yaml:1: missing key 'rules'", 1),
    "wrong-version": (_edit("version: 1", "version: 2"), "bad.yaml:1: unsupported ruleset version 2", 1),
    "version-string": (_edit("version: 1", "version: '1'"), "bad.yaml:1: unsupported ruleset version", 1),
    "duplicate-names": (_edit("name: second", "name: first"),
                        "bad.yaml:11: rule 'first': duplicate name (first at line 4)", 1),
    "contradiction": (_edit("      class: block\n", "      all:\n        - class: block\n        - class: network\n"),
                      "bad.yaml:6: rule 'first': can never match", 1),
    "contradiction-bool": (_edit("      class: block\n", "      all:\n        - readonly: true\n        - readonly: false\n"),
                           "bad.yaml:6: rule 'first': can never match", 1),
    "cache-and-cache-if-unset": (_edit("      cache_if_unset: none\n", "      cache_if_unset: none\n      cache: none\n"),
                                 "rule 'first': action: 'cache' and 'cache_if_unset' exclude each other", 1),
    "bad-rule-name": (_edit("name: first", "name: First Rule"), "bad.yaml:4: rule 'First Rule'", 1),
    "invalid-yaml": ("version: 1\nrules:\n  - name: [unclosed\n", "bad.yaml:4: invalid YAML", 4),
    "tab-indented-yaml": ("version: 1\nrules:\n\t- name: x\n", "bad.yaml:3: invalid YAML", 4),
    "duplicate-yaml-key": (_edit("version: 1\n", "version: 1\nversion: 1\n"), "bad.yaml:2: duplicate key 'version'", 4),
    "alias-bomb": (ALIAS_BOMB, "bad.yaml: more than", 4),
    "empty-file": ("", "bad.yaml: a ruleset is a mapping", 1),
    "not-a-mapping": ("- 1\n- 2\n", "bad.yaml:1: a ruleset is a mapping", 1),
    "python-tag": ("version: 1\nrules: !!python/object/apply:os.system ['true']\n", "bad.yaml:2:", 1),
}


@pytest.mark.parametrize("case", sorted(RULES_CASES))
def test_bad_rules(env, tmp_path, case):
    text, expected, validate_code = RULES_CASES[case]
    rules = tmp_path / "bad.yaml"
    rules.write_text(text)
    res = aiohook(env, "plan", "--rules", rules, "--facts", FACTS, GOOD)
    one_line_error(res, EXIT_BAD_POLICY, expected)

    out = tmp_path / "out"
    out.mkdir()
    (out / "minimal-file.xml").write_bytes(b"previous output\n")
    before = snapshot(out)
    res = aiohook(env, "rewrite", "--rules", rules, "--facts", FACTS, "--output-dir", out,
                  GOOD, FIXTURES / "nova-lvm-ephemeral.xml")
    one_line_error(res, EXIT_BAD_POLICY, expected)
    assert snapshot(out) == before and res.stdout == b""

    res = aiohook(env, "rules", "validate", rules)
    err = res.stderr.decode()
    assert res.returncode == validate_code, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert expected.split(": ", 1)[0] in err
    assert res.stdout == b""


def test_bad_rules_non_utf8(env, tmp_path):
    rules = tmp_path / "bad.yaml"
    rules.write_bytes(BASE_RULES.replace("the first rule", "caf\xe9").encode("latin-1"))
    one_line_error(aiohook(env, "plan", "--rules", rules, "--facts", FACTS, GOOD), EXIT_BAD_POLICY,
                   "bad.yaml: not UTF-8")


def test_rules_file_missing(env, tmp_path):
    res = aiohook(env, "plan", "--rules", tmp_path / "none.yaml", "--facts", FACTS, GOOD)
    one_line_error(res, EXIT_IO, "none.yaml")


def test_every_problem_reported_by_validate(env, tmp_path):
    """`rules validate` lists each problem on its own line (plan shows the first)."""
    rules = tmp_path / "bad.yaml"
    rules.write_text(_edit("name: second", "name: first").replace("class: block", "class: blok"))
    res = aiohook(env, "rules", "validate", rules)
    assert res.returncode == EXIT_FINDINGS
    lines = res.stderr.decode().splitlines()
    assert lines and all(re.match(r"^\S*bad\.yaml:\d+: ", line) for line in lines), lines


# ---------------------------------------------------------------- facts files

# An alias's error names the line of its anchor (the node it shares).
FACTS_CASES = {
    "wrong-version": ("version: 2\nsources: {}\n", "bad-facts.yaml:1: unsupported facts version 2"),
    "missing-version": ("sources: {}\n", "bad-facts.yaml:1: missing 'version: 1'"),
    "bad-kind": ("version: 1\nsources:\n  /srv/vm/minimal.img: {kind: fil}\n", "bad-facts.yaml:3: "),
    "bad-bool": ("version: 1\nsources:\n  /srv/vm/minimal.img: {kind: file, allocated: maybe}\n",
                 "bad-facts.yaml:3: source /srv/vm/minimal.img: allocated must be true or false"),
    "negative-size": ("version: 1\nsources:\n  /a: {kind: file, size: -1}\n", "bad-facts.yaml:3: "),
    "relative-path": ("version: 1\nsources:\n  images/a.raw: {kind: file}\n", "bad-facts.yaml:3: "),
    "host-type": ("version: 1\nhost: {io_uring: 1}\n", "bad-facts.yaml:2: host: io_uring must be true or false"),
    "qemu-version-float": ("version: 1\nhost: {qemu_version: 7.2}\n", "bad-facts.yaml:2: "),
    "invalid-yaml": ("version: 1\nsources: [unclosed\n", "bad-facts.yaml:3: invalid YAML"),
    "duplicate-source": ("version: 1\nsources:\n  /a: {kind: file}\n  /a: {kind: block}\n",
                         "bad-facts.yaml:4: sources: duplicate key '/a'"),
    "bad-volume-name": ("version: 1\nvolumes:\n  novolume: {kind: file}\n", "bad-facts.yaml:3: "),
    "source-not-mapping": ("version: 1\nsources:\n  /a: file\n", "bad-facts.yaml:3: "),
    "empty": ("", "bad-facts.yaml: empty facts file"),
    "not-a-mapping": ("- 1\n", "bad-facts.yaml:1: "),
    "alias-bomb-known-key": (ALIAS_BOMB.replace("rules: []\n", "host: {qemu_version: *i}\n"),
                             "bad-facts.yaml:10: host: qemu_version must be a string"),
    "alias-bomb-version": (ALIAS_BOMB.replace("version: 1\n", "").replace("rules: []\n", "version: *i\n"),
                           "bad-facts.yaml:9: unsupported facts version"),
    "alias-bomb-key": (ALIAS_BOMB.replace("rules: []\n", "sources:\n  *i : {kind: file}\n"),
                       "bad-facts.yaml:10: sources: keys must be strings"),
    "python-tag": ("version: 1\nsources:\n  /a: !!python/object/apply:os.system ['true']\n", "bad-facts.yaml:3: "),
}


@pytest.mark.parametrize("case", sorted(FACTS_CASES))
def test_bad_facts(env, tmp_path, case):
    text, expected = FACTS_CASES[case]
    facts = tmp_path / "bad-facts.yaml"
    facts.write_text(text)
    res = aiohook(env, "plan", "--facts", facts, GOOD, timeout=30)
    one_line_error(res, EXIT_BAD_FACTS, expected)
    out = tmp_path / "out"
    out.mkdir()
    res = aiohook(env, "rewrite", "--facts", facts, "--output-dir", out, GOOD,
                  FIXTURES / "nova-lvm-ephemeral.xml", timeout=30)
    one_line_error(res, EXIT_BAD_FACTS, expected)
    assert list(out.iterdir()) == [] and res.stdout == b""


def test_facts_non_utf8(env, tmp_path):
    facts = tmp_path / "bad-facts.yaml"
    facts.write_bytes(b"version: 1\nhost: {qemu_version: \"\xff\"}\n")
    one_line_error(aiohook(env, "plan", "--facts", facts, GOOD), EXIT_BAD_FACTS, "not UTF-8")


def test_facts_missing(env, tmp_path):
    one_line_error(aiohook(env, "plan", "--facts", tmp_path / "none.yaml", GOOD), EXIT_IO, "none.yaml")


def test_usage_errors(env):
    for args in (["plan"], ["rewrite"], ["frobnicate"], ["plan", "--format", "xml", str(GOOD)]):
        res = aiohook(env, *args)
        assert res.returncode == EXIT_USAGE, (args, res.stderr)
        assert b"Traceback" not in res.stderr
