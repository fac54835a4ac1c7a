"""Run probes in daemon threads under one overall deadline.

A stat() on a dead NFS or FUSE mount can block for ever, and no Python code can
interrupt it. So each probe runs in its own daemon thread; the caller waits
until the shared deadline and walks away from threads that have not answered.
Such threads stay blocked in the kernel. A process that abandoned threads
should end with os._exit() (see `exit_now`): normal interpreter shutdown may
wait on locks those threads hold.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_abandoned: list[threading.Thread] = []
_abandoned_lock = threading.Lock()


def run_bounded(
    jobs: Mapping[K, Callable[[], V]], budget_s: float, name: str = "aiohook-probe"
) -> tuple[dict[K, V], list[K]]:
    """Run every job in its own daemon thread; wait at most budget_s in total.

    Returns (results of jobs that finished, keys of jobs that timed out).
    A job that raises is the caller's bug: its key is reported as timed out
    only if it never returns, so jobs should catch their own errors.
    """
    deadline = time.monotonic() + max(0.0, budget_s)
    results: dict[K, V] = {}
    done = threading.Condition()

    def runner(key: K, job: Callable[[], V]) -> None:
        value = job()
        with done:
            results[key] = value
            done.notify_all()

    threads: dict[K, threading.Thread] = {}
    for key, job in jobs.items():
        thread = threading.Thread(target=runner, args=(key, job), name=name, daemon=True)
        thread.start()
        threads[key] = thread

    with done:
        while len(results) < len(threads):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done.wait(left)
        finished = dict(results)

    late = [key for key in threads if key not in finished]
    if late:
        with _abandoned_lock:
            _abandoned.extend(threads[key] for key in late)
    return finished, late


def abandoned_threads() -> list[threading.Thread]:
    """Probe threads given up on that are still blocked (alive)."""
    with _abandoned_lock:
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        return list(_abandoned)


def exit_now(code: int) -> None:
    """Exit with `code`; use os._exit when abandoned probe threads are still alive.

    Call this at the very end of a command (the hook) instead of sys.exit.
    """
    if not abandoned_threads():
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken stream: exiting anyway
            continue
    os._exit(code)
