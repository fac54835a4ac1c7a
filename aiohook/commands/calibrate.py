"""`aiohook calibrate`: measure io modes per storage class with qemu-img bench; report
the rules' regret. The measuring and judging are aiohook.calibrate's."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--rules", help="rules whose choices are judged (default: the effective rules)")
    p.add_argument("--target", action="append", default=[],
                   help="also (or, without --lab, only) measure this device or image; read-only "
                        "unless --allow-write")
    p.add_argument("--lab", action="store_true", help="with --target: also build the lab classes")
    p.add_argument("--allow-write", action="store_true", help="let write runs touch --target paths")
    p.add_argument("--workdir", default="/var/tmp/aiohook-calibrate",
                   help="where the lab storage is built (default %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="runs per mode and cell (default 5)")
    p.add_argument("--stalls", action="store_true",
                   help="also trace io_submit/io_uring_enter latency with strace (slower)")
    p.add_argument("--rescore", metavar="RESULTS.json",
                   help="judge a saved calibration with --rules instead of measuring")
    p.add_argument("--max-regret", type=float, default=0.05,
                   help="exit 1 when a class's regret is above this (default 0.05)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plot", metavar="FILE.png", help="grouped bar chart (needs matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args) -> int:
    import json

    from aiohook.calibrate import plot, render_json, render_text, run_calibration
    from aiohook.calibrate.choose import rescore, rules_chooser, saved_class_chooser
    from aiohook.errors import EXIT_FINDINGS, EXIT_OK

    if args.rescore:
        from aiohook.fsutil import read_bounded

        result = json.loads(read_bounded(args.rescore, 64 << 20))
        result = rescore(result, saved_class_chooser(args.rules, result.get("host", {})))
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
