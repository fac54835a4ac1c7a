"""`aiohook apply`: make persistent domain definitions compliant, so the next start is.

Through virsh rather than the libvirt Python binding: the binding is a C
extension that must be built against libvirt's headers for the venv (not on
PyPI as a wheel), while virsh ships with every libvirt host and is the tool
operators already use and trust; its argv is the same as their own commands.
virsh runs with argv lists only (never a shell); the XML goes through a
private 0600 file because `--security-info` includes secrets.

Per domain: `virsh dumpxml --inactive --security-info` (the persistent
definition, not the live one), plan it with the settings' rules on this host,
then `virsh define FILE` when something changed. A running domain keeps
running with its old io until its next full start (shutdown + start; a reboot
from inside the guest keeps the QEMU process): this is said in the output.
Transient domains have no persistent definition and are skipped (define would
make them persistent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from aiohook.errors import AiohookError, LibvirtError, UsageError

VIRSH_TIMEOUT_S = 120


def virsh(connect: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("virsh")
    if exe is None:
        raise LibvirtError("virsh not found: install libvirt-clients")
    argv = [exe] + (["-c", connect] if connect else []) + list(args)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=VIRSH_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False,
                              env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise LibvirtError(f"virsh {' '.join(args)}: no answer in {VIRSH_TIMEOUT_S} s") from None
    if check and done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().replace("\n", " ")
        raise LibvirtError(f"virsh {' '.join(args)}: {err or f'exit {done.returncode}'}")
    return done


def all_domains(connect: str | None) -> list[str]:
    out = virsh(connect, "list", "--all", "--name").stdout.decode()
    return [line.strip() for line in out.splitlines() if line.strip()]


def dominfo(connect: str | None, name: str) -> dict[str, str]:
    out = virsh(connect, "dominfo", name).stdout.decode("utf-8", "replace")
    info = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def apply(domains: list[str], *, connect: str | None = None, dry_run: bool = False,
          all_: bool = False, out=None) -> int:
    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe.linux import LinuxProbe
    from aiohook.settings import load_settings
    from aiohook.textdiff import unified_diff

    out = out or sys.stdout
    if all_ and domains:
        raise UsageError("give domain names or --all, not both")
    if not all_ and not domains:
        raise UsageError("name at least one domain, or --all")
    names = all_domains(connect) if all_ else domains
    settings = load_settings()
    ruleset = load_ruleset(settings.rules)
    probe = LinuxProbe()
    failures: list[int] = []
    for name in names:
        try:
            info = dominfo(connect, name)
            if info.get("Persistent") == "no":
                print(f"{name}: transient (no persistent definition): skipped", file=out)
                continue
            old = virsh(connect, "dumpxml", "--inactive", "--security-info", name).stdout
            plan = plan_xml(old, f"<virsh dumpxml {name}>", ruleset, probe)
            if plan.skipped or not plan.changed:
                why = "aiohook metadata says skip" if plan.skipped else "already as the rules want"
                print(f"{name}: unchanged ({why})", file=out)
                continue
            new = plan.rewritten()
            from aiohook.hook.planning import describe

            changes = [describe(d) for d in plan.disks if d.decision.changed]
            running = info.get("State", "") not in ("shut off", "")
            if dry_run:
                out.write(unified_diff(old, new, f"{name} (persistent)"))
                print(f"{name}: would change {len(changes)} disk(s) (dry run)", file=out)
                continue
            define(connect, new)
            print(f"{name}: defined with {len(changes)} disk(s) changed:", file=out)
            for line in changes:
                print(f"  {line}", file=out)
            if running:
                print(f"{name}: is {info.get('State')}: only its persistent config changed; the "
                      f"running QEMU keeps its io until the domain is shut down and started "
                      f"again", file=out)
        except AiohookError as exc:  # one bad domain does not stop the others
            failures.append(exc.exit_code)
            print(f"aiohook: error: {name}: {exc.one_line()}", file=sys.stderr)
    return failures[0] if failures else 0


def define(connect: str | None, xml: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="aiohook-apply-") as tmp:  # 0700
        path = os.path.join(tmp, "domain.xml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(xml)
        virsh(connect, "define", path)
