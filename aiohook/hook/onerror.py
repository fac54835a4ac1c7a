"""When aiohook itself fails in the hook, `on_error` decides, worded here once.

allow: the failure is logged loudly and libvirt goes on; refuse: the operation
is aborted with the reason on stderr, which libvirt shows. Imports only os
(and re, paths and fsutil when the settings could not be loaded).
"""

from __future__ import annotations

import os


def follow(policy: str, op: str, domain: str, what: str, *, source: str = "on_error",
           unchecked: str = "unchecked") -> tuple[str, int, str]:
    """(the message, the hook's exit status, the decision log's outcome) of a failure
    `what` at `op` of `domain` under on_error `policy`."""
    action = "start" if op == "prepare" else op
    if policy == "refuse":
        return (f"aiohook: refusing the {action} of {domain} ({source}: refuse): {what}", 1,
                "error-refused")
    return (f"aiohook: ERROR, letting the {action} of {domain} go on {unchecked} "
            f"({source}: allow): {what}", 0, "error-allowed")


def salvage_on_error() -> str:
    """on_error when the settings could not be loaded: read leniently from the
    settings file (a line `on_error: refuse` at the top level), else allow.
    Never from a file others can write (fsutil.trust_problem): whoever can write
    it could otherwise refuse every VM start with one line."""
    import re

    from aiohook.paths import config_dir

    try:  # a file others can write is not trusted, not even for on_error
        from aiohook.fsutil import read_policy

        text = read_policy(os.path.join(config_dir(), "aiohook.yaml"), 1 << 20,
                           strict=True).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - unreadable or untrusted: the default
        return "allow"
    found = re.findall(r"^on_error:[ \t]*['\"]?(allow|refuse)['\"]?[ \t]*(?:#.*)?$", text,
                       re.MULTILINE)
    return found[-1] if len(set(found)) == 1 else "allow"
