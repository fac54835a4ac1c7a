"""`aiohook calibrate`: measured evidence, per storage class, for the rules at hand."""

from __future__ import annotations

import sys


def cmd_calibrate(args) -> int:
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
