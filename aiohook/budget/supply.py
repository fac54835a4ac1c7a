"""The host side of the AIO budget: fs.aio-max-nr, fs.aio-nr and the operator's reserve."""

from __future__ import annotations

import os

from aiohook.record import Record

PROC_ROOT = "/proc"


def _read_int(path: str) -> int:
    with open(path) as fh:
        return int(fh.read().strip())


class Supply(Record):
    FIELDS = ("aio_max_nr", "aio_nr", "reserve")

    def __init__(self, aio_max_nr: int, aio_nr: int, reserve: int = 0):
        self.aio_max_nr = aio_max_nr
        self.aio_nr = aio_nr
        self.reserve = reserve  # events kept for other AIO users (settings budget.reserve_events)

    @property
    def free(self) -> int:
        """What io_setup can still hand out right now (the kernel's view)."""
        return max(0, self.aio_max_nr - self.aio_nr)

    def available(self, outstanding: int = 0) -> int:
        """What a new domain may take: free - reserve - reservations not yet in aio-nr."""
        return self.aio_max_nr - self.aio_nr - self.reserve - outstanding

    def to_dict(self) -> dict:
        return {"aio_max_nr": self.aio_max_nr, "aio_nr": self.aio_nr, "free": self.free,
                "reserve_events": self.reserve}


def read_supply(reserve: int = 0, proc_root: str | None = None) -> Supply:
    root = proc_root or PROC_ROOT
    return Supply(_read_int(os.path.join(root, "sys/fs/aio-max-nr")),
                  _read_int(os.path.join(root, "sys/fs/aio-nr")), max(0, int(reserve or 0)))
