"""`aiohook install`, `uninstall` and `status`: put the hook where libvirt runs it.

libvirt >= 6.5 runs every executable in HOOKS/qemu.d/ (after HOOKS/qemu), so
aiohook installs HOOKS/qemu.d/50-aiohook and never touches an existing
HOOKS/qemu. Only for libvirt < 6.5, which runs HOOKS/qemu alone, does it write
HOOKS/qemu, and then only when that file is missing or aiohook's own.

The installed file is a launcher: a Python script whose shebang is the absolute
path of the interpreter aiohook was installed with, run with -I -S (isolated, no
site: the hook gets no PYTHON* variables from libvirt's environment and skips
site's .pth processing, ~20 ms with an editable install) and an explicit
sys.path: the directory holding the aiohook package plus that interpreter's
site-packages. No shell is involved anywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from aiohook import __version__
from aiohook.errors import FileAccessError, UsageError
from aiohook.paths import DEFAULT_CONFIG_DIR, PACKAGE_DIR, packaged
from aiohook.paths import config_dir as current_config_dir
from aiohook.probe.hookfiles import (
    DEFAULT_HOOKS_DIR,
    LAUNCHER_NAME,
    MARKER,
    hook_paths,
    installed_hook,
    is_ours,
    qemu_d_supported,
)

ENV_PASSED = ("AIOHOOK_STATE_DIR", "AIOHOOK_LOG_DIR", "AIOHOOK_CACHE_DIR")
RESTART_NOTE = ("libvirtd finds hooks only when it starts: restart it now "
                "(systemctl restart libvirtd, or virtqemud on modular daemons)")


# ---------------------------------------------------------------- facts


def libvirt_version() -> str | None:
    """The installed libvirt daemon's version (no subprocess: read from the binary)."""
    from aiohook.probe.linux import LinuxProbe

    return LinuxProbe().host_facts(None).libvirt_version


# ---------------------------------------------------------------- the launcher


def launcher_sys_path(python: str) -> list[str]:
    """The directories the hook needs on sys.path when run with -I -S: aiohook's
    parent directory, then what `python` adds through site (site-packages, .pth)."""

    def paths(*flags: str) -> list[str]:
        out = subprocess.run(
            [python, *flags, "-c", "import sys, json; print(json.dumps(sys.path[1:]))"],
            capture_output=True, text=True, timeout=60, cwd="/", stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}, check=True,
        ).stdout
        return json.loads(out)

    base = set(paths("-I", "-S"))
    extra = [os.path.dirname(PACKAGE_DIR)]
    for path in paths("-I"):
        if path not in base and path not in extra and os.path.isdir(path):
            extra.append(path)
    return extra


def render_launcher(python: str, sys_path: list[str], env: dict[str, str],
                    created_dirs: list[str]) -> str:
    if not os.path.isabs(python) or re.search(r"\s", python) or len(python) > 200:
        raise UsageError(f"interpreter path {python!r} can't be used in a #! line "
                         "(absolute, no spaces, at most 200 bytes)")
    lines = [
        f"#!{python} -IS",
        f"# aiohook {__version__}: libvirt qemu hook launcher, written by `aiohook install`.",
        "# It runs aiohook with the interpreter and packages it was installed with.",
        "# Do not edit: run `aiohook install` again, or `aiohook uninstall`.",
        MARKER,
        f"# created-dirs: {json.dumps(created_dirs)}",
        "import sys",
        f"sys.path[:0] = {sys_path!r}",
    ]
    if env:
        lines.append("import os")
        lines.extend(f"os.environ[{k!r}] = {v!r}" for k, v in sorted(env.items()))
    lines += ["from aiohook.hook.entry import main", "main()", ""]
    return "\n".join(lines)


def _write_executable(path: str, text: str) -> None:
    from aiohook.fsutil import atomic_write

    atomic_write(path, text.encode(), mode=0o755)


def _check_launcher(python: str, sys_path: list[str], launcher: str) -> None:
    """Import what the hook's heavy path needs the way the launcher will, and run
    the launcher itself for a no-op hook call."""
    code = (f"import sys; sys.path[:0] = {sys_path!r}; import aiohook.hook.prepare, "
            "aiohook.planner, aiohook.probe.linux, aiohook.policy.loader, aiohook.settings, "
            "aiohook.domxml.lite, aiohook.hook.filter, lxml.etree, yaml")
    checks = [[python, "-IS", "-c", code], [launcher, "aiohook-install-check", "attach", "-", "-"]]
    for argv in checks:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise FileAccessError(
                f"the installed hook does not run: {' '.join(argv[:2])}: "
                f"{(done.stderr or done.stdout).strip()[-400:]}", file=launcher)


# ---------------------------------------------------------------- install / uninstall


def install(hooks_dir: str = DEFAULT_HOOKS_DIR, config_dir: str | None = None,
            python: str | None = None, libvirt: str | None = None) -> list[str]:
    """Install the launcher and the default settings; return what was done, line by line."""
    python = python or sys.executable
    config_dir = os.path.abspath(config_dir or current_config_dir())
    version = libvirt if libvirt is not None else libvirt_version()
    said: list[str] = []
    qemu_d_hook, main_hook = hook_paths(hooks_dir)
    if qemu_d_supported(version):
        target = qemu_d_hook
        if os.path.lexists(target) and not is_ours(target):
            raise FileAccessError("exists and is not aiohook's: not overwriting it", file=target)
        if os.path.lexists(main_hook) and not is_ours(main_hook):
            said.append(f"kept {main_hook} (not aiohook's); libvirt runs it before qemu.d/")
    else:
        target = main_hook
        if os.path.lexists(target) and not is_ours(target):
            raise FileAccessError(
                f"exists and is not aiohook's, and libvirt {version} (< 6.5) runs only this "
                f"file: not overwriting it. Call aiohook from it instead: run `aiohook install "
                f"--hooks-dir DIR` into a scratch DIR and exec DIR/qemu.d/{LAUNCHER_NAME} "
                "with the same arguments and stdin", file=target)
    created = []
    for directory in (hooks_dir, os.path.dirname(target)):
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
            created.append(os.path.abspath(directory))
    if is_ours(target):  # keep what an earlier install created, for uninstall
        created = _created_dirs(target) + [d for d in created if d not in _created_dirs(target)]
    env = {"AIOHOOK_CONFIG_DIR": config_dir} if config_dir != DEFAULT_CONFIG_DIR else {}
    env.update({k: os.environ[k] for k in ENV_PASSED if os.environ.get(k)})
    sys_path = launcher_sys_path(python)
    _write_executable(target, render_launcher(python, sys_path, env, created))
    _check_launcher(python, sys_path, target)
    said.append(f"installed {target} (runs {python} -IS; libvirt {version or 'version unknown'}"
                f"{'' if target == qemu_d_hook else ': no qemu.d before 6.5'})")
    said.extend(install_config(config_dir))
    said.append(RESTART_NOTE)
    return said


def install_config(config_dir: str) -> list[str]:
    settings = os.path.join(config_dir, "aiohook.yaml")
    if os.path.lexists(settings):
        return [f"kept {settings}"]
    os.makedirs(config_dir, mode=0o755, exist_ok=True)
    with open(packaged("data", "aiohook.yaml"), "rb") as fh:
        data = fh.read()
    from aiohook.fsutil import atomic_write

    atomic_write(settings, data, 0o644)
    rules = os.path.join(config_dir, "rules.yaml")
    return [(f"installed the default settings {settings} "
            f"(rules: the packaged default unless {rules} exists)")]


def _created_dirs(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(8192)
    except OSError:
        return []
    match = re.search(r"^# created-dirs: (.*)$", head, re.MULTILINE)
    try:
        dirs = json.loads(match.group(1)) if match else []
    except ValueError:
        return []
    return [d for d in dirs if isinstance(d, str)]


def uninstall(hooks_dir: str = DEFAULT_HOOKS_DIR) -> list[str]:
    said = []
    for path in hook_paths(hooks_dir):
        if not os.path.lexists(path):
            continue
        if not is_ours(path):
            said.append(f"left {path} (not aiohook's)")
            continue
        created = _created_dirs(path)
        os.unlink(path)
        said.append(f"removed {path}")
        for directory in sorted(created, key=len, reverse=True):  # deepest first
            try:
                os.rmdir(directory)  # only when empty
                said.append(f"removed {directory} (created by aiohook install)")
            except OSError:
                pass
    if not said:
        said.append(f"aiohook is not installed in {hooks_dir}")
    else:
        said.append("settings in the config directory are kept; " + RESTART_NOTE)
    return said


# ---------------------------------------------------------------- status


def _launcher_facts(path: str) -> dict:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(16384)
    except OSError:
        return {}
    facts = {}
    shebang = text.split("\n", 1)[0]
    if shebang.startswith("#!"):
        facts["interpreter"] = shebang[2:].split()[0]
    match = re.search(r"^os\.environ\['AIOHOOK_CONFIG_DIR'\] = '([^']*)'$", text, re.MULTILINE)
    facts["config_dir"] = match.group(1) if match else DEFAULT_CONFIG_DIR
    return facts


def status(hooks_dir: str = DEFAULT_HOOKS_DIR) -> dict:
    version = libvirt_version()
    found = installed_hook(hooks_dir, version)
    out: dict = {
        "aiohook_version": __version__,
        "libvirt_version": version,
        "hooks_dir": hooks_dir,
        "qemu_d_supported": found["qemu_d_supported"],
        "installed": found["installed"],
        "hook": found["hook"],
        "libvirt_runs": found["libvirt_runs"],
        "problems": [],
    }
    if found["ours"] and not found["installed"]:
        out["problems"].append(f"{found['ours'][0]} exists but libvirt will not run it "
                               "(not executable, or qemu.d unsupported)")
    hook = out["hook"]
    if hook:
        out.update(_launcher_facts(hook))
        from aiohook.budget.procscan import daemon_started

        daemon = daemon_started()
        if daemon:
            name, since = daemon
            out["daemon"] = name
            # btime has whole seconds: the start time read back may be up to 1 s early
            if os.stat(hook).st_mtime > since + 1.0:
                out["problems"].append(f"{name} started before {hook} was written: it will not "
                                       f"run the hook until restarted")
        interpreter = out.get("interpreter")
        if interpreter and not os.access(interpreter, os.X_OK):
            out["problems"].append(f"the hook's interpreter {interpreter} is missing")
    config = out.get("config_dir") or current_config_dir()
    out["config_dir"] = config
    out.update(_effective_settings(config))
    return out


def _effective_settings(config: str) -> dict:
    from aiohook.errors import AiohookError

    saved = os.environ.get("AIOHOOK_CONFIG_DIR")
    os.environ["AIOHOOK_CONFIG_DIR"] = config
    try:
        from aiohook.policy.loader import load_ruleset, resolve_rules_path
        from aiohook.settings import load_settings, settings_path

        assert current_config_dir() == config
        out: dict = {"settings_file": settings_path()}
        try:
            settings = load_settings()
        except AiohookError as exc:
            out["settings_error"] = exc.one_line()
            return out
        out["settings"] = settings.to_yaml_dict()
        out["rules_file"] = resolve_rules_path(settings.rules)
        try:
            load_ruleset(settings.rules)
        except AiohookError as exc:
            out["rules_error"] = exc.one_line()
        return out
    finally:
        if saved is None:
            os.environ.pop("AIOHOOK_CONFIG_DIR", None)
        else:
            os.environ["AIOHOOK_CONFIG_DIR"] = saved
