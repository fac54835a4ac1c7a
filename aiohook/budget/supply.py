"""The host side of the AIO budget: fs.aio-max-nr, fs.aio-nr and the operator's reserve."""

from __future__ import annotations

from aiohook.probe import host
from aiohook.probe.host import AIO_MAX_NR, AIO_NR, read_sysctl_int
from aiohook.record import Record


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
    """The host's counters now. Raises OSError or ValueError when they cannot be read."""
    root = proc_root or host.PROC_ROOT
    return Supply(read_sysctl_int(AIO_MAX_NR, root), read_sysctl_int(AIO_NR, root),
                  max(0, int(reserve or 0)))
