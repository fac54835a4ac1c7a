"""Rulesets: load rules.yaml, validate it (schema + semantics), compile it.

A compiled ruleset is plain JSON-able data. The hook loads it from a cache
keyed by the file's content hash, so its hot path never imports yaml or
jsonschema (policy/loader.py, load_compiled).
"""

from __future__ import annotations

from aiohook.errors import PolicyError
from aiohook.policy.conditions import CONDITIONS, UNSET
from aiohook.record import FrozenRecord, Record, _set

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiohook import config

RULES_SCHEMA = "rules.schema.json"
IO_PREFERENCES = ("native", "threads", "io_uring")


class Action(FrozenRecord):
    FIELDS = ("io", "cache", "cache_if_unset")

    def __init__(self, io: tuple[str, ...], cache: str | None = None,
                 cache_if_unset: str | None = None):
        _set(self, "io", io)  # preference list; keep/unset are single-item lists
        _set(self, "cache", cache)  # force this cache mode
        _set(self, "cache_if_unset", cache_if_unset)  # fill this cache mode when the XML has none


class Rule(FrozenRecord):
    FIELDS = ("name", "description", "match", "exclude", "action", "line")

    def __init__(self, name: str, description: str, match: tuple, exclude: tuple,
                 action: Action, line: int | None = None):
        _set(self, "name", name)
        _set(self, "description", description)
        _set(self, "match", match)  # disjunction of conjunctions of (key, normalized arg)
        _set(self, "exclude", exclude)
        _set(self, "action", action)
        _set(self, "line", line)

    def selects(self, facts) -> bool:
        return _any(self.match, facts) and not (self.exclude and _any(self.exclude, facts))


def _any(dnf, facts) -> bool:
    """Some conjunction of dnf holds (loops, not nested generators: run per rule per disk)."""
    for conj in dnf:
        for key, arg in conj:
            if not CONDITIONS[key].test(facts, arg):
                break
        else:
            return True
    return False


class Ruleset(Record):
    FIELDS = ("rules", "source", "digest", "description", "problems")

    def __init__(self, rules: list[Rule], source: str, digest: str = "", description: str = "",
                 problems: list[str] | None = None):
        self.rules = rules
        self.source = source
        self.digest = digest
        self.description = description
        self.problems = [] if problems is None else problems

    def by_name(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    # --- compiled form ---------------------------------------------------
    def to_compiled(self) -> dict:
        return {
            "source": self.source,
            "digest": self.digest,
            "rules": [
                {
                    "name": r.name,
                    "description": r.description,
                    "line": r.line,
                    "match": [[[k, _jsonable(a)] for k, a in c] for c in r.match],
                    "exclude": [[[k, _jsonable(a)] for k, a in c] for c in r.exclude],
                    "action": {"io": list(r.action.io), "cache": r.action.cache,
                               "cache_if_unset": r.action.cache_if_unset},
                }
                for r in self.rules
            ],
        }

    @classmethod
    def from_compiled(cls, data: dict) -> Ruleset:
        def dnf(raw):
            return tuple(tuple((k, tuple(a) if isinstance(a, list) else a) for k, a in c)
                         for c in raw)

        rules = [
            Rule(
                name=r["name"], description=r["description"], line=r["line"],
                match=dnf(r["match"]), exclude=dnf(r["exclude"]),
                action=Action(tuple(r["action"]["io"]), r["action"]["cache"],
                              r["action"]["cache_if_unset"]),
            )
            for r in data["rules"]
        ]
        return cls(rules, data["source"], data["digest"])


def _jsonable(arg: Any) -> Any:
    return list(arg) if isinstance(arg, tuple) else arg


# --- loading and validation ----------------------------------------------

def schema() -> dict:
    from aiohook import config

    return config.schema(RULES_SCHEMA)


def parse_ruleset(text: bytes, filename: str) -> Ruleset:
    """Validate and build a Ruleset; raise PolicyError naming the first problem."""
    from aiohook import config

    doc, problems = _validated(text, filename)
    config.raise_first(problems, filename, PolicyError)
    return _build(doc, text)


def validate_ruleset(text: bytes, filename: str) -> list[config.Problem]:
    """Every schema problem, or else every semantic error (the error tier of
    `rules lint`), each with its line; a semantic error names its rule."""
    return _validated(text, filename)[1]


def _validated(text: bytes, filename: str) -> tuple[Any, list[config.Problem]]:
    """The document and its problems: the schema's (config's one translator, the
    wording in rules.schema.json), else the semantic errors."""
    from aiohook import config

    doc, problems = config.validate(text, filename, RULES_SCHEMA, PolicyError)
    if not problems:
        problems = [config.Problem(p.line, f"rule '{p.rule}': {p.message}")
                    for p in rule_problems(doc) if p.error]
    problems.sort(key=lambda p: (p.line or 0))
    return doc, problems


def _schema_problems(doc) -> list[config.Problem]:
    """The schema problems of a ruleset document (also `rules lint`'s schema tier)."""
    from aiohook import config

    return config.problems(doc, RULES_SCHEMA)


def _selector(raw: Any) -> tuple:
    if raw is None:
        return ((),)
    if "any" in raw and len(raw) == 1:
        return tuple(_conjunction(c) for c in raw["any"])
    if "all" in raw and len(raw) == 1:
        return (tuple(pair for c in raw["all"] for pair in _conjunction(c)),)
    return (_conjunction(raw),)


def _conjunction(raw: dict) -> tuple:
    return tuple((k, CONDITIONS[k].normalize(v)) for k, v in raw.items())


class RuleProblem(FrozenRecord):
    """A semantic problem of one rule; an error when the rule can never select a disk.

    `rules lint` reports every one (its check is the lint name); `rules validate`
    and loading report the errors.
    """

    FIELDS = ("check", "rule", "line", "message", "error")

    def __init__(self, check: str, rule: str, line: int | None, message: str, error: bool):
        _set(self, "check", check)
        _set(self, "rule", rule)
        _set(self, "line", line)
        _set(self, "message", message)
        _set(self, "error", error)


def rule_problems(doc) -> list[RuleProblem]:
    """Duplicate names and contradictions in a schema-valid ruleset document, rule by rule."""
    problems = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(doc.data["rules"]):
        path = ("rules", i)
        name = raw["name"]
        name_line = doc.line(path + ("name",))
        if name in seen:
            problems.append(RuleProblem("duplicate-name", name, name_line,
                                        f"duplicate name (first at line {seen[name]})", True))
        else:
            seen[name] = name_line
        match_line = doc.line(path + ("match",))
        whys = [contradiction(conj) for conj in _selector(raw.get("match"))]
        if all(whys):
            problems.append(RuleProblem("contradiction", name, match_line,
                                        f"can never match: {'; '.join(whys)}", True))
        else:
            problems += [RuleProblem("contradiction", name, match_line,
                                     f"'match' alternative {n} can never hold: {why}", False)
                         for n, why in enumerate(whys, 1) if why]
        if raw.get("exclude") is None:
            continue
        exclude_line = doc.line(path + ("exclude",))
        for n, conj in enumerate(_selector(raw["exclude"]), 1):
            if conj == ():
                problems.append(RuleProblem("excludes-everything", name, exclude_line,
                                            "can never match: 'exclude' excludes everything", True))
            elif contradiction(conj):
                problems.append(RuleProblem(
                    "contradiction", name, exclude_line,
                    f"'exclude' alternative {n} can never hold: {contradiction(conj)}", False))
    return problems


def contradiction(conj: tuple) -> str | None:
    """Why a conjunction of conditions can never hold, or None."""
    by_key: dict[str, list] = {}
    for key, arg in conj:
        by_key.setdefault(key, []).append(arg)
    for key, args in by_key.items():
        cond = CONDITIONS[key]
        if cond.kind == "bool":
            if len(set(args)) > 1:
                return f"'{key}' must be both true and false"
            continue
        if cond.kind in ("enum", "word"):
            common = set(args[0])
            for arg in args[1:]:
                common &= set(arg)
            if not common:
                return f"'{key}' must be {' and '.join('/'.join(a) for a in args)} at once"
    return None


def build_ruleset(text: bytes, filename: str) -> Ruleset:
    """The Ruleset of a valid rules file (validate_ruleset found no problem)."""
    from aiohook.yamlsource import load_located

    return _build(load_located(text, filename, PolicyError), text)


def _build(doc, text: bytes) -> Ruleset:
    """The builder: a validated document -> Ruleset (digest of the file's bytes)."""
    import hashlib

    rules = []
    for i, raw in enumerate(doc.data["rules"]):
        act = raw["action"]
        io = act["io"]
        rules.append(Rule(
            name=raw["name"],
            description=" ".join(raw["description"].split()),
            match=_selector(raw.get("match")),
            exclude=_selector(raw["exclude"]) if raw.get("exclude") is not None else (),
            action=Action(tuple(io) if isinstance(io, list) else (io,), act.get("cache"),
                          act.get("cache_if_unset")),
            line=doc.line(("rules", i)),
        ))
    return Ruleset(rules, doc.filename, hashlib.sha256(text).hexdigest(),
                   description=doc.data.get("description", ""))


__all__ = ["Action", "Rule", "Ruleset", "RuleProblem", "parse_ruleset",
           "validate_ruleset", "rule_problems", "build_ruleset", "contradiction", "UNSET",
           "IO_PREFERENCES"]
