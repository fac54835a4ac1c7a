"""aiohook(1), generated from the command line itself: `python3 -m aiohook.manpage`.

Every verb, sub-verb, option and help text comes from aiohook.cli.build_parser(),
the exit statuses from aiohook.errors, the textfile exporter's options from
aiohook.metrics: the page can't drift from the CLI it documents. The Debian
package builds it (debian/rules); `SOURCE_DATE_EPOCH` fixes its date.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

WIDTH = 78

DESCRIPTION = """\
aiohook picks the QEMU I/O mode (io=native, threads or io_uring) of every disk of a
libvirt/KVM domain from what the disk really is, and guards the host's Linux AIO
budget (fs.aio\\-max\\-nr) before QEMU runs out of it.
.PP
It classifies every disk by probing the host (block device, preallocated or sparse
image, network disk, ...), then decides io and, where a rule allows it, cache from a
YAML ruleset. As a libvirt qemu hook it gates every domain start at
.I prepare
and rewrites the XML at
.I migrate
and
.IR restore ;
as a command it plans, rewrites, tests and explains rules, shows the AIO budget and
checks the host."""

FILES = [
    ("/etc/aiohook/aiohook.yaml", "Settings: enforce, on_error, on_budget_exceeded, budget, "
     "rules. Every key is optional; the packaged file documents each."),
    ("/etc/aiohook/rules.yaml", "The site's rules, when present; otherwise the packaged "
     "default rules apply."),
    ("/etc/libvirt/hooks/qemu.d/50-aiohook", "The hook launcher libvirt runs. libvirtd finds "
     "hooks only when it starts: restart it after the hook first appears."),
    ("/var/log/aiohook/decisions.jsonl", "Every decision of the hook, one JSON object a line, "
     "rotated at 10 MiB with 3 files kept. Also in syslog, identifier aiohook."),
    ("/run/aiohook", "The AIO reservation ledger of starting domains."),
    ("/var/cache/aiohook", "Compiled rules and settings, probed QEMU binaries."),
    ("/etc/sysctl.d/60-aiohook.conf", "fs.aio\\-max\\-nr for the next boot; written by "
     "\\fBaiohook doctor \\-\\-apply\\fR."),
    ("/var/lib/prometheus/node-exporter/aiohook.prom", "Metrics for node_exporter's textfile "
     "collector, written by the aiohook\\-textfile service (see PROMETHEUS)."),
]

ENVIRONMENT = [
    ("AIOHOOK_CONFIG_DIR", "Moves /etc/aiohook."),
    ("AIOHOOK_LOG_DIR", "Moves /var/log/aiohook."),
    ("AIOHOOK_STATE_DIR", "Moves /run/aiohook."),
    ("AIOHOOK_CACHE_DIR", "Moves /var/cache/aiohook."),
    ("AIOHOOK_DEBUG", "When set, an internal error prints its traceback."),
]

SEE_ALSO = r"\fBlibvirtd\fR(8), \fBvirsh\fR(1), \fBsysctl.d\fR(5), \fBsystemd.timer\fR(5)"


def escape(text: str) -> str:
    """Plain text as roff: backslashes, minus signs, and a leading . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=WIDTH)


def usage(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser.prog)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return fmt.format_help().strip()


def _subparsers(parser: argparse.ArgumentParser):
    """(name, help, sub-parser) of each verb, in the order the parser lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name) or "", sub


def options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    fmt = _formatter(parser.prog)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        invocation = fmt._format_action_invocation(action)
        text = fmt._expand_help(action) if action.help else ""
        if action.choices and not text:
            text = "one of: " + ", ".join(map(str, action.choices))
        out += [".TP", r"\fB" + escape(invocation) + r"\fR", escape(text or "(no description)")]
    return out


def verb_section(name: str, help_text: str, parser: argparse.ArgumentParser) -> list[str]:
    subs = list(_subparsers(parser))
    out = [f'.SS "{escape(name)}"', escape(help_text[:1].upper() + help_text[1:]) + ".",
           ".PP", ".nf", escape(usage(parser)), ".fi"]
    out += options(parser)
    for sub_name, sub_help, sub in subs:
        out += verb_section(f"{name} {sub_name}", sub_help, sub)
    return out


def exit_statuses() -> list[tuple[str, str]]:
    """(code, meaning) from aiohook.errors' table, the one place exit codes are defined."""
    from aiohook import errors

    rows: list[list[str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^\s+(\d+)\s+(\S.*)$", line)
        if match:
            rows.append([match.group(1), match.group(2).strip()])
        elif rows and line.startswith("     ") and line.strip():
            rows[-1][1] += " " + line.strip()
    return [(code, text) for code, text in rows]


def render(date: str | None = None) -> str:
    from aiohook import __version__
    from aiohook.cli import build_parser
    from aiohook.metrics import build_parser as metrics_parser

    if date is None:
        import os

        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        date = time.strftime("%Y-%m-%d", time.gmtime(int(epoch) if epoch else None))
    parser = build_parser()
    out = [f'.TH AIOHOOK 1 "{date}" "aiohook {__version__}" "User Commands"',
           ".SH NAME", r"aiohook \- decide QEMU disk io modes for libvirt domains and guard "
           "the host AIO budget",
           ".SH SYNOPSIS", ".nf", escape(usage(parser)), ".fi",
           ".SH DESCRIPTION", DESCRIPTION,
           ".SH COMMANDS"]
    out += options(parser)
    for name, help_text, sub in _subparsers(parser):
        out += verb_section(f"aiohook {name}", help_text, sub)
    out += [".SH EXIT STATUS"]
    for code, text in exit_statuses():
        out += [".TP", f"\\fB{code}\\fR", escape(text)]
    mp = metrics_parser()
    out += [".SH PROMETHEUS",
            escape("The aiohook-textfile service (run every minute by aiohook-textfile.timer) "
                   "writes the output of `aiohook budget --format prometheus`, plus the hook's "
                   "metrics, atomically into node_exporter's textfile directory:"),
            ".PP", ".nf", escape(usage(mp)), ".fi"]
    out += options(mp)
    out += [".SH FILES"]
    for path, text in FILES:
        out += [".TP", f"\\fI{escape(path)}\\fR", text]
    out += [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{name}\\fR", escape(text)]
    out += [".SH SEE ALSO", SEE_ALSO, ""]
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
