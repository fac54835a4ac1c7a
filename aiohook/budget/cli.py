"""CLI verbs of the budget feature; each registers itself with aiohook.cli.verb.

`aiohook budget [--format text|json|prometheus]`: who holds the host's AIO events.
`aiohook doctor [--apply]`: is fs.aio-max-nr big enough for the defined domains.
"""

from __future__ import annotations

import json
import os
import sys

from aiohook.budget.fallback import STATES
from aiohook.cli import verb
from aiohook.errors import EXIT_FINDINGS, EXIT_OK


def _reserve() -> int:
    try:
        from aiohook.settings import load_settings

        return int(load_settings().budget_reserve_events or 0)
    except Exception:  # noqa: BLE001 - a report must not need valid settings
        return 0


def aio_states(holders, run_dir: str | None = None, log_dir: str | None = None,
               proc_root: str | None = None) -> dict:
    """pid -> the AIO state of that QEMU's domain (aiohook.budget.fallback)."""
    from aiohook.budget import fallback, procscan
    from aiohook.budget.doctor import _status_domain

    run_dir = run_dir or procscan.LIBVIRT_RUN_DIR
    states = {}
    for h in holders:
        doc = None
        path = os.path.join(run_dir, f"{h.domain}.xml")
        if h.domain and os.path.exists(path):
            try:
                doc = _status_domain(path)
            except Exception:  # noqa: BLE001 - an unreadable status XML: state unknown
                doc = None
        states[h.pid] = fallback.examine(h, doc, log_dir, proc_root or procscan.PROC_ROOT) if h.domain else {"state": "unknown"}
    return states


def collect(proc_root: str | None = None, run_dir: str | None = None,
            log_dir: str | None = None) -> dict:
    from aiohook.budget import ledger, procscan
    from aiohook.budget.supply import read_supply

    holders = procscan.qemu_holders(proc_root, run_dir)
    states = aio_states(holders, run_dir, log_dir, proc_root)
    qemu_pids = {h.pid for h in holders}
    others = [h for h in procscan.all_holders(proc_root, run_dir) if h.pid not in qemu_pids]
    supply = read_supply(_reserve(), proc_root)
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


def _label(value: str) -> str:
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
        out.append(f'aiohook_domain_aio_contexts{{domain="{_label(h["domain"])}"}} {h["contexts"]}')
    out += ["# HELP aiohook_domain_aio_events AIO events held by a domain's QEMU",
            "# TYPE aiohook_domain_aio_events gauge"]
    for h in data["domains"]:
        out.append(f'aiohook_domain_aio_events{{domain="{_label(h["domain"])}"}} {h["events"]}')
    out += ["# HELP aiohook_domain_aio_silent_fallback 1 when QEMU logged a fallback to the "
            "thread pool since it started", "# TYPE aiohook_domain_aio_silent_fallback gauge"]
    for h in data["domains"]:
        out.append(f'aiohook_domain_aio_silent_fallback{{domain="{_label(h["domain"])}"}} '
                   f'{1 if h["aio"]["state"] == "fallback" else 0}')
    out += ["# HELP aiohook_domain_aio_state 1 for the domain's AIO state (fallback, native, "
            "partial, not-opened-yet, no-native, unknown)", "# TYPE aiohook_domain_aio_state gauge"]
    for h in data["domains"]:
        for state in STATES:
            out.append(f'aiohook_domain_aio_state{{domain="{_label(h["domain"])}",state="{state}"}} '
                       f'{1 if h["aio"]["state"] == state else 0}')
    out += ["# HELP aiohook_domain_aio_expected_contexts AIO contexts the domain opens once "
            "every disk was used", "# TYPE aiohook_domain_aio_expected_contexts gauge"]
    for h in data["domains"]:
        if "expected_contexts" in h["aio"]:
            out.append(f'aiohook_domain_aio_expected_contexts{{domain="{_label(h["domain"])}"}} '
                       f'{h["aio"]["expected_contexts"]}')
    return "\n".join(out) + "\n"


def cmd_budget(args) -> int:
    data = collect()
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    elif args.format == "prometheus":
        sys.stdout.write(render_prometheus(data))
    else:
        sys.stdout.write(render_text(data))
    return EXIT_OK


def cmd_doctor(args) -> int:
    from aiohook.budget import doctor

    rep = doctor.examine(args.libvirt_config_dir, args.hooks_dir, _reserve())
    if args.format == "json":
        sys.stdout.write(json.dumps(rep.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(doctor.render_text(rep))
    if args.apply:
        for line in doctor.apply_fix(rep, args.sysctl_file):
            print(line)
        rep.problems = [p for p in rep.problems if not p.startswith("fs.aio-max-nr")]
    return EXIT_FINDINGS if rep.problems else EXIT_OK


@verb("budget", "show the host AIO budget: aio-nr/aio-max-nr, reservations, contexts per domain")
def _budget_args(p):
    p.add_argument("--format", choices=("text", "json", "prometheus"), default="text")
    p.set_defaults(func=cmd_budget)


@verb("doctor", "check fs.aio-max-nr against the defined domains, io_uring, versions, the hook")
def _doctor_args(p):
    from aiohook.budget.doctor import CONFIG_DIR, HOOKS_DIR
    from aiohook.budget.gate import SYSCTL_FILE

    p.add_argument("--apply", action="store_true",
                   help=f"write {SYSCTL_FILE} and raise fs.aio-max-nr now")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--libvirt-config-dir", default=CONFIG_DIR, help=argparse_help("domain XMLs"))
    p.add_argument("--hooks-dir", default=HOOKS_DIR)
    p.add_argument("--sysctl-file", default=SYSCTL_FILE)
    p.set_defaults(func=cmd_doctor)


def argparse_help(what: str) -> str:
    return f"where libvirt keeps the {what}"
