"""aiohook settings: /etc/aiohook/aiohook.yaml, else the packaged default.

The keys are a contract (README "Settings"):

    enforce: off | warn | refuse            default warn
    on_error: allow | refuse                default allow
    on_budget_exceeded: refuse | degrade | warn   default refuse
    budget:
      reserve_events: N                     default 0 (int >= 0)
      check: events_max | events_at_start   default events_max
    rules: PATH | PROFILE                   default: CONFIG_DIR/rules.yaml, else packaged

Strict: an unknown key, a wrong type or value is an error naming file:line and
the key. The validated result is cached as JSON keyed by the sha256 of the
aiohook version, the file's path and its content, so a cache hit (the hook's
hot path) costs one read, one hash and a JSON load: no yaml import, and
neither hashlib nor json (aiohook.cachekey, aiohook.jsonlite: issue 11).

AIOHOOK_CONFIG_DIR moves the config directory (tests).
"""

from __future__ import annotations

import os

from aiohook.errors import PolicyError
from aiohook.paths import config_dir, packaged

SETTINGS_FILE = "aiohook.yaml"
MAX_SETTINGS_BYTES = 1 << 20

ENFORCE = ("off", "warn", "refuse")
ON_ERROR = ("allow", "refuse")
ON_BUDGET_EXCEEDED = ("refuse", "degrade", "warn")
BUDGET_CHECK = ("events_max", "events_at_start")

DEFAULTS = {
    "enforce": "warn",
    "on_error": "allow",
    "on_budget_exceeded": "refuse",
    "budget_reserve_events": 0,
    "budget_check": "events_max",
    "rules": None,
}
TOP_KEYS = ("enforce", "on_error", "on_budget_exceeded", "budget", "rules")
BUDGET_KEYS = ("reserve_events", "check")


class SettingsError(PolicyError):
    """An invalid settings file (exit code 4, like an invalid rules file)."""


class Settings:
    """Effective settings. Attributes: enforce, on_error, on_budget_exceeded,
    budget_reserve_events, budget_check, rules (a resolved path, a profile name
    or None), source (the file read, or None for built-in defaults)."""

    __slots__ = tuple(DEFAULTS) + ("source",)

    def __init__(self, source: str | None = None, **values):
        for key, default in DEFAULTS.items():
            setattr(self, key, values.get(key, default))
        self.source = source

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in DEFAULTS}

    def to_yaml_dict(self) -> dict:
        """The effective values in the file's own shape (for `aiohook status`)."""
        return {
            "enforce": self.enforce,
            "on_error": self.on_error,
            "on_budget_exceeded": self.on_budget_exceeded,
            "budget": {"reserve_events": self.budget_reserve_events, "check": self.budget_check},
            "rules": self.rules,
        }

    def __repr__(self) -> str:
        return f"Settings(source={self.source!r}, {self.to_dict()!r})"


def settings_path() -> str:
    """CONFIG_DIR/aiohook.yaml when it exists (even unreadable), else the packaged default."""
    local = os.path.join(config_dir(), SETTINGS_FILE)
    if os.path.lexists(local):
        return local
    return packaged("data", SETTINGS_FILE)


def load_settings(path: str | None = None, *, use_cache: bool = True) -> Settings:
    from aiohook.policy.loader import load_compiled

    path = path or settings_path()
    data = _read(path)
    return load_compiled("settings", (os.path.abspath(path).encode(), data),
                         lambda: parse_settings(data, path),
                         lambda values: _revive(path, values), Settings.to_dict,
                         use_cache=use_cache)


def _revive(path: str, values: dict) -> Settings:
    if set(values) != set(DEFAULTS):
        raise KeyError("a cached entry from another set of keys")
    return Settings(path, **values)


def _read(path: str) -> bytes:
    from aiohook.fsutil import read_policy

    data = read_policy(path, MAX_SETTINGS_BYTES)  # the hook: StrictModes check (fsutil)
    if len(data) > MAX_SETTINGS_BYTES:
        raise SettingsError(f"settings file is over {MAX_SETTINGS_BYTES} bytes", file=path)
    return data


def parse_settings(data: bytes, path: str) -> Settings:
    """Validate settings YAML strictly; errors name file:line and the key."""
    from aiohook.yamlsource import load_located

    doc = load_located(data, path, SettingsError)
    top = doc.data
    if top is None:
        return Settings(path)
    if not isinstance(top, dict):
        raise SettingsError("settings must be a mapping of keys to values", file=path,
                            line=doc.line(()))

    def fail(where: tuple, message: str):
        raise SettingsError(message, file=path, line=doc.line(where))

    values: dict = {}
    for key, value in top.items():
        if key not in TOP_KEYS:
            fail((key,), _unknown(key, TOP_KEYS, ""))
        if key == "budget":
            if value is None:
                continue
            if not isinstance(value, dict):
                fail((key,), "budget: expected a mapping with reserve_events and/or check")
            for sub, subvalue in value.items():
                where = (key, sub)
                if sub not in BUDGET_KEYS:
                    fail(where, _unknown(sub, BUDGET_KEYS, "budget."))
                if sub == "reserve_events":
                    if isinstance(subvalue, bool) or not isinstance(subvalue, int) or subvalue < 0:
                        fail(where, f"budget.reserve_events: expected an integer >= 0, "
                                    f"got {subvalue!r}")
                    values["budget_reserve_events"] = subvalue
                else:
                    values["budget_check"] = _choice(f"budget.{sub}", subvalue, BUDGET_CHECK,
                                                     lambda m, w=where: fail(w, m))
        elif key == "rules":
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                fail((key,), f"rules: expected a file path or profile name, got {value!r}")
            values["rules"] = _resolve_rules(value.strip(), path)
        else:
            allowed = {"enforce": ENFORCE, "on_error": ON_ERROR,
                       "on_budget_exceeded": ON_BUDGET_EXCEEDED}[key]
            if key == "enforce" and value is False:
                value = "off"  # YAML 1.1 reads a bare `off` (and `no`, `false`) as false
            values[key] = _choice(key, value, allowed, lambda m, k=key: fail((k,), m))
    return Settings(path, **values)


def _choice(name: str, value, allowed: tuple, fail) -> str:
    if isinstance(value, str) and value in allowed:
        return value
    shown = {True: "true/on/yes", False: "false/off/no"}.get(value, repr(value)) \
        if isinstance(value, bool) else repr(value)
    fail(f"{name}: expected one of {', '.join(allowed)}, got {shown}")
    raise AssertionError  # fail raises


def _unknown(key, known: tuple, prefix: str) -> str:
    import difflib

    hint = difflib.get_close_matches(str(key), known, n=1)
    near = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
    return f"unknown key '{prefix}{key}'{near}; known keys: {', '.join(prefix + k for k in known)}"


def _resolve_rules(spec: str, settings_file: str) -> str:
    from aiohook.policy.loader import PROFILES

    if spec in PROFILES:
        return spec
    spec = os.path.expanduser(spec)
    if not os.path.isabs(spec):
        spec = os.path.join(os.path.dirname(os.path.abspath(settings_file)), spec)
    return spec
