"""The AIO reservation ledger: what starting domains will take before it shows in aio-nr.

Light on purpose: `settle` runs on every start/stop hook call, so this module
imports only the standard library (no lxml, no policy, no yaml).

File: <state_dir>/aio-ledger.json (state_dir is /run/aiohook, AIOHOOK_STATE_DIR
moves it), guarded by flock on <state_dir>/aio-ledger.lock. Every write is a
write-to-temp + fsync + rename, so a hook killed at any point (SIGKILL included,
in the middle of a write included) leaves the old ledger or the new one, never
half of one, and the kernel drops a dead holder's flock. What a kill can leave
is its temp file (.aiohook-*.tmp): the next write, under the lock, removes
those, so nothing piles up in /run. A ledger that does not parse anyway (a
hand edit) is moved aside to aio-ledger.json.corrupt and rebuilt empty, which
only forgets reservations, and those last at most PENDING_TTL_S.
(tests/test_budget_kill9.py: hundreds of gate, settle and expire runs, SIGKILLed
at every line of this module and of the atomic write, mid-write and at random.)

A state dir that cannot be written (read-only /run, full, no permission):
`Ledger(readonly_ok=True)` then reads the ledger as it is, without the lock,
changes it only in memory and says why in `unwritable` instead of raising. The
gate decides on what it read and reports the booking it could not make
(GateOutcome.unrecorded, which the hook handles per on_error); settle returns
what it could not record. Without readonly_ok, such errors raise as before.

Entries, keyed by domain name, each booking `events` (the gate's checked
demand, aiohook.budget.gate) until the domain's QEMU holds them:
- state "pending": from the prepare gate until `started`. It expires after
  PENDING_TTL_S (libvirt runs prepare, launches QEMU and waits at most 30 s for
  its monitor, then calls started or stopped/release; 120 s is four times
  that), and at once when the libvirt daemon restarted since it was made: then
  an entry whose domain runs (its `started` was lost to the restart) becomes
  "running", any other is dropped (its start died with the old daemon).
- state "running": from `started` on. On QEMU >= 9 a start opens no AIO context
  and each comes with the guest's first I/O on that thread; on QEMU < 9 a
  virtio-blk iothread's does. So the booking stays until the QEMU holds at
  least `events` (counted from /proc/PID/maps) or is gone; meanwhile the gate
  counts max(0, events - what the QEMU holds now).
- `stopped`/`release` drop the entry (the domain ended, or its start failed).
An entry kept too long only refuses too much (safe); one dropped too early
could overbook.
"""

from __future__ import annotations

import os
import time

from aiohook import jsonlite as json  # json's loads/dumps, without importing json (issue 11)
from aiohook.paths import state_dir

# fcntl, aiohook.errors and aiohook.fsutil are imported where they are used:
# settle() for a domain the ledger does not book (release after stopped, a
# start aiohook never gated) needs none of them (issue 11).

LEDGER_FILE = "aio-ledger.json"
LOCK_FILE = "aio-ledger.lock"
PENDING_TTL_S = 120.0
VERSION = 1


def _now() -> tuple[float, float]:
    return time.time(), time.monotonic()


class Ledger:
    """Open with `with Ledger() as led:`; holds the flock until the block ends."""

    def __init__(self, directory: str | None = None, *, create: bool = True,
                 readonly_ok: bool = False):
        self.dir = directory or state_dir()
        self.path = os.path.join(self.dir, LEDGER_FILE)
        self.create = create
        self.readonly_ok = readonly_ok
        self.entries: dict[str, dict] = {}
        self.rebuilt: str | None = None  # why the ledger was rebuilt, if it was
        self.unwritable: str | None = None  # readonly_ok: why changes were not saved
        self._fd: int | None = None
        self._dirty = False

    def __enter__(self) -> Ledger:
        import fcntl

        try:
            if self.create:
                os.makedirs(self.dir, mode=0o700, exist_ok=True)
            self._fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if not self.readonly_ok:
                raise
            # Read-only or full /run: read what is there, unlocked (writes are
            # atomic, so it is whole); nothing this block changes will be saved.
            self.unwritable = f"cannot lock {os.path.join(self.dir, LOCK_FILE)}: " + (
                exc.strerror or str(exc))
            try:
                self.entries = self._load()
            except OSError:
                self.entries = {}
            return self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.entries = self._load()
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        from aiohook.errors import AiohookError

        if self._fd is None:  # readonly_ok and the lock could not be taken
            return
        try:
            if self._dirty:
                try:
                    self._save()
                except (OSError, AiohookError) as err:
                    if not self.readonly_ok:
                        raise
                    self.unwritable = str(err) if isinstance(err, AiohookError) else (
                        f"{self.path}: {err.strerror or err}")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # -- file
    def _load(self) -> dict[str, dict]:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(1 << 20)
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            entries = data["reservations"]
            if data.get("version") != VERSION or not isinstance(entries, dict):
                raise ValueError("unknown layout")
            for name, e in entries.items():
                if not isinstance(e, dict) or not isinstance(e.get("events"), int):
                    raise ValueError(f"bad entry {name!r}")
            return entries
        except (ValueError, KeyError, TypeError) as exc:
            self.rebuilt = f"{self.path} was corrupt ({exc}); rebuilt empty"
            try:
                os.replace(self.path, self.path + ".corrupt")
            except OSError:
                pass
            self._dirty = True
            return {}

    def _save(self) -> None:
        from aiohook.fsutil import atomic_write

        data = json.dumps({"version": VERSION, "reservations": self.entries},
                          indent=1, sort_keys=True).encode()
        self._remove_debris()
        atomic_write(self.path, data)
        self._dirty = False

    def _remove_debris(self) -> None:
        """Temp files of writers killed mid-write (aiohook.fsutil.atomic_write names
        them .aiohook-<16 hex>.tmp). Only ledger writes happen in this directory,
        all under the lock we hold, so no such file is anyone's write in progress."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if name.startswith(".aiohook-") and name.endswith(".tmp") and len(name) == 29:
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass

    # -- entries
    def reserve(self, domain: str, *, events: int, events_at_start: int, events_max: int,
                check: str, events_per_context: int) -> dict:
        wall, mono = _now()
        entry = {"state": "pending", "events": int(events), "events_at_start": int(events_at_start),
                 "events_max": int(events_max), "check": check,
                 "events_per_context": int(events_per_context),
                 "created": wall, "mono": mono, "pid": os.getpid()}
        self.entries[domain] = entry
        self._dirty = True
        return entry

    def drop(self, domain: str) -> bool:
        if self.entries.pop(domain, None) is not None:
            self._dirty = True
            return True
        return False

    def mark_running(self, domain: str) -> None:
        e = self.entries.get(domain)
        if e is not None and e.get("state") != "running":
            e["state"] = "running"
            self._dirty = True

    def expire(self, alive=None, held=None, daemon_since: float | None = None) -> list[str]:
        """Settle what the hook calls could not: alive(domain) -> bool says whether
        the domain's QEMU runs, held(domain) -> events it holds now, daemon_since
        when the running libvirt daemon started. A pending entry past PENDING_TTL_S,
        or made before the daemon (re)started, becomes running when its domain
        runs, else goes (its start died with the old daemon); a running entry goes
        when its QEMU is gone or holds all it booked. Returns what was dropped."""
        wall, mono = _now()
        gone = []
        for name, e in list(self.entries.items()):
            if e.get("state") != "running":
                started = e.get("mono")
                age = mono - started if isinstance(started, (int, float)) else PENDING_TTL_S + 1
                created = e.get("created")
                # daemon_since may read up to 1 s early (btime has whole seconds): never late
                orphaned = (daemon_since is not None and isinstance(created, (int, float))
                            and created < daemon_since)
                if 0 <= age <= PENDING_TTL_S and not orphaned:  # < 0: monotonic clock reset
                    continue
                if alive is None or not alive(name):
                    gone.append(name)
                    continue
                self.mark_running(name)
            if alive is not None and not alive(name):
                gone.append(name)
            elif held is not None and held(name) >= int(e.get("events", 0)):
                gone.append(name)
        for name in gone:
            self.drop(name)
        return gone


def settle(domain: str, op: str, subop: str) -> str | None:
    """Hook bookkeeping after prepare: `started` (or `reconnect`: a restarted
    libvirtd found the domain running) -> the booking stays until the QEMU holds
    it (see the module docstring); `stopped`/`release` -> the domain ended or its
    start failed. Never raises: returns None, or why the domain's booking could
    not be updated (a read-only or full state dir), for the hook to say once.
    Such a booking stays; expire() settles it once the ledger can be written."""
    if op not in ("started", "reconnect", "stopped", "release"):
        return None
    directory = state_dir()
    if not os.path.exists(os.path.join(directory, LEDGER_FILE)):
        return None  # nothing was ever reserved on this host
    if _not_booked(os.path.join(directory, LEDGER_FILE), domain):
        return None  # what the locked read below would find, without the lock
    from aiohook.errors import AiohookError

    try:
        with Ledger(directory, create=False, readonly_ok=True) as led:
            if domain not in led.entries:
                return None
            if op in ("started", "reconnect"):
                led.mark_running(domain)
            else:
                led.drop(domain)
    except (OSError, AiohookError) as exc:  # bookkeeping must never fail a stop
        return f"{os.path.join(directory, LEDGER_FILE)}: {exc}"
    if led.unwritable and led._dirty:
        return led.unwritable
    return None


def _not_booked(path: str, domain: str) -> bool:
    """True when the ledger reads whole and valid (as _load checks it) and books
    nothing for `domain`: settle() would then find nothing to do under the lock
    and change nothing. No lock is needed to know that: writes are atomic, and
    only the domain's own prepare gate adds its entry, never in parallel with
    its started/stopped/release. Anything else (no such file, corrupt: rebuilt
    under the lock) says False, and settle takes the locked path."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1 << 20))
        entries = data["reservations"]
        if data.get("version") != VERSION or not isinstance(entries, dict):
            return False
        return domain not in entries and all(
            isinstance(e, dict) and isinstance(e.get("events"), int) for e in entries.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def snapshot(directory: str | None = None) -> dict[str, dict]:
    """The reservations as they are now (read without the lock: writes are atomic)."""
    path = os.path.join(directory or state_dir(), LEDGER_FILE)
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1 << 20))
        entries = data.get("reservations", {})
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}
