"""The hook's heavy path: load settings and rules, plan, then gate or filter.

Called by entry.py for `prepare begin`, `migrate begin` and `restore begin`
only. Every failure of aiohook itself (a bug, invalid or unreadable settings,
invalid rules, a missing rules file, malformed or oversized XML on stdin)
follows `on_error`: allow logs it loudly (syslog LOG_ERR, the decision log,
stderr) and lets libvirt go on (a filter prints nothing: XML unchanged);
refuse aborts the operation with the reason on stderr, which libvirt shows.
When the settings themselves can't be loaded, on_error is read leniently from
the file (onerror.salvage_on_error), else allow. The wording is onerror.follow's.
"""

from __future__ import annotations

import sys
import time

from aiohook.hook import log


def run(domain: str, op: str, subop: str, data: bytes, over: int = 0) -> int:
    """`over`: the byte limit the domain XML on stdin went over (0: it did not)."""
    started = time.monotonic()
    settings = None
    try:
        from aiohook.settings import load_settings

        settings = load_settings()
        if over:
            from aiohook.errors import DomainXMLError

            raise DomainXMLError(f"domain XML on stdin is over {over} bytes", file="<stdin>")
        if op == "prepare":
            from aiohook.hook.prepare import gate

            return gate(domain, data, settings, started)
        from aiohook.hook.filter import rewrite

        return rewrite(domain, op, data, settings, started)
    except Exception as exc:  # noqa: BLE001 - on_error decides, never a traceback
        return on_error(domain, op, subop, exc, settings)


def on_error(domain: str, op: str, subop: str, exc: BaseException, settings) -> int:
    from aiohook.errors import AiohookError
    from aiohook.hook.onerror import follow, salvage_on_error

    if settings is not None:
        policy, source = settings.on_error, "on_error"
    else:
        policy, source = salvage_on_error(), "on_error (settings unusable)"
    if isinstance(exc, AiohookError):
        what = exc.one_line()
    else:
        what = f"internal error: {type(exc).__name__}: {exc}"
    message, code, outcome = follow(policy, op, domain, what, source=source)
    sys.stderr.write(message + "\n")
    log.say(log.ERR, message)
    log.record({"domain": domain, "op": op, "subop": subop, "outcome": outcome,
                "error": what, "disks": []})
    return code
