"""`aiohook calibrate`: measured evidence, per storage class, for the rules at hand."""

from __future__ import annotations

import sys


def cmd_calibrate(args) -> int:
    import json

    from aiohook.calibrate import plot, render_json, render_text, run_calibration
    from aiohook.calibrate.choose import rescore, rules_chooser
    from aiohook.errors import EXIT_FINDINGS, EXIT_OK

    if args.rescore:
        from aiohook.fsutil import read_bounded

        result = json.loads(read_bounded(args.rescore, 64 << 20))
        result = rescore(result, _class_chooser(args.rules, result.get("host", {})))
    else:
        kinds = () if args.target and not args.lab else None
        result = run_calibration(
            args.workdir, kinds=kinds, runs=args.runs, choose=rules_chooser(args.rules),
            targets=tuple(args.target), allow_write=args.allow_write, stalls=args.stalls,
            progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
        )
    sys.stdout.write(render_json(result) if args.format == "json" else render_text(result))
    if args.plot:
        plot(result, args.plot)
    over = [c for c in result["classes"] if (c.get("regret") or 0) > args.max_regret]
    return EXIT_FINDINGS if over else EXIT_OK


def _class_chooser(rules, host: dict):
    """For --rescore: the rules' choice for each saved class, on the saved host's facts."""
    from aiohook.calibrate.choose import rules_chooser

    def choose(entry) -> str:
        return rules_chooser(rules, _SavedClassProbe(entry, host))(_SavedTarget(entry))

    return choose


class _SavedTarget:
    def __init__(self, entry: dict):
        self.path = entry["path"]
        self.disk_type = entry["disk_type"]
        self.format = entry["format"]


class _SavedClassProbe:
    """Recorded facts for one saved class: its storage class, on the saved host."""

    def __init__(self, entry: dict, host: dict):
        self.entry, self.host = entry, host

    def host_facts(self, emulator):
        from aiohook.facts import HostFacts

        allowed = (self.host.get("io_uring_host") or {}).get("allowed")
        measured = (self.entry.get("scores") or {}).get("io_uring") is not None
        return HostFacts(io_uring=allowed, qemu_io_uring=measured)

    def source_facts(self, requests, budget_s=2.0):
        from aiohook.facts import SourceFacts

        cls = self.entry["storage_class"]
        kind = "block" if cls == "block" else "file"
        return {r.path: SourceFacts(path=r.path, kind=kind, allocated=cls != "file-sparse",
                                    o_direct=True) for r in requests}

    def resolve_volume(self, pool, volume):
        from aiohook.facts import VolumeTarget

        return VolumeTarget(kind="unknown", reason="no volumes in a saved calibration")
