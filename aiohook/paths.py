"""Where aiohook keeps things on a host. Each can be moved by one environment variable."""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG_DIR = "/etc/aiohook"


def config_dir() -> str:
    """Settings and rules: /etc/aiohook (AIOHOOK_CONFIG_DIR moves it, e.g. for tests)."""
    return os.environ.get("AIOHOOK_CONFIG_DIR") or DEFAULT_CONFIG_DIR


def state_dir() -> str:
    """Runtime state such as the AIO reservation ledger: /run/aiohook."""
    return os.environ.get("AIOHOOK_STATE_DIR") or "/run/aiohook"


def log_dir() -> str:
    return os.environ.get("AIOHOOK_LOG_DIR") or "/var/log/aiohook"


def cache_dir() -> str | None:
    """Compiled rules and probed binaries: AIOHOOK_CACHE_DIR, else /var/cache/aiohook
    when usable, else a private dir in /tmp; None when no safe place exists."""
    env = os.environ.get("AIOHOOK_CACHE_DIR")
    if env:
        return env
    system = "/var/cache/aiohook"
    try:
        os.makedirs(system, mode=0o755, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    import stat
    import tempfile

    private = os.path.join(tempfile.gettempdir(), f"aiohook-cache-{os.geteuid()}")
    try:
        os.mkdir(private, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(private)
    # In a world-writable /tmp only trust a real directory that is ours.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    return private


def packaged(*parts: str) -> str:
    return os.path.join(PACKAGE_DIR, *parts)
