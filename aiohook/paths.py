"""Where aiohook keeps things on a host. Each can be moved by one environment variable."""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def config_dir() -> str:
    """Settings and rules: /etc/aiohook (AIOHOOK_CONFIG_DIR moves it, e.g. for tests)."""
    return os.environ.get("AIOHOOK_CONFIG_DIR") or "/etc/aiohook"


def state_dir() -> str:
    """Runtime state such as the AIO reservation ledger: /run/aiohook."""
    return os.environ.get("AIOHOOK_STATE_DIR") or "/run/aiohook"


def log_dir() -> str:
    return os.environ.get("AIOHOOK_LOG_DIR") or "/var/log/aiohook"


def cache_dir() -> str:
    """Compiled rules and probed emulator versions: /var/cache/aiohook when writable."""
    env = os.environ.get("AIOHOOK_CACHE_DIR")
    if env:
        return env
    system = "/var/cache/aiohook"
    if os.geteuid() == 0 or os.access(system, os.W_OK):
        return system
    return f"/tmp/aiohook-cache-{os.geteuid()}"


def packaged(*parts: str) -> str:
    return os.path.join(PACKAGE_DIR, *parts)
