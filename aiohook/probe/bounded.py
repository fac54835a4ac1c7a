"""Run probes in daemon threads under one overall deadline.

A stat() on a dead NFS or FUSE mount can block for ever, and no Python code can
interrupt it. So each probe runs in its own daemon thread; the caller waits
until the shared deadline and walks away from threads that have not answered.
Such threads stay blocked in the kernel. A process that abandoned threads
should end with os._exit() (see `exit_now`): normal interpreter shutdown may
wait on locks those threads hold.

The threads are started with _thread, not threading: importing threading costs
the hook ~3 ms (issue 11). They are daemon threads as threading's daemon=True
ones are: nothing waits for them at exit. abandoned_threads() returns objects
with threading.Thread's is_alive() and join(timeout).
"""

from __future__ import annotations

import _thread
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

_abandoned: list[_Worker] = []
_abandoned_lock = _thread.allocate_lock()


class _Worker:
    """One probe thread: is_alive() and join() as threading.Thread's."""

    __slots__ = ("name", "_done", "_finished")

    def __init__(self, name: str):
        self.name = name
        self._finished = False
        self._done = _thread.allocate_lock()
        self._done.acquire()  # released when the thread ends

    def _end(self) -> None:
        self._finished = True
        self._done.release()

    def is_alive(self) -> bool:
        return not self._finished

    def join(self, timeout: float | None = None) -> None:
        if self._done.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._done.release()

    def __repr__(self) -> str:
        return f"<_Worker {self.name} {'alive' if self.is_alive() else 'stopped'}>"


def run_bounded(
    jobs: Mapping, budget_s: float, name: str = "aiohook-probe"
) -> tuple[dict, list]:
    """Run every job in its own daemon thread; wait at most budget_s in total.

    Returns (results of jobs that finished, keys of jobs that timed out).
    A job that raises is the caller's bug: its key is reported as timed out
    only if it never returns, so jobs should catch their own errors.
    """
    deadline = time.monotonic() + max(0.0, budget_s)
    results: dict = {}
    guard = _thread.allocate_lock()
    all_done = _thread.allocate_lock()
    all_done.acquire()  # released once every job has a result
    total = len(jobs)

    def runner(key: Hashable, job: Callable, worker: _Worker) -> None:
        try:
            value = job()
            with guard:
                results[key] = value
                if len(results) == total:
                    all_done.release()
        finally:
            worker._end()

    workers: dict = {}
    for key, job in jobs.items():
        worker = _Worker(name)
        _thread.start_new_thread(runner, (key, job, worker))
        workers[key] = worker

    if total:
        all_done.acquire(True, max(0.0, deadline - time.monotonic()))
    with guard:
        finished = dict(results)

    late = [key for key in workers if key not in finished]
    if late:
        with _abandoned_lock:
            _abandoned.extend(workers[key] for key in late)
    return finished, late


def abandoned_threads() -> list[_Worker]:
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
