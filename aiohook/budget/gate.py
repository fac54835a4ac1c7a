"""The AIO budget gate (prepare begin) and degrade (migrate/restore begin).

Settings (aiohook/settings.py, or any object with these attributes):
- on_budget_exceeded: refuse | degrade | warn
- budget_reserve_events: events kept free for other AIO users
- budget_check: "events_max" (default) | "events_at_start"

The default check books the contexts the guest will open (events_max), on both
QEMU generations (aiohook.budget.demand): on QEMU >= 9 a start opens nothing
(events_at_start is 0) and every context comes with the guest's first I/O,
where running out only falls back to threads, silently; on QEMU < 9 an
iothread's context also comes later and falls back the same way. The
reservation lasts until the domain's QEMU holds those contexts (/proc/PID/maps)
or the domain stops (aiohook.budget.ledger). events_at_start books only what
a paused start opens: it guards QEMU < 9's refusal to start and nothing more.
"""

from __future__ import annotations

from aiohook.budget import ledger as _ledger
from aiohook.budget import procscan
from aiohook.budget.demand import demand_for, demand_for_document
from aiohook.budget.supply import Supply, read_supply
from aiohook.record import Record

CHECKS = ("events_max", "events_at_start")
DEFAULT_CHECK = "events_max"
SYSCTL_FILE = "/etc/sysctl.d/60-aiohook.conf"
_STEP = 65536  # suggested limits are rounded up to this


class GateOutcome(Record):
    """(A plain record, not a dataclass: aiohook/record.py, issue 11.)"""

    FIELDS = ("allowed", "message", "demand", "needed", "available", "reserved", "unrecorded")

    def __init__(self, allowed: bool, message: str = "", demand: dict | None = None,
                 needed: int = 0, available: int | None = None, reserved: bool = False,
                 unrecorded: str = ""):
        self.allowed = allowed
        self.message = message
        self.demand = {} if demand is None else demand
        self.needed = needed
        self.available = available
        self.reserved = reserved
        # The start may go on but its booking could not be saved (the ledger's state
        # dir is read-only, full...): why. The hook decides per on_error.
        self.unrecorded = unrecorded


def _settings(settings) -> tuple[str, int, str]:
    mode = getattr(settings, "on_budget_exceeded", None) or "refuse"
    reserve = int(getattr(settings, "budget_reserve_events", 0) or 0)
    check = getattr(settings, "budget_check", None) or DEFAULT_CHECK
    if check not in CHECKS:
        check = DEFAULT_CHECK
    return mode, reserve, check


def _alive(domain: str) -> bool:
    return procscan.domain_pid(domain) is not None


def held_events(domain: str, entry: dict) -> int:
    """Events the domain's QEMU holds now (0 when it is not running)."""
    pid = procscan.domain_pid(domain)
    if pid is None:
        return 0
    return (procscan.aio_contexts(pid) or 0) * int(entry.get("events_per_context", 1024))


def outstanding(entries: dict, exclude: str | None = None) -> tuple[int, list[tuple[str, int]]]:
    """Events reserved but not yet in aio-nr. Read each domain's held contexts
    BEFORE reading aio-nr: a context opened in between is then counted twice
    (safe), never zero times."""
    total, parts = 0, []
    for name, e in sorted(entries.items()):
        if name == exclude:
            continue
        events = max(0, int(e.get("events", 0)) - held_events(name, e))
        if events:
            total += events
            parts.append((name, events))
    return total, parts


def room(entries: dict, domain: str, reserve: int) -> tuple[Supply, int, list, int]:
    """(supply, events other bookings still wait for, those bookings, events available
    to `domain`). The bookings' held contexts are read before aio-nr: see outstanding()."""
    pending, parts = outstanding(entries, exclude=domain)
    supply = read_supply(reserve)
    return supply, pending, parts, supply.available(pending)


def suggested_limit(minimum: int) -> int:
    return max(_STEP, -(-minimum // _STEP) * _STEP)


def remedies(domain: str, minimum_limit: int, io_uring: bool) -> list[str]:
    n = suggested_limit(minimum_limit)
    target_io = "io_uring" if io_uring else "threads"
    return [
        f"raise the limit now: sysctl -w fs.aio-max-nr={n}",
        f"and across reboots: echo 'fs.aio-max-nr = {n}' > {SYSCTL_FILE} "
        "(or run: aiohook doctor --apply)",
        f"or take this domain off native AIO ({target_io} uses no AIO events): put first "
        f"in /etc/aiohook/rules.yaml `- {{name: aio-budget-{domain}, match: {{domain: '{domain}', "
        f"io: [native]}}, action: {{io: {target_io}}}}}` then run: aiohook apply {domain}",
    ]


def _top_consumers(limit: int = 5) -> str:
    try:
        holders = procscan.all_holders()
    except Exception:  # noqa: BLE001 - the message must still be produced
        return "unknown"
    if not holders:
        return "none"
    shown = []
    for h in holders[:limit]:
        who = f"domain {h.domain}" if h.domain else (h.command or "?")
        shown.append(f"{who} (pid {h.pid}): {h.events} events in {h.contexts} context"
                     + ("s" if h.contexts != 1 else ""))
    more = len(holders) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def budget_message(domain: str, demand: dict, check: str, supply: Supply, pending: int,
                   pending_parts, io_uring: bool) -> str:
    need = demand[check]
    avail = supply.available(pending)
    when = ("at start" if check == "events_at_start"
            else "once its guest has used every disk (events_max)")
    ctx = demand["contexts_at_start" if check == "events_at_start" else "contexts_max"]
    minimum = supply.aio_nr + supply.reserve + pending + need
    lines = [
        f"aiohook: AIO budget exceeded: domain '{domain}' needs {need} AIO events {when} "
        f"({ctx} context(s) of {demand['events_per_context']}; native disks: "
        f"{', '.join(t or '?' for t in demand['native_disks'])}), only {max(0, avail)} available "
        f"(fs.aio-nr {supply.aio_nr} / fs.aio-max-nr {supply.aio_max_nr}: free {supply.free}, "
        f"reserve {supply.reserve}, reserved for starting domains {pending}"
        + (f" [{', '.join(f'{n} {e}' for n, e in pending_parts)}]" if pending_parts else "")
        + ").",
        f"Top consumers: {_top_consumers()}.",
        "Remedies:",
    ]
    lines += [f"  - {r}" for r in remedies(domain, minimum, io_uring)]
    return "\n".join(lines)


def gate_prepare(plan, settings) -> GateOutcome:
    """The prepare-begin gate. The demand is that of the XML as it will start:
    libvirt ignores a prepare hook's output, so each disk's io as found counts,
    not aiohook's rewrite. Reserves the demand in the ledger when the start may go on.

    A ledger that cannot be written (read-only or full state dir): the decision
    is made on the ledger as it reads (other bookings still count; expiry only in
    memory). A start that does not fit is refused as usual. One that may go on
    comes back allowed, unbooked, with the reason in `unrecorded`: the hook
    follows on_error with it, since starts in parallel with it could now take
    its room (aiohook.hook.prepare)."""
    mode, reserve, check = _settings(settings)
    demand = demand_for(plan, as_found=True)
    need = demand[check]
    name = plan.name
    if need <= 0:
        return GateOutcome(True, "", demand, 0)
    with _ledger.Ledger(readonly_ok=True) as led:
        daemon = procscan.daemon_started()
        led.expire(_alive, lambda name: held_events(name, led.entries[name]),
                   daemon[1] if daemon else None)
        supply, pending, parts, avail = room(led.entries, name, reserve)
        fits = need <= avail
        if fits or mode == "warn":
            led.reserve(name, events=need, events_at_start=demand["events_at_start"],
                        events_max=demand["events_max"], check=check,
                        events_per_context=demand["events_per_context"])
        else:
            led.drop(name)
    unrecorded = led.unwritable or ""
    if fits:
        return GateOutcome(True, "", demand, need, avail, not unrecorded, unrecorded)
    msg = budget_message(name, demand, check, supply, pending, parts, plan.host.io_uring_usable())
    if mode == "warn":
        return GateOutcome(True, "warning (on_budget_exceeded: warn, starting anyway): " + msg,
                           demand, need, avail, not unrecorded, unrecorded)
    if mode == "degrade":
        msg += ("\n(on_budget_exceeded: degrade cannot apply at prepare: libvirt ignores a "
                "prepare hook's XML, so the start is refused; degrade works only where the hook "
                "rewrites the XML: at restore and incoming migration)")
    return GateOutcome(False, msg, demand, need, avail, False)


def check_incoming(plan, settings, edits: dict) -> GateOutcome:
    """At `migrate begin` (incoming) and `restore begin`, with on_budget_exceeded:
    refuse: would the domain as aiohook prints it (its document with `edits`) fit?
    Refusing here stops an incoming migration before the destination starts
    anything; nothing is reserved (the prepare gate that follows does that)."""
    mode, reserve, check = _settings(settings)
    doc = plan.document
    demand = demand_for_document(doc, plan.host.qemu_version, doc.disk_io(edits))
    need = demand[check]
    if need <= 0 or mode != "refuse":
        return GateOutcome(True, "", demand, need)
    supply, pending, parts, avail = room(_ledger.snapshot(), plan.name, reserve)
    if need <= avail:
        return GateOutcome(True, "", demand, need, avail)
    msg = budget_message(plan.name, demand, check, supply, pending, parts,
                         plan.host.io_uring_usable())
    return GateOutcome(False, msg, demand, need, avail)


# --------------------------------------------------------------------- degrade


class Degrade(Record):
    """What degrade decided: more edits (disk index -> {"io": ...}), one human
    line per moved disk plus a summary (empty when nothing moved), and the AIO
    demand of the domain with all the edits."""

    FIELDS = ("edits", "lines", "demand")

    def __init__(self, edits: dict, lines: list[str], demand: dict):
        self.edits = edits
        self.lines = lines
        self.demand = demand


def degrade(plan, settings, edits: dict) -> Degrade:
    """The edits that move just enough native disks of the domain (plan.document
    with `edits`) to io_uring (where the host allows it) or threads so its checked
    demand fits what is available. The document is not touched."""
    mode, reserve, check = _settings(settings)
    doc = plan.document
    version = plan.host.qemu_version
    io = doc.disk_io(edits)
    demand = demand_for_document(doc, version, io)
    if demand[check] <= 0:
        return Degrade({}, [], demand)
    avail = room(_ledger.snapshot(), plan.name, reserve)[3]
    if demand[check] <= avail:
        return Degrade({}, [], demand)
    target_io = "io_uring" if plan.host.io_uring_usable() else "threads"
    index = {d.target: i for i, d in enumerate(doc.disks())}
    moved: dict = {}
    lines: list[str] = []

    def move(targets):
        for t in targets:
            i = index.get(t)
            if i is None or io[i] != "native":
                continue
            io[i] = target_io
            moved[i] = {"io": target_io}
            lines.append(f"{plan.name}: disk {t}: io native -> {target_io} "
                         f"(AIO budget: {demand[check]} events {check.replace('events_', '')} "
                         f"> {max(0, avail)} available)")

    while True:
        current = demand_for_document(doc, version, io)
        if current[check] <= avail or not current["native_disks"]:
            break
        # The smallest group of native disks whose move closes a context.
        best = None
        for group in current["contexts"]:
            trial = [t for t in group["disks"] if t in index]
            trial_io = list(io)
            for t in trial:
                trial_io[index[t]] = target_io
            gain = current[check] - demand_for_document(doc, version, trial_io)[check]
            if gain > 0 and (best is None or (len(trial), -gain) < (len(best[0]), -best[1])):
                best = (trial, gain)
        if best is None:  # no single group closes a context: every native disk goes
            move(current["native_disks"])
            break
        move(best[0])
    after = demand_for_document(doc, version, io)
    if lines:
        lines.append(f"{plan.name}: AIO demand now {after[check]} events "
                     f"{check.replace('events_', '')}, {max(0, avail)} available")
    return Degrade(moved, lines, after)
