"""Prometheus metrics for node_exporter's textfile collector: `python3 -m aiohook.metrics`.

Writes, atomically (a temporary file in the same directory, then rename), one
file that node_exporter reads whole:

- exactly what `aiohook budget --format prometheus` prints (the AIO budget, each
  running domain's contexts, events and AIO state);
- the hook's own metrics:
  - ``aiohook_hook_installed``: 1 when libvirt runs aiohook's qemu hook
    (``aiohook status``), else 0;
  - ``aiohook_hook_restart_pending``: 1 when the running libvirtd started before
    the hook was written, so it does not run it until restarted;
  - ``aiohook_hook_decisions_total{outcome}``: the hook's decisions by outcome,
    counted from the decision log (/var/log/aiohook/decisions.jsonl and its
    rotated files). Every known outcome is always exported, 0 until it happens,
    so ``increase()`` sees the first one.

The counter survives the log's rotation: each file is read from where the
previous run stopped (a state file keyed by device, inode and the file's first
bytes), so rotating, or dropping the oldest file, never makes it go down. It
restarts from 0 only when the state file is lost (a counter reset, which
Prometheus handles).

The systemd unit aiohook-textfile.service runs this every minute
(aiohook-textfile.timer). The --proc-root, --libvirt-run-dir and
--libvirt-log-dir options read another /proc and libvirt tree (tests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

DEFAULT_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
DEFAULT_STATE_FILE = "/var/lib/aiohook/metrics-state.json"
FILE_NAME = "aiohook.prom"
# Every outcome the hook writes (aiohook/hook/{prepare,filter}.py, onerror.py);
# anything else is counted as "other", so the label stays bounded.
OUTCOMES = ("allowed", "budget-refused", "compliant", "error-allowed", "error-refused",
            "refused", "rewritten", "unchanged", "warned")
HEAD_BYTES = 256  # a file's identity beside its inode: its first bytes never change


# ---------------------------------------------------------------- decision counts


def _log_files(log_dir: str) -> list[str]:
    """decisions.jsonl's rotated files, oldest first, then the live one."""
    from aiohook.hook.log import LOG_FILE

    base = os.path.join(log_dir, LOG_FILE)
    rotated = []
    try:
        names = os.listdir(log_dir)
    except OSError:
        names = []
    for name in names:
        suffix = name[len(LOG_FILE) + 1:]
        if name.startswith(LOG_FILE + ".") and suffix.isdigit():
            rotated.append((int(suffix), os.path.join(log_dir, name)))
    return [p for _, p in sorted(rotated, reverse=True)] + [base]


def _label(outcome) -> str:
    return outcome if outcome in OUTCOMES else "other"


def count_decisions(log_dir: str, state: dict) -> dict:
    """New counts and file positions: state is {"counts": {...}, "files": {key: {...}}}."""
    counts = {k: int(v) for k, v in state.get("counts", {}).items()}
    old_files = state.get("files", {})
    files = {}
    for path in _log_files(log_dir):
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with fh:
            st = os.fstat(fh.fileno())
            key = f"{st.st_dev}:{st.st_ino}"
            seen = old_files.get(key, {})
            offset = int(seen.get("offset", 0))
            head = fh.read(HEAD_BYTES)
            head_len = int(seen.get("head_len", 0))
            if (offset > st.st_size or not seen
                    or hashlib.sha256(head[:head_len]).hexdigest() != seen.get("head")):
                offset = 0  # a new file, or the inode was reused, or it was truncated
            fh.seek(offset)
            data = fh.read(max(0, st.st_size - offset))
            end = data.rfind(b"\n") + 1  # only whole lines; a line being written waits
            for line in data[:end].splitlines():
                try:
                    outcome = json.loads(line).get("outcome")
                except (ValueError, AttributeError):
                    outcome = None
                label = _label(outcome)
                counts[label] = counts.get(label, 0) + 1
            files[key] = {"offset": offset + end, "head": hashlib.sha256(head).hexdigest(),
                          "head_len": len(head)}
    return {"version": 1, "counts": counts, "files": files}


def load_state(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path) as fh:
            state = json.load(fh)
        return state if isinstance(state, dict) and state.get("version") == 1 else {}
    except (OSError, ValueError):
        return {}


def save_state(path: str | None, state: dict) -> None:
    if not path:
        return
    from aiohook.fsutil import atomic_write

    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    atomic_write(path, (json.dumps(state, sort_keys=True) + "\n").encode(), 0o644)


# ---------------------------------------------------------------- rendering


def hook_metrics(hooks_dir: str, counts: dict) -> str:
    from aiohook.admin.install import status

    info = status(hooks_dir)
    pending = any("until restarted" in p for p in info.get("problems", []))
    out = [
        "# HELP aiohook_hook_installed 1 when libvirt runs aiohook's qemu hook (aiohook status)",
        "# TYPE aiohook_hook_installed gauge",
        f"aiohook_hook_installed {1 if info.get('installed') else 0}",
        "# HELP aiohook_hook_restart_pending 1 when libvirtd started before the hook was "
        "written and does not run it until restarted",
        "# TYPE aiohook_hook_restart_pending gauge",
        f"aiohook_hook_restart_pending {1 if pending else 0}",
        "# HELP aiohook_hook_decisions_total decisions of the hook by outcome, from its "
        "decision log",
        "# TYPE aiohook_hook_decisions_total counter",
    ]
    labels = sorted(set(OUTCOMES) | set(counts))
    out += [f'aiohook_hook_decisions_total{{outcome="{k}"}} {int(counts.get(k, 0))}'
            for k in labels]
    return "\n".join(out) + "\n"


def render(hooks_dir: str, log_dir: str, state: dict, proc_root: str | None = None,
           run_dir: str | None = None, libvirt_log_dir: str | None = None) -> tuple[str, dict]:
    """(the textfile, the new state)."""
    from aiohook.budget.usage import collect, render_prometheus

    budget = render_prometheus(collect(proc_root, run_dir, libvirt_log_dir))
    new_state = count_decisions(log_dir, state)
    return budget + hook_metrics(hooks_dir, new_state["counts"]), new_state


def write_textfile(directory: str, text: str, name: str = FILE_NAME) -> str:
    """Write DIRECTORY/NAME atomically; the temporary name doesn't end in .prom, so
    node_exporter never reads a half-written file."""
    from aiohook.fsutil import atomic_write

    path = os.path.join(directory, name)
    atomic_write(path, text.encode(), 0o644)
    return path


def build_parser() -> argparse.ArgumentParser:
    from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR

    p = argparse.ArgumentParser(
        prog="python3 -m aiohook.metrics",
        description="Write aiohook's Prometheus metrics for node_exporter's textfile collector.")
    p.add_argument("--textfile-dir", default=DEFAULT_TEXTFILE_DIR,
                   help=f"node_exporter's textfile directory (default {DEFAULT_TEXTFILE_DIR}); "
                        f"the file is {FILE_NAME}")
    p.add_argument("--stdout", action="store_true", help="print the metrics instead")
    p.add_argument("--state-file", default=DEFAULT_STATE_FILE,
                   help="where the decision counters are kept between runs "
                        f"(default {DEFAULT_STATE_FILE})")
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR,
                   help="libvirt's hook directory, where aiohook status looks for the hook")
    p.add_argument("--proc-root", help="read this /proc instead (tests)")
    p.add_argument("--libvirt-run-dir", help="read libvirt's pid and status files here "
                                             "instead of /run/libvirt/qemu (tests)")
    p.add_argument("--libvirt-log-dir", help="read the domain logs here instead of "
                                             "/var/log/libvirt/qemu (tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    from aiohook.errors import AiohookError, exit_code_for
    from aiohook.paths import log_dir

    args = build_parser().parse_args(argv)
    try:
        if not args.stdout and not os.path.isdir(args.textfile_dir):
            print(f"aiohook.metrics: error: {args.textfile_dir}: no such directory "
                  "(is prometheus-node-exporter installed?)", file=sys.stderr)
            return 6
        text, state = render(args.hooks_dir, log_dir(), load_state(args.state_file),
                             args.proc_root, args.libvirt_run_dir, args.libvirt_log_dir)
        if args.stdout:
            sys.stdout.write(text)
        else:
            write_textfile(args.textfile_dir, text)
        save_state(args.state_file, state)  # only once the counts were published
        return 0
    except AiohookError as exc:
        print(f"aiohook.metrics: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line for the journal, like the CLI
        if os.environ.get("AIOHOOK_DEBUG"):
            raise
        print(f"aiohook.metrics: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
