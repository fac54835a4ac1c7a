"""The libvirt qemu hook's entry: dispatch on the op before importing anything heavy.

libvirt calls `HOOK DOMAIN OP SUBOP EXTRA` with the domain XML on stdin and
waits, with no timeout, for the exit status (docs/facts.md section 1).

- `prepare begin`: the gate (aiohook.hook.prepare): compliance + AIO budget.
- `migrate begin`, `restore begin`: the filter (aiohook.hook.filter): print the
  rewritten XML, or nothing when unchanged.
- every other op: drain stdin, settle the budget ledger for started, reconnect, stopped
  and release, exit 0. No lxml, no policy, no settings. An op libvirt does not
  document logs one syslog line and exits 0.

Never a traceback to libvirt: anything unexpected becomes one stderr line and,
at the ops that gate or filter, follows `on_error` (aiohook.hook.onerror). This
module imports only os and sys at load time; it must stay that way
(benchmarks/hook_cost.py).
"""

from __future__ import annotations

import os
import sys

# The ops of libvirt's qemu hook (src/util/virhook.c, virHookQemuOp).
KNOWN_OPS = frozenset(
    ("start", "stopped", "prepare", "release", "migrate", "started", "reconnect", "attach",
     "restore")
)
SETTLE_OPS = frozenset(("started", "reconnect", "stopped", "release"))
FILTER_OPS = frozenset(("migrate", "restore"))
MAX_STDIN = 32 << 20  # drained regardless; more than this is refused as domain XML


def main(argv: list[str] | None = None) -> None:
    """Run the hook and end the process (os._exit when probe threads were abandoned)."""
    import gc

    # A process of a few milliseconds that ends in os._exit: the cyclic garbage
    # collector would only run over the modules being imported (~0.7 ms of a
    # prepare, issue 11). Memory is bounded by the one domain it reads.
    gc.disable()
    argv = list(sys.argv if argv is None else argv)
    domain, op, subop, _extra = (argv[1:] + ["-"] * 4)[:4]
    code = 0
    try:
        if subop == "begin" and (op == "prepare" or op in FILTER_OPS):
            data, too_big = read_stdin(MAX_STDIN)
            code = _heavy(domain, op, subop, data, MAX_STDIN if too_big else 0)
        else:
            drain_stdin()
            if op in SETTLE_OPS:
                _settle(domain, op, subop)
            elif op not in KNOWN_OPS:
                from aiohook.hook.log import NOTICE, say

                say(NOTICE, f"{domain}: unknown hook op {op!r} {subop!r}: ignored")
    except BaseException as exc:  # noqa: BLE001 - last line of defence: no traceback
        code = _last_resort(domain, op, exc)
    _finish(code)


def _heavy(domain: str, op: str, subop: str, data: bytes, over: int) -> int:
    from aiohook import fsutil
    from aiohook.hook.dispatch import run

    fsutil.strict_modes = True  # settings and rules only from files no one else can write

    return run(domain, op, subop, data, over)


def _settle(domain: str, op: str, subop: str) -> None:
    """Budget ledger bookkeeping; a failure is logged, never fatal (stop/release ignore it)."""
    try:
        from aiohook.budget.ledger import settle

        problem = settle(domain, op, subop)
        if problem:  # said once, on stderr too: syslog may be unreachable
            from aiohook.hook.log import ERR, say

            message = (f"aiohook: {domain}: could not record {op} {subop} in the AIO "
                       f"ledger ({problem}); its booking stays as it was until the ledger "
                       f"can be written")
            sys.stderr.write(message + "\n")
            say(ERR, message)
    except Exception as exc:  # noqa: BLE001
        from aiohook.hook.log import ERR, say

        say(ERR, f"{domain}: budget ledger settle at {op} {subop} failed: "
                 f"{type(exc).__name__}: {exc}")


def read_stdin(limit: int) -> tuple[bytes, bool]:
    """All of stdin (so libvirt never sees a broken pipe); keep at most limit bytes."""
    chunks, size, too_big = [], 0, False
    while True:
        try:
            chunk = os.read(0, 1 << 20)
        except InterruptedError:
            continue
        except OSError:
            break  # no stdin at all (closed fd): treat as empty
        if not chunk:
            break
        if not too_big:
            if size + len(chunk) > limit:
                too_big = True
                chunks = []
            else:
                chunks.append(chunk)
                size += len(chunk)
    return b"".join(chunks), too_big


def drain_stdin() -> None:
    while True:
        try:
            if not os.read(0, 1 << 20):
                return
        except InterruptedError:
            continue
        except OSError:
            return


def _last_resort(domain: str, op: str, exc: BaseException) -> int:
    """An error outside the dispatcher's own handling (import failure, a bug)."""
    what = f"{type(exc).__name__}: {exc}"
    message, code = f"aiohook: internal error at {op} of {domain}, letting it go on: {what}", 0
    if op == "prepare" or op in FILTER_OPS:  # the ops on_error is for
        try:
            from aiohook.hook.onerror import follow, salvage_on_error

            message, code, _ = follow(salvage_on_error(), op, domain, f"internal error: {what}")
        except Exception:  # noqa: BLE001, S110 - allow, worded as above, is the default
            pass
    try:
        sys.stderr.write(message + "\n")
        from aiohook.hook.log import ERR, say

        say(ERR, message)
    except BaseException:  # noqa: BLE001, S110 - nowhere left to report
        pass
    return code


def _finish(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - e.g. libvirt closed the pipe
            pass
    # os._exit: probe threads stuck on a dead mount must not delay the exit, and
    # interpreter teardown is wasted time for a process that has finished.
    os._exit(code)
