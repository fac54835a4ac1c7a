"""`aiohook facts`: probe this host for every source of the domains; print recorded facts."""

from __future__ import annotations

import sys

from aiohook.errors import EXIT_OK


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", help="write to this file (atomically)")
    p.add_argument("xml", nargs="+")


def run(args) -> int:
    from aiohook.domxml.files import input_label, read_xml
    from aiohook.facts_dump import collect_facts
    from aiohook.probe import make_probe

    text = collect_facts([(input_label(p), read_xml(p)) for p in args.xml], make_probe(None))
    if args.output:
        from aiohook.fsutil import atomic_write

        atomic_write(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return EXIT_OK
