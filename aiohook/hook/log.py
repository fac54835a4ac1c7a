"""The hook's two logs: syslog (identifier `aiohook`) and the JSON-lines decision log.

syslog: the stdlib module (libc syslog(3)). Where /dev/log is missing (CI,
containers) libc drops the message silently; the decision log still has it.
Every message is one line: control characters are escaped (escape()), so a
domain name with a newline or a terminal escape cannot forge a record.

Decision log: LOG_DIR/decisions.jsonl (/var/log/aiohook), one JSON object a
line (json.dumps escapes every control character and all non-ASCII, so a
record is always exactly one line): time, domain, op, subop, outcome,
message, and per disk target, source, class, io/cache before and after, rule. Appends are single O_APPEND writes
under an flock; when the file would grow past MAX_BYTES it is rotated to
decisions.jsonl.1 (.1 -> .2 ... up to KEEP files), so it stays bounded at
(KEEP + 1) * MAX_BYTES. A log that can't be written (full, read-only) never
fails the hook: that is said once, on stderr and to syslog, with the decision
that was not recorded. A write that a full filesystem cuts short is taken back
(ftruncate), so the log holds whole lines only.

Light on imports (json, os, time, syslog, fcntl) so non-prepare ops may use it.
"""

from __future__ import annotations

import os
import syslog
import time

from aiohook import jsonlite as json  # json.dumps's output, without importing json (issue 11)
from aiohook.paths import log_dir

IDENT = "aiohook"
LOG_FILE = "decisions.jsonl"
MAX_BYTES = 10 << 20
KEEP = 3

_opened = False

ERR = syslog.LOG_ERR
WARNING = syslog.LOG_WARNING
NOTICE = syslog.LOG_NOTICE
INFO = syslog.LOG_INFO


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(message: str) -> str:
    """One printable line: every character str.isprintable() rejects (C0 and C1
    controls, DEL, terminal escapes, U+2028/2029, bidi overrides, lone
    surrogates from undecodable argv bytes, NUL) becomes a Python-style escape
    (\\n, \\x1b, \\u2028), and a backslash becomes two. So nothing a domain
    name carries can end the syslog record, forge the next one or drive the
    terminal of whoever reads the log, and every escape reads back unambiguously."""
    if message.isprintable() and "\\" not in message:
        return message
    out = []
    for ch in message:
        if ch.isprintable() and ch != "\\":
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def say(priority: int, message: str) -> None:
    """One syslog line with identifier `aiohook` (facility daemon), escaped (escape())."""
    global _opened
    try:
        if not _opened:
            syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
            _opened = True
        syslog.syslog(priority, escape(message))
    except Exception:  # noqa: BLE001, S110 - logging must never break the hook
        pass


def now_iso(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def log_path() -> str:
    return os.path.join(log_dir(), LOG_FILE)


def record(entry: dict, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
    """Append one decision to the log (time added when missing); rotate when full."""
    entry.setdefault("time", now_iso())
    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
    path = log_path()
    try:
        _append(path, line, max_bytes, keep)
    except OSError as exc:
        # Said once, on stderr as well: when the log's filesystem is full or
        # read-only, syslog may be unreachable too, and stderr is what is left.
        what = " ".join(str(entry.get(k, "?")) for k in ("domain", "op", "subop"))
        message = (f"aiohook: cannot write the decision log {path} ({exc.strerror or exc}); "
                   f"not recorded there: {what}: {entry.get('outcome', '?')}")
        try:
            import sys

            sys.stderr.write(message + "\n")
        except Exception:  # noqa: BLE001, S110 - nowhere left to say it
            pass
        say(ERR, message)


def _append(path: str, line: bytes, max_bytes: int, keep: int) -> None:
    import fcntl

    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o750, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):  # another hook may rotate between our open and our lock
        fd = os.open(path, flags, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                continue  # rotated under us: reopen the new file
            if st.st_size and st.st_size + len(line) > max_bytes:
                _rotate(path, keep)
                continue  # write into the fresh file
            if os.write(fd, line) != len(line):
                # A full filesystem took part of the line: take it back, so the
                # log keeps whole lines only (and the next record starts clean).
                try:
                    os.ftruncate(fd, st.st_size)
                except OSError:
                    pass
                import errno

                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return
        finally:
            os.close(fd)  # closing releases the flock
    raise OSError(f"{path} kept changing while writing")


def _rotate(path: str, keep: int) -> None:
    """decisions.jsonl -> .1 -> .2 ... -> .KEEP (the oldest is dropped)."""
    for i in range(keep - 1, 0, -1):
        try:
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")
        except FileNotFoundError:
            pass
    if keep > 0:
        os.replace(path, f"{path}.1")
    else:
        os.unlink(path)


def disk_entries(plan) -> list[dict]:
    """Per-disk before/after of a DomainPlan, for the decision log."""
    out = []
    for disk in plan.disks:
        f, d = disk.facts, disk.decision
        out.append({
            "target": f.target,
            "source": f.source,
            "class": f.disk_class,
            "io": {"before": d.io_before, "after": d.io_after},
            "cache": {"before": d.cache_before, "after": d.cache_after},
            "rule": d.rule,
            "changed": d.changed,
        })
    return out
