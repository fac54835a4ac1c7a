"""The one config loader: bytes or a path, a schema, an error type; a builder after.

Every YAML config aiohook reads (the rules, the settings, the test manifests)
is loaded the same way:

1. read with line numbers (yamlsource.load_located): invalid YAML, duplicate
   keys, unknown tags and alias bombs are the error type's file:line errors;
2. validated against a JSON Schema in aiohook/schemas (Draft 2020-12), every
   problem translated by the one translator below into a one-line message
   with the line of the value it is about;
3. handed to the caller's builder, which turns the validated data into objects
   and does only what a schema cannot (resolve paths, map YAML 1.1 `off`...).

Wording belongs to the schemas, not to this code. The translator reads these
keywords (JSON Schema ignores unknown `x-` keywords):

- "x-message" on a subschema: a template for its failures, either one string
  for every keyword or an object keyword -> template ({"oneOf": "..."}).
  Without one, the defaults in DEFAULT_MESSAGES apply.
- "x-label" on a subschema: a list of templates prefixed to every message
  about a value inside it; the first whose fields the value has wins
  (["rule '{name}': ", "rule #{number}: "]).

Template fields: {key} (the unknown or missing key, else the last key of the
path), {name} (that key's dotted path: budget.check), {near} (" (did you mean
'...'?)" or ""), {known} (the mapping's keys, dotted), {context} (" at the top
level", " in 'match'"), {value} (repr of the value), {got} (the value as YAML
wrote it: true/on/yes for a boolean), {allowed} (the values or keys the schema
accepts there, from an enum or the first alternative of a oneOf/anyOf),
{message} (jsonschema's own wording). A label's fields are the string values
of its mapping, and {number} (1-based) when it is a list item.

This module is never imported on the hook's hot path: a compiled-cache hit
(policy/loader.py load_compiled) needs neither yaml nor jsonschema.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohook.errors import AiohookError
from aiohook.record import Record
from aiohook.yamlsource import LocatedYAML, load_located

RULES = "rules.schema.json"
SETTINGS = "settings.schema.json"
TEST_MANIFEST = "test-manifest.schema.json"

MAX_CONFIG_BYTES = 4 << 20

DEFAULT_MESSAGES = {
    "additionalProperties": "unknown key '{key}'{context}",
    "required": "missing key '{key}'{context}",
    "enum": "'{key}': {value} is not one of {allowed}",
    None: "'{key}': {message}",  # any other keyword
}
_BOOL_WORDS = {True: "true/on/yes", False: "false/off/no"}

_SCHEMAS: dict[str, dict] = {}


class Problem(Record):
    """One schema problem: the line it is on, the message, the path of the value."""

    FIELDS = ("line", "message", "path")

    def __init__(self, line: int | None, message: str, path: tuple = ()):
        self.line = line
        self.message = message
        self.path = path

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.message}"


def schema(name: str) -> dict:
    """A packaged schema (aiohook/schemas/NAME), parsed once per process."""
    if name not in _SCHEMAS:
        text = resources.files("aiohook.schemas").joinpath(name).read_text()
        _SCHEMAS[name] = json.loads(text)
    return _SCHEMAS[name]


# --- the loader -----------------------------------------------------------------


def load(data: bytes | str, filename: str, schema_name: str, error: type[AiohookError],
         build=None):
    """Read YAML, validate it against schema_name and return build(doc), or the
    LocatedYAML doc when there is no builder. The first problem raises `error`
    with file:line, counting the others: "... (and 2 more problems)"."""
    doc, found = validate(data, filename, schema_name, error)
    raise_first(found, filename, error)
    return build(doc) if build is not None else doc


def validate(data: bytes | str, filename: str, schema_name: str,
             error: type[AiohookError]) -> tuple[LocatedYAML, list[Problem]]:
    """The document and every schema problem in it (for callers that list them
    all, as `rules validate` does). Unreadable YAML still raises `error`."""
    doc = load_located(data, filename, error)
    return doc, problems(doc, schema_name)


def load_file(path: str, schema_name: str, error: type[AiohookError], build=None, *,
              max_bytes: int = MAX_CONFIG_BYTES):
    """load() of a file's bytes (FileAccessError when it cannot be read)."""
    from aiohook.fsutil import read_bounded

    return load(read_bounded(path, max_bytes), path, schema_name, error, build)


def raise_first(found: list, filename: str, error: type[AiohookError]) -> None:
    """Raise `error` naming the first of `found` (problems sorted by line), if any."""
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        raise error(first.message + more, file=filename, line=first.line)


def problems(doc: LocatedYAML, schema_name: str) -> list[Problem]:
    """Every schema problem of doc, translated, deduplicated and sorted by line."""
    import jsonschema

    root = schema(schema_name)
    validator = jsonschema.Draft202012Validator(root)
    found: list[Problem] = []
    seen = set()
    for err in validator.iter_errors(doc.data):
        for path, message in describe(err, root, doc.data):
            if (path, message) not in seen:
                seen.add((path, message))
                found.append(Problem(doc.line(path), message, path))
    found.sort(key=lambda p: p.line or 0)
    return found


# --- the one translator -----------------------------------------------------------


def describe(err, root: dict, data) -> list[tuple[tuple, str]]:
    """(path, message) for one jsonschema error; most errors give one, an
    object with several unknown keys gives one per key."""
    import jsonschema.exceptions

    meant = _meant_branch(err, root)
    if meant is not None:
        # Name the real problem (an unknown condition, a bad value) rather than
        # "none of the forms fit": use the alternative the author meant.
        return describe(jsonschema.exceptions.best_match(meant), root, data)
    path = tuple(err.absolute_path)
    keyword = err.validator
    template = _template(err.schema, keyword)
    label = _label(err, root, data)
    if keyword in ("additionalProperties", "required") and isinstance(err.instance, dict):
        if keyword == "additionalProperties":
            known = _properties(err.schema, root)
            keys = [k for k in err.instance if k not in known and not _patterned(err.schema, k)]
        else:
            keys = [k for k in err.validator_value if k not in err.instance]
        where = (lambda key: path + (key,)) if keyword == "additionalProperties" \
            else (lambda key: path)
        return [(where(key), label + _format(template, err, root, path, key)) for key in keys]
    # the value's own key: the last key of its path (class, for class: [a, b]'s item)
    at = max((n for n, p in enumerate(path) if isinstance(p, str)), default=None)
    if at is None:
        if template is DEFAULT_MESSAGES[None]:
            template = "{message}"
        return [(path, label + _format(template, err, root, (), None))]
    return [(path, label + _format(template, err, root, path[:at], path[at]))]


def _template(subschema, keyword: str) -> str:
    custom = subschema.get("x-message") if isinstance(subschema, dict) else None
    if isinstance(custom, dict):
        custom = custom.get(keyword)
    if isinstance(custom, str):
        return custom
    return DEFAULT_MESSAGES.get(keyword, DEFAULT_MESSAGES[None])


def _format(template: str, err, root: dict, parent: tuple, key) -> str:
    """Fill a template; parent is the path of the mapping `key` is in."""
    prefix = ".".join(p for p in parent if isinstance(p, str))
    prefix = prefix + "." if prefix else ""
    names = _properties(err.schema, root)
    near = ""
    if key is not None and "{near}" in template:
        import difflib

        hint = difflib.get_close_matches(str(key), names, n=1)
        near = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
    instance = err.instance
    fields = {
        "key": "" if key is None else key,
        "name": prefix + ("" if key is None else str(key)),
        "near": near,
        "known": ", ".join(prefix + k for k in names),
        "context": _context(parent),
        "value": repr(instance),
        "got": _BOOL_WORDS[instance] if isinstance(instance, bool) else repr(instance),
        "allowed": ", ".join(str(v) for v in _allowed(err.schema, root)),
        "message": err.message,
    }
    return template.format(**fields)


def _context(path: tuple) -> str:
    if not path:
        return " at the top level"
    last = path[-1]
    if isinstance(last, int):
        last = path[-2] if len(path) > 1 else "item"
    return f" in '{last}'"


def _label(err, root: dict, data) -> str:
    """The innermost x-label of the subschemas err went through, filled from its value."""
    path = list(err.absolute_path)
    steps = list(err.absolute_schema_path)
    node, depth, label, i = root, 0, "", 0
    while True:
        node = _deref(node, root, steps[i] if i < len(steps) else None)
        if isinstance(node, dict) and "x-label" in node:
            label = _fill_label(node["x-label"], data, path[:depth])
        if i >= len(steps) or not isinstance(node, (dict, list)):
            return label
        step = steps[i]
        i += 1
        if step == "$ref":
            continue
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return label
        if step in ("properties", "patternProperties") and i < len(steps):
            node = node.get(steps[i]) if isinstance(node, dict) else None
            i += 1
            depth += 1
        elif step in ("items", "additionalProperties", "prefixItems") and depth < len(path):
            if step == "prefixItems":
                node = node[steps[i]]
                i += 1
            depth += 1


def _fill_label(templates, data, path: list) -> str:
    value = data
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return ""
    fields = {k: v for k, v in value.items() if isinstance(v, str)} \
        if isinstance(value, dict) else {}
    if path and isinstance(path[-1], int):
        fields["number"] = path[-1] + 1
    for template in [templates] if isinstance(templates, str) else templates:
        try:
            return template.format(**fields)
        except (KeyError, IndexError):
            continue
    return ""


def _meant_branch(err, root: dict):
    """The errors of the oneOf alternative a mapping was meant for: the one
    whose required keys it has (most of them wins), among object alternatives."""
    if err.validator != "oneOf" or not err.context or not isinstance(err.instance, dict) \
            or not err.instance:
        return None
    best, best_count = None, -1
    for n, branch in enumerate(err.validator_value):
        branch = _deref(branch, root)
        if not isinstance(branch, dict) or "properties" not in branch:
            continue
        required = branch.get("required", ())
        if all(k in err.instance for k in required) and len(required) > best_count:
            best, best_count = n, len(required)
    if best is None:
        return None
    sub = [e for e in err.context if e.relative_schema_path and e.relative_schema_path[0] == best]
    return sub or None


def _deref(node, root: dict, next_step=None):
    """Follow local $refs (#/$defs/x) unless the next step is in the node itself."""
    for _ in range(32):
        if not (isinstance(node, dict) and "$ref" in node) or next_step in node:
            return node
        node = _pointer(root, node["$ref"])
    return node


def _pointer(root: dict, ref: str):
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _properties(subschema, root: dict) -> list[str]:
    node = _deref(subschema, root)
    return list(node.get("properties", {})) if isinstance(node, dict) else []


def _patterned(subschema, key) -> bool:
    patterns = subschema.get("patternProperties", {}) if isinstance(subschema, dict) else {}
    if not patterns:
        return False
    import re

    return any(re.search(p, str(key)) for p in patterns)


def _allowed(subschema, root: dict) -> list:
    """What is accepted here: an enum's values, else the first alternative's
    values, else the keys of the mapping (or of its first alternative)."""
    node = _deref(subschema, root)
    if not isinstance(node, dict):
        return []
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    for keyword in ("oneOf", "anyOf"):
        for branch in node.get(keyword, ()):
            found = _allowed(branch, root)
            if found:
                return found
    return list(node.get("properties", {}))


__all__ = ["Problem", "schema", "load", "load_file", "validate", "problems", "raise_first", "describe",
           "RULES", "SETTINGS", "TEST_MANIFEST"]
