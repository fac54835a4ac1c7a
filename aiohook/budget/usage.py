"""The host's AIO usage now: who holds events, what is reserved, each domain's AIO state.

`collect()` gathers it; `render_text` and `render_prometheus` are what
`aiohook budget` prints, and aiohook.metrics exports the latter.
"""

from __future__ import annotations

import os

from aiohook.budget.fallback import STATES


def reserve_events() -> int:
    """The settings' budget reserve; 0 when the settings are unusable (a report must not need them)."""
    try:
        from aiohook.settings import load_settings

        return int(load_settings().budget_reserve_events or 0)
    except Exception:  # noqa: BLE001 - a report must not need valid settings
        return 0


def status_domain(path: str):
    """The <domain> inside libvirt's live status XML (<domstatus>), as a DomainDocument."""
    from lxml import etree

    from aiohook.domxml.document import DomainDocument, hardened_parser

    with open(path, "rb") as fh:
        data = fh.read(10 << 20)
    root = etree.fromstring(data, hardened_parser())
    dom = root if root.tag == "domain" else root.find("domain")
    if dom is None:
        raise ValueError("no <domain> in status XML")
    return DomainDocument(dom, path, data)


def aio_states(holders, run_dir: str | None = None, log_dir: str | None = None,
               proc_root: str | None = None) -> dict:
    """pid -> the AIO state of that QEMU's domain (aiohook.budget.fallback)."""
    from aiohook.budget import fallback, procscan
    from aiohook.probe import host

    run_dir = run_dir or procscan.LIBVIRT_RUN_DIR
    states = {}
    for h in holders:
        doc = None
        path = os.path.join(run_dir, f"{h.domain}.xml")
        if h.domain and os.path.exists(path):
            try:
                doc = status_domain(path)
            except Exception:  # noqa: BLE001 - an unreadable status XML: state unknown
                doc = None
        states[h.pid] = (fallback.examine(h, doc, log_dir, proc_root or host.PROC_ROOT)
                         if h.domain else {"state": "unknown"})
    return states


def collect(proc_root: str | None = None, run_dir: str | None = None,
            log_dir: str | None = None) -> dict:
    from aiohook.budget import ledger, procscan
    from aiohook.budget.supply import read_supply

    holders = procscan.qemu_holders(proc_root, run_dir)
    states = aio_states(holders, run_dir, log_dir, proc_root)
    qemu_pids = {h.pid for h in holders}
    others = [h for h in procscan.all_holders(proc_root, run_dir) if h.pid not in qemu_pids]
    supply = read_supply(reserve_events(), proc_root)
    reservations = [dict(domain=name, **e) for name, e in sorted(ledger.snapshot().items())]
    domains = []
    for h in holders:
        entry = h.to_dict()
        entry["aio"] = states[h.pid]
        domains.append(entry)
    return {
        **supply.to_dict(),
        "reservations": reservations,
        "domains": domains,
        "other_processes": [h.to_dict() for h in others],
        "silent_fallback": [{"domain": d["domain"], "pid": d["pid"], **d["aio"]}
                            for d in domains if d["aio"]["state"] == "fallback"],
    }


def render_text(data: dict) -> str:
    lines = [f"fs.aio-nr {data['aio_nr']} / fs.aio-max-nr {data['aio_max_nr']}: free "
             f"{data['free']}, reserve {data['reserve_events']}"]
    if data["reservations"]:
        lines.append("reservations:")
        for r in data["reservations"]:
            lines.append(f"  {r['domain']}: {r['events']} events ({r['state']}, {r['check']})")
    lines.append(f"{'DOMAIN':32} {'PID':>8} {'CONTEXTS':>8} {'EVENTS':>8}")
    for h in data["domains"]:
        lines.append(f"{h['domain']:32} {h['pid']:>8} {h['contexts']:>8} {h['events']:>8}")
    for h in data["other_processes"]:
        lines.append(f"{'(' + (h.get('command') or '?') + ')':32} {h['pid']:>8} "
                     f"{h['contexts']:>8} {h['events']:>8}")
    for h in data["domains"]:
        aio = h["aio"]
        if aio["state"] == "fallback":
            lost = ", ".join(f"{k} ({v['lines']} disk(s) of {', '.join(v['candidates'])})"
                             for k, v in aio.get("disks", {}).items()) or "?"
            lines.append(f"FALLBACK: {h['domain']} lost {lost} to the thread pool since its "
                         f"QEMU started; holds {aio['held_contexts']} of "
                         f"{aio.get('expected_contexts', '?')} context(s). QEMU said: "
                         f"{aio['fallback_lines'][0]['line']}")
        elif aio["state"] == "not-opened-yet":
            lines.append(f"not opened yet: {h['domain']} (native disks "
                         f"{', '.join(t or '?' for t in aio.get('native_disks', []))}: no I/O yet, "
                         f"{aio.get('expected_contexts')} context(s) booked for first I/O)")
    return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(data: dict) -> str:
    out = [
        "# HELP aiohook_aio_max_nr fs.aio-max-nr", "# TYPE aiohook_aio_max_nr gauge",
        f"aiohook_aio_max_nr {data['aio_max_nr']}",
        "# HELP aiohook_aio_nr fs.aio-nr", "# TYPE aiohook_aio_nr gauge",
        f"aiohook_aio_nr {data['aio_nr']}",
        "# HELP aiohook_aio_reserve_events events kept for other AIO users",
        "# TYPE aiohook_aio_reserve_events gauge",
        f"aiohook_aio_reserve_events {data['reserve_events']}",
        "# HELP aiohook_aio_reserved_events events reserved by starting domains",
        "# TYPE aiohook_aio_reserved_events gauge",
        f"aiohook_aio_reserved_events {sum(r['events'] for r in data['reservations'])}",
        "# HELP aiohook_domain_aio_contexts AIO contexts held by a domain's QEMU",
        "# TYPE aiohook_domain_aio_contexts gauge",
    ]
    for h in data["domains"]:
        out.append(f'aiohook_domain_aio_contexts{{domain="{_escape_label(h["domain"])}"}} {h["contexts"]}')
    out += ["# HELP aiohook_domain_aio_events AIO events held by a domain's QEMU",
            "# TYPE aiohook_domain_aio_events gauge"]
    for h in data["domains"]:
        out.append(f'aiohook_domain_aio_events{{domain="{_escape_label(h["domain"])}"}} {h["events"]}')
    out += ["# HELP aiohook_domain_aio_silent_fallback 1 when QEMU logged a fallback to the "
            "thread pool since it started", "# TYPE aiohook_domain_aio_silent_fallback gauge"]
    for h in data["domains"]:
        out.append(f'aiohook_domain_aio_silent_fallback{{domain="{_escape_label(h["domain"])}"}} '
                   f'{1 if h["aio"]["state"] == "fallback" else 0}')
    out += ["# HELP aiohook_domain_aio_state 1 for the domain's AIO state (fallback, native, "
            "partial, not-opened-yet, no-native, unknown)", "# TYPE aiohook_domain_aio_state gauge"]
    for h in data["domains"]:
        for state in STATES:
            out.append(f'aiohook_domain_aio_state{{domain="{_escape_label(h["domain"])}",state="{state}"}} '
                       f'{1 if h["aio"]["state"] == state else 0}')
    out += ["# HELP aiohook_domain_aio_expected_contexts AIO contexts the domain opens once "
            "every disk was used", "# TYPE aiohook_domain_aio_expected_contexts gauge"]
    for h in data["domains"]:
        if "expected_contexts" in h["aio"]:
            out.append(f'aiohook_domain_aio_expected_contexts{{domain="{_escape_label(h["domain"])}"}} '
                       f'{h["aio"]["expected_contexts"]}')
    return "\n".join(out) + "\n"
