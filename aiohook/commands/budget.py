"""`aiohook budget [--format text|json|prometheus]`: who holds the host's AIO events."""

from __future__ import annotations

import json
import sys

from aiohook.errors import EXIT_OK


def add_arguments(p) -> None:
    p.add_argument("--format", choices=("text", "json", "prometheus"), default="text")


def run(args) -> int:
    from aiohook.budget.usage import collect, render_prometheus, render_text

    data = collect()
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    elif args.format == "prometheus":
        sys.stdout.write(render_prometheus(data))
    else:
        sys.stdout.write(render_text(data))
    return EXIT_OK
