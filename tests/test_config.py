"""aiohook.config: the one loader (YAML with lines, a schema, an error type, a
builder) and its one jsonschema-error translator, shared by the rules, the
settings and the test manifests (issue 12, item 3). The wording lives in the
schemas (x-message, x-label), not in per-caller code."""

from __future__ import annotations

import copy
import os
import string

import jsonschema
import pytest

from aiohook import config
from aiohook.errors import FileAccessError, PolicyError
from aiohook.settings import SettingsError

SCHEMAS = (config.RULES, config.SETTINGS, config.TEST_MANIFEST)
TEMPLATE_FIELDS = {"key", "name", "near", "known", "context", "value", "got", "allowed",
                   "message"}

RULES = """version: 1
rules:
  - name: first
    description: the first rule
    match:
      class: block
    action:
      io: native
"""
MANIFEST = """version: 1
domains:
  - file: a.xml
results:
  - id: r1
    domain: a
    disk: vda
    io: native
"""


def messages(text: str, schema_name: str) -> list[str]:
    doc, found = config.validate(text.encode(), "f.yaml", schema_name, PolicyError)
    return [p.render("f.yaml") for p in found]


def walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from walk(value, path + (n,))


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_valid_and_its_templates_use_known_fields(name):
    schema = config.schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    for path, node in walk(schema):
        custom = node.get("x-message")
        templates = list(custom.values()) if isinstance(custom, dict) else \
            [custom] if custom is not None else []
        for template in templates:
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            assert used <= TEMPLATE_FIELDS, (path, used - TEMPLATE_FIELDS)


@pytest.mark.parametrize("name,text", [(config.RULES, RULES), (config.TEST_MANIFEST, MANIFEST)])
def test_valid_documents_have_no_problems(name, text):
    assert messages(text, name) == []


def test_one_translator_words_unknown_keys_alike_unless_the_schema_says_otherwise():
    assert messages(RULES + "colour: red\n", config.RULES) == [
        "f.yaml:9: unknown key 'colour' at the top level"]
    assert messages(MANIFEST + "colour: red\n", config.TEST_MANIFEST) == [
        "f.yaml:9: unknown key 'colour' at the top level"]
    # settings.schema.json's x-message adds the hint and the known keys
    assert messages("enforc: warn\n", config.SETTINGS) == [
        "f.yaml:1: unknown key 'enforc' (did you mean 'enforce'?); known keys: enforce, "
        "on_error, on_budget_exceeded, budget, rules"]


def test_each_unknown_key_is_its_own_problem_on_its_own_line():
    assert messages(RULES + "colour: red\nflavour: x\n", config.RULES) == [
        "f.yaml:9: unknown key 'colour' at the top level",
        "f.yaml:10: unknown key 'flavour' at the top level"]


def test_labels_come_from_the_schema():
    assert messages(RULES.replace("    description: the first rule\n", ""), config.RULES) == [
        "f.yaml:3: rule 'first': missing key 'description' in 'rules'"]
    assert messages(RULES.replace("  - name: first\n    description", "  - description"),
                    config.RULES) == ["f.yaml:3: rule #1: missing key 'name' in 'rules'"]
    assert messages(MANIFEST.replace("file: a.xml", "file: 5"), config.TEST_MANIFEST) == [
        "f.yaml:3: domain #1: 'file': 5 is not of type 'string'"]
    assert messages(MANIFEST.replace("    io: native\n", ""), config.TEST_MANIFEST) == [
        "f.yaml:5: expectation 'r1': needs at least one of rule, class, io, cache"]


def test_the_alternative_the_author_meant_names_the_problem():
    text = RULES.replace("      class: block\n", "      any:\n        - class: blok\n")
    assert messages(text, config.RULES) == [
        "f.yaml:7: rule 'first': condition 'class': 'blok' is not one of block, "
        "file-preallocated, file-sparse, network, empty, other, unknown"]


def test_the_wording_is_the_schemas(monkeypatch):
    """Change an x-message in the data and the message changes: no caller branch."""
    schema = copy.deepcopy(config.schema(config.RULES))
    schema["properties"]["version"]["x-message"] = "version {value}? we read 1"
    monkeypatch.setitem(config._SCHEMAS, config.RULES, schema)
    assert messages(RULES.replace("version: 1", "version: 3"), config.RULES) == [
        "f.yaml:1: version 3? we read 1"]
    del schema["properties"]["version"]["x-message"]
    assert messages(RULES.replace("version: 1", "version: 3"), config.RULES) == [
        "f.yaml:1: 'version': 1 was expected"]


def test_load_raises_the_callers_error_with_the_first_problem_and_a_count():
    with pytest.raises(SettingsError) as err:
        config.load(b"on_error: maybe\nenforce: sometimes\n", "s.yaml", config.SETTINGS,
                    SettingsError)
    assert err.value.one_line() == ("s.yaml:1: on_error: expected one of allow, refuse, "
                                    "got 'maybe' (and 1 more problems)")


def test_load_hands_the_validated_document_to_the_builder():
    built = config.load(b"enforce: refuse\n", "s.yaml", config.SETTINGS, SettingsError,
                        lambda doc: (doc.data, doc.line(("enforce",))))
    assert built == ({"enforce": "refuse"}, 1)


def test_load_file(tmp_path):
    path = tmp_path / "aiohook-test.yaml"
    path.write_text(MANIFEST)
    assert config.load_file(str(path), config.TEST_MANIFEST, PolicyError).data["version"] == 1
    with pytest.raises(FileAccessError):
        config.load_file(os.fspath(tmp_path / "gone.yaml"), config.TEST_MANIFEST, PolicyError)


def test_yaml_errors_keep_the_callers_error_type():
    with pytest.raises(SettingsError, match=r"^s\.yaml:2: duplicate key 'enforce'"):
        config.load(b"enforce: warn\nenforce: off\n", "s.yaml", config.SETTINGS, SettingsError)
