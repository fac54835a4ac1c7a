"""Issue 14 item 7: parallel starts at scale.

64 prepare gates start at the same instant (forked children released together
by one pipe's EOF) against one ledger with room for exactly K contexts, on the
fake host of tests/test_budget_units.py (fake /proc: no sysctl is touched).
Every round: exactly K are let in, the ledger books exactly those K, and what it
books fits in what is free. Rounds cover K = 1, 7, 32, 63 and 64, both QEMU
generations, and a host where running domains already hold or still wait for
part of their bookings. The gate's latency under this contention is a
benchmark, not a test: benchmarks/gate_contention.py.
"""

from __future__ import annotations

import os
import sys

import test_budget_units as units
from test_budget_shapes import disk

from aiohook.budget import gate, ledger

fake_host = units.fake_host  # the fixture

GATES = 64
EVENTS = 1024
ALLOWED, REFUSED, FAILED = 10, 11, 99


def _plan(name: str, version: str):
    return units._plan(units.domain(disk(f"/img/{name}", "vda", "native"), name=name),
                       version=version)


def _gate_all(names: list[str], version_of) -> dict[str, int]:
    """Each name's gate in its own process, all released at once: name -> exit code."""
    plans = {n: _plan(n, version_of(n)) for n in names}
    settings = units.settings(check="events_max")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = {}
    for name in names:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = FAILED
            try:
                os.close(go_w)
                os.write(ready_w, b".")
                os.read(go_r, 1)  # EOF: the parent let everyone go
                out = gate.gate_prepare(plans[name], settings)
                code = ALLOWED if out.allowed and out.reserved else REFUSED
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            os._exit(code)
        pids[pid] = name
    os.close(go_r)
    ready = 0
    while ready < len(names):  # every child is forked and waiting
        ready += len(os.read(ready_r, len(names)))
    os.close(go_w)
    os.close(ready_r)
    os.close(ready_w)
    codes = {}
    for pid, name in pids.items():
        _, status = os.waitpid(pid, 0)
        codes[name] = os.waitstatus_to_exitcode(status)
    return codes


def _round(host, k: int, tag: str, version_of, before=lambda: 0) -> str:
    """Room for exactly k more contexts after what `before()` set up (events of
    aio-nr it returns); 64 gates at once."""
    for path in host.state.glob("*"):
        path.unlink()
    aio_nr = before()
    waiting, _ = gate.outstanding(ledger.snapshot())
    host.set_aio(aio_nr + waiting + k * EVENTS + EVENTS // 2, aio_nr)
    existing = set(ledger.snapshot())
    names = [f"{tag}{i}" for i in range(GATES)]
    codes = _gate_all(names, version_of)
    allowed = sorted(n for n, c in codes.items() if c == ALLOWED)
    assert set(codes.values()) <= {ALLOWED, REFUSED}, codes
    booked = ledger.snapshot()
    total, _ = gate.outstanding(booked)
    free = host.proc / "sys/fs/aio-max-nr"
    free = int(free.read_text()) - aio_nr
    result = f"K={k} ({tag}): {len(allowed)} of {GATES} let in, {total} events booked of {free}"
    assert len(allowed) == k, result
    assert set(booked) - existing == set(allowed), result  # the ledger books exactly those
    assert total <= free, result
    return result


def test_64_parallel_gates_let_in_exactly_k(fake_host):
    results = []
    for k in (1, 7, 32, 63):
        results.append(_round(fake_host, k, f"lazy{k}-", lambda n: "10.0.2"))
    results.append(_round(fake_host, 64, "all-", lambda n: "10.0.2"))
    # QEMU < 9 and >= 9 together (both book one context for one main-loop disk)
    results.append(_round(fake_host, 20, "mixed-",
                          lambda n: "7.2.22" if int(n.split("-")[1]) % 2 else "10.0.2"))

    def busy_host() -> int:
        """Running domains: one holds its context (in aio-nr), one holds nothing
        yet (QEMU >= 9), one holds 1 of its 3; and a start still pending."""
        settings = units.settings(check="events_max")
        three = units.domain(disk("/a", "vda", "native", iothread="1")
                             + disk("/b", "vdb", "native", iothread="2")
                             + disk("/c", "vdc", "native"), 2, name="three")
        fake_host.set_aio(1 << 20, 0)
        for pid, name, contexts in ((5001, "held", 1), (5002, "idle", 0), (5003, "three", 1),
                                    (0, "pending", 0)):
            xml = three if name == "three" else units.ONE.replace(b"one", name.encode())
            assert gate.gate_prepare(units._plan(xml, version="10.0.2"), settings).reserved
            if pid:
                units._fake_qemu(fake_host, name, pid, contexts)
                ledger.settle(name, "started", "begin")
        assert gate.outstanding(ledger.snapshot())[0] == 4 * EVENTS  # idle 1, three 2, pending 1
        return 2 * EVENTS  # held's context and one of three's

    results.append(_round(fake_host, 16, "busy-", lambda n: "10.0.2", busy_host))
    print("\n".join(results))
