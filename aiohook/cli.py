"""The aiohook command line: a static table of commands, each imported only when it runs.

Every command is a module of aiohook.commands with `add_arguments(parser)` and
`run(args)`. An error becomes one stderr line here, and the exit status that
aiohook.errors gives it.
"""

from __future__ import annotations

import argparse
import os
import sys

from aiohook import __version__
from aiohook.errors import EXIT_INTERNAL, EXIT_OK, AiohookError, exit_code_for

# name -> (module, help), in the order `aiohook --help` lists them
COMMANDS = {
    "plan": ("aiohook.commands.plan", "show what aiohook would decide for each disk"),
    "rewrite": ("aiohook.commands.rewrite",
                "print or write the domain XML with the decided io/cache"),
    "facts": ("aiohook.commands.facts",
              "probe this host for every source of the domains and print recorded facts"),
    "rules": ("aiohook.commands.rules", "validate (and lint) rulesets"),
    "install": ("aiohook.commands.install",
                "install the libvirt hook (qemu.d/50-aiohook) and the default settings"),
    "uninstall": ("aiohook.commands.uninstall", "remove the libvirt hook (settings are kept)"),
    "status": ("aiohook.commands.status",
               "is the hook installed, which hook files libvirt runs, effective settings"),
    "apply": ("aiohook.commands.apply",
              "rewrite persistent domain definitions (virsh define) so the next start complies"),
    "budget": ("aiohook.commands.budget",
               "show the host AIO budget: aio-nr/aio-max-nr, reservations, contexts per domain"),
    "doctor": ("aiohook.commands.doctor",
               "check fs.aio-max-nr against the defined domains, io_uring, versions, the hook"),
    "test": ("aiohook.commands.test",
             "run rule test suites (aiohook-test.yaml) or scaffold one with --init"),
    "explain": ("aiohook.commands.explain",
                "walk every rule for each disk: matched or why not, vetoes, decision"),
    "calibrate": ("aiohook.commands.calibrate",
                  "measure io modes per storage class with qemu-img bench; report the rules' "
                  "regret"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser (the man page, --help); with `only`, just that command's
    arguments are added (and its module imported): the others keep their name and help."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="aiohook",
        description="Decide QEMU disk io= modes for libvirt domains; guard the host AIO budget.",
    )
    parser.add_argument("--version", action="version", version=f"aiohook {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    return parser


def _command_of(argv: list[str]) -> str:
    """The command named on the command line ("" if none): the first argument that
    is not an option, since aiohook's own options take no value."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = build_parser(only=_command_of(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse printed usage; code 2 is our usage code
            return int(exc.code or 0)
        return args.run(args)
    except AiohookError as exc:
        print(f"aiohook: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line, unless asked for the traceback
        if os.environ.get("AIOHOOK_DEBUG"):
            raise
        code = exit_code_for(exc)
        kind = "internal error" if code == EXIT_INTERNAL else "error"
        print(f"aiohook: {kind}: {type(exc).__name__}: {exc} (AIOHOOK_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return code
