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
the key. The file is checked against aiohook/schemas/settings.schema.json by the
one config loader (aiohook/config.py), which also words the errors (the
schema's x-message); the builder here only maps YAML 1.1's bare `off` (read as
false) to "off" and resolves a relative rules path.

The validated result is cached as JSON keyed by the sha256 of the aiohook
version, the file's path and its content, so a cache hit (the hook's hot path)
costs one read, one hash and a JSON load: no yaml or jsonschema import, and
neither hashlib nor json (aiohook.cachekey, aiohook.jsonlite: issue 11).

AIOHOOK_CONFIG_DIR moves the config directory (tests).
"""

from __future__ import annotations

import os

from aiohook.errors import PolicyError
from aiohook.paths import config_dir, packaged

SETTINGS_FILE = "aiohook.yaml"
MAX_SETTINGS_BYTES = 1 << 20

SETTINGS_SCHEMA = "settings.schema.json"

# The schema's defaults, spelled here too: a cache hit reads no schema
# (tests/test_settings.py checks that the two agree).
DEFAULTS = {
    "enforce": "warn",
    "on_error": "allow",
    "on_budget_exceeded": "refuse",
    "budget_reserve_events": 0,
    "budget_check": "events_max",
    "rules": None,
}


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
    """Validate settings YAML strictly (config's loader and settings.schema.json);
    errors name file:line and the key."""
    from aiohook import config

    return config.load(data, path, SETTINGS_SCHEMA, SettingsError,
                       lambda doc: _build(doc.data or {}, path))


def _build(top: dict, path: str) -> Settings:
    """The builder: what the schema cannot say."""
    values = {key: top[key] for key in ("enforce", "on_error", "on_budget_exceeded")
              if key in top}
    if values.get("enforce") is False:
        values["enforce"] = "off"  # YAML 1.1 reads a bare `off` (and `no`, `false`) as false
    budget = top.get("budget") or {}
    if "reserve_events" in budget:
        values["budget_reserve_events"] = budget["reserve_events"]
    if "check" in budget:
        values["budget_check"] = budget["check"]
    if top.get("rules") is not None:
        values["rules"] = _resolve_rules(top["rules"].strip(), path)
    return Settings(path, **values)


def _resolve_rules(spec: str, settings_file: str) -> str:
    from aiohook.policy.loader import PROFILES

    if spec in PROFILES:
        return spec
    spec = os.path.expanduser(spec)
    if not os.path.isabs(spec):
        spec = os.path.join(os.path.dirname(os.path.abspath(settings_file)), spec)
    return spec
