"""Find and load a ruleset, through a compiled cache keyed by content hash.

A cache hit costs a file read, a sha256 and a JSON load: no yaml, no jsonschema,
and neither hashlib nor json (aiohook.cachekey, aiohook.jsonlite: issue 11).
"""

from __future__ import annotations

import os

from aiohook import __version__, jsonlite
from aiohook.cachekey import sha256_hex
from aiohook.errors import AiohookError, PolicyError
from aiohook.fsutil import read_policy
from aiohook.paths import cache_dir, config_dir, packaged
from aiohook.policy.ruleset import Ruleset

MAX_RULES_BYTES = 4 << 20
PROFILES = ("default", "io_uring", "conservative")


def default_rules_path() -> str:
    local = os.path.join(config_dir(), "rules.yaml")
    return local if os.path.exists(local) else packaged("rules.yaml")


def profile_path(name: str) -> str:
    if name == "default":
        return packaged("rules.yaml")
    return packaged("profiles", f"{name}.yaml")


def resolve_rules_path(spec: str | None) -> str:
    """A path, a packaged profile name ('io_uring', 'conservative', 'default'), or None."""
    if spec is None:
        return default_rules_path()
    if spec in PROFILES and not os.path.isfile(spec):
        return profile_path(spec)
    return spec


def load_ruleset(spec: str | None = None, *, use_cache: bool = True) -> Ruleset:
    path = resolve_rules_path(spec)
    data = read_policy(path, MAX_RULES_BYTES)  # the hook: StrictModes check (fsutil)
    if len(data) > MAX_RULES_BYTES:
        raise PolicyError(f"rules file is over {MAX_RULES_BYTES} bytes", file=path)

    def compile_rules() -> Ruleset:
        from aiohook.policy.ruleset import parse_ruleset

        return parse_ruleset(data, path)

    ruleset = load_compiled("rules", (data,), compile_rules, Ruleset.from_compiled,
                            Ruleset.to_compiled, use_cache=use_cache)
    ruleset.source = path
    return ruleset


def load_compiled(kind: str, key: tuple[bytes, ...], compile, revive, dump, *,
                  use_cache: bool = True):
    """The compiled cache shared by the rules and the settings: a JSON file in
    cache_dir() named by the sha256 of the aiohook version and `key`. A hit is
    revive(the JSON); a miss (or an unreadable entry) is compile(), stored as
    dump(result) when a cache directory is usable. No usable cache directory,
    or an unwritable one, only costs speed."""
    directory = cache_dir() if use_cache else None
    if directory is None:
        return compile()
    digest = sha256_hex(b"\0".join((__version__.encode(),) + key))
    cached = os.path.join(directory, f"{kind}-{digest[:32]}.json")
    try:
        with open(cached, "rb") as fh:
            return revive(jsonlite.loads(fh.read()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compile()
    from aiohook.fsutil import atomic_write

    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        atomic_write(cached, jsonlite.dumps(dump(value)).encode())
    except (OSError, AiohookError):  # caching must never fail a load
        pass
    return value
