"""The Debian package (`make deb`): its contents, lintian, and install, remove and
purge with apt and dpkg in a private copy of the modern chroot stack.

The copy (/var/cache/aiohook/stack-pkgtest-*) is made from the modern stack only
when that stack is built and nothing is mounted in it (`make test` runs this file
before the libvirt tests, which keep it mounted until their session ends). Only
/proc and /dev are bind-mounted into the copy, privately, for the module's
duration; no libvirtd runs in it. The copy is unmounted and removed afterwards.
The end-to-end test with a real libvirtd is tests/test_package_libvirt.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest
from paths import ROOT

CHECKOUT = str(ROOT)
MODERN_ROOT = os.environ.get("AIOHOOK_MODERN_ROOT", "/var/cache/aiohook/stack-modern")
HOOK = "/etc/libvirt/hooks/qemu.d/50-aiohook"
SHIPPED = "/usr/libexec/aiohook/qemu-hook"
MARKER = "# aiohook-launcher: 1"
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive"}
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3")


def version() -> str:
    with open(os.path.join(CHECKOUT, "debian", "changelog")) as fh:
        return re.match(r"aiohook \(([^)]+)\)", fh.readline()).group(1)


def build_deb() -> str:
    """The .deb of this checkout: AIOHOOK_DEB, else `make deb` (a no-op when up to date)."""
    given = os.environ.get("AIOHOOK_DEB")
    if given and os.path.exists(given) and not os.environ.get("AIOHOOK_REBUILD_DEB"):
        return given
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if missing and os.geteuid() != 0:
        pytest.skip(f"not root and {', '.join(missing)} missing: `make deb` can't install "
                    "debhelper, dh-python and dpkg-dev")
    done = subprocess.run(["make", "--no-print-directory", "-s", "deb"], cwd=CHECKOUT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return os.path.join(CHECKOUT, "dist", f"aiohook_{version()}_all.deb")


def _mountinfo_targets() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4].replace("\\040", " ") for line in fh]


def mounted_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    return [t for t in _mountinfo_targets() if t == path or t.startswith(path + "/")]


class ChrootCopy:
    """A private copy of the modern stack, with /proc and /dev bound in privately."""

    def __init__(self, tag: str):
        if os.geteuid() != 0:
            pytest.skip("not root: the package tests install into a chroot")
        for tool in ("chroot", "mount", "umount", "cp"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} missing")
        if not os.path.exists(os.path.join(MODERN_ROOT, ".aiohook-stack")):
            pytest.skip(f"no modern stack at {MODERN_ROOT}: `make stacks` builds it")
        busy = mounted_under(MODERN_ROOT)
        if busy:
            pytest.skip(f"{MODERN_ROOT} has mounts ({busy[0]}...): a libvirt test session is "
                        "using it; run this file before the libvirt tests, as `make test` does")
        self.root = tempfile.mkdtemp(prefix=f"stack-pkgtest-{tag}-",
                                     dir=os.path.dirname(MODERN_ROOT))
        self.mounts: list[str] = []
        try:
            subprocess.run(["cp", "-a", "--reflink=auto", MODERN_ROOT + "/.", self.root + "/"],
                           check=True, capture_output=True, timeout=600)
            if mounted_under(MODERN_ROOT):
                raise _Busy()
            for fs in ("/proc", "/dev"):
                target = self.path(fs)
                os.makedirs(target, exist_ok=True)
                subprocess.run(["mount", "--bind", fs, target], check=True, capture_output=True)
                self.mounts.append(target)
                # nothing mounted below it later may propagate back to the host's tree
                subprocess.run(["mount", "--make-private", target], check=True,
                               capture_output=True)
        except _Busy:
            self.close()
            pytest.skip(f"{MODERN_ROOT} was mounted while being copied")
        except BaseException:
            self.close()
            raise

    def path(self, inside: str) -> str:
        return os.path.join(self.root, inside.lstrip("/"))

    def run(self, *argv: str, input: bytes | None = None, env: dict | None = None,
            check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["chroot", self.root, *argv], input=input, capture_output=True,
                              env={**CHROOT_ENV, **(env or {})}, timeout=timeout, check=False,
                              cwd="/")
        if check and done.returncode != 0:
            raise AssertionError(f"chroot {' '.join(argv)} -> {done.returncode}:\n"
                                 f"{done.stdout.decode(errors='replace')[-3000:]}\n"
                                 f"{done.stderr.decode(errors='replace')[-3000:]}")
        return done

    def read(self, inside: str) -> str:
        with open(self.path(inside), errors="replace") as fh:
            return fh.read()

    def exists(self, inside: str) -> bool:
        return os.path.lexists(self.path(inside))

    def daemons(self, name: str = "libvirtd") -> list[int]:
        """Processes named `name` whose root is this copy."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().strip() != name:
                        continue
                if os.path.realpath(os.readlink(f"/proc/{entry}/root")) == \
                        os.path.realpath(self.root):
                    out.append(int(entry))
        return out

    def close(self) -> None:
        """Unmount (deepest first) and remove the copy; never removes through a mount."""
        if not getattr(self, "root", None) or not os.path.isdir(self.root):
            return
        for target in sorted(mounted_under(self.root), key=len, reverse=True):
            if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                time.sleep(0.5)
                subprocess.run(["umount", "-l", target], capture_output=True)
        left = mounted_under(self.root)
        if left:
            raise AssertionError(f"still mounted, {self.root} is kept: {left}")
        subprocess.run(["rm", "-rf", "--one-file-system", self.root], check=True,
                       capture_output=True, timeout=300)


class _Busy(Exception):
    pass


@contextlib.contextmanager
def chroot_copy(tag: str):
    copy = ChrootCopy(tag)
    try:
        yield copy
    finally:
        copy.close()


def install_deb(root: ChrootCopy, deb: str) -> str:
    """`apt-get install ./aiohook.deb` in the copy; returns its output."""
    inside = "/tmp/" + os.path.basename(deb)
    shutil.copy(deb, root.path(inside))
    try:
        done = root.run("apt-get", "install", "-y", "--no-install-recommends", inside)
    finally:
        os.unlink(root.path(inside))
    return done.stdout.decode() + done.stderr.decode()


# Not part of aiohook's state: apt's and dpkg's own bookkeeping, and scratch space.
SNAPSHOT_SKIP = ("proc", "dev", "tmp", "var/tmp", "var/lib/dpkg", "var/lib/apt", "var/cache/apt",
                 "var/log/apt", "var/log/dpkg.log", "var/cache/debconf", "var/cache/ldconfig",
                 "var/log/alternatives.log")


def tree(root: str) -> dict[str, str]:
    """path -> kind and content digest (files) or target (links), for the whole copy."""
    out = {}
    skip = {os.path.join(root, s) for s in SNAPSHOT_SKIP}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            rel = "/" + os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    out[rel] = "file:" + hashlib.sha256(fh.read()).hexdigest()
            else:
                out[rel] = f"kind:{stat.S_IFMT(st.st_mode)}"
    return out


# ---------------------------------------------------------------- the .deb itself


@pytest.fixture(scope="module")
def deb():
    return build_deb()


@pytest.fixture(scope="module")
def control(deb, tmp_path_factory):
    out = tmp_path_factory.mktemp("control")
    subprocess.run(["dpkg-deb", "-e", deb, str(out)], check=True)
    return out


def deb_files(deb: str) -> dict[str, str]:
    """path -> mode string, from dpkg-deb -c."""
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    out = {}
    for line in listing.splitlines():
        fields = line.split(None, 5)
        out[fields[5].split(" -> ")[0].lstrip(".")] = fields[0]
    return out


def deb_file(deb: str, path: str) -> bytes:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                         check=True).stdout
    return subprocess.run(["tar", "-xOf", "-", "." + path], input=tar, capture_output=True,
                          check=True).stdout


def test_versions_agree():
    from aiohook import __version__

    with open(os.path.join(CHECKOUT, "pyproject.toml")) as fh:
        pyproject = re.search(r'^version = "([^"]+)"', fh.read(), re.MULTILINE).group(1)
    assert version() == pyproject == __version__


def test_the_deb_installs_what_the_issue_lists(deb):
    files = deb_files(deb)
    for path in ("/usr/bin/aiohook", "/usr/lib/python3/dist-packages/aiohook/cli.py",
                 "/usr/lib/python3/dist-packages/aiohook/rules.yaml",
                 "/usr/lib/python3/dist-packages/aiohook/metrics.py",
                 SHIPPED, "/etc/aiohook/aiohook.yaml", "/etc/sysctl.d/60-aiohook.conf",
                 "/usr/share/man/man1/aiohook.1.gz",
                 "/lib/systemd/system/aiohook-textfile.service",
                 "/lib/systemd/system/aiohook-textfile.timer"):
        assert path in files, path
    assert files[SHIPPED].startswith("-rwxr-xr-x")
    # the hook itself is written by postinst, so that dpkg -r removes it (a file
    # shipped under /etc would be a conffile, and stay)
    assert not any(p.startswith("/etc/libvirt") for p in files)


def test_control_depends_on_debians_python_libraries(deb):
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends", "Architecture"],
                            capture_output=True, text=True, check=True).stdout
    depends = {d.strip().split()[0] for d in fields.split("\n")[0].split(":", 1)[1].split(",")}
    assert {"python3-lxml", "python3-yaml", "python3-jsonschema", "python3-xmlschema",
            "python3:any"} <= depends
    # nothing that needs a newer xmlschema than Debian 12's 1.10
    assert "(>= 2" not in fields
    assert "Architecture: all" in fields


def test_conffiles_are_the_settings_and_the_sysctl_snippet(control):
    assert (control / "conffiles").read_text().split() == [
        "/etc/aiohook/aiohook.yaml", "/etc/sysctl.d/60-aiohook.conf"]


def test_the_launcher_is_aiohooks_own_for_debians_python(deb):
    from aiohook.admin.install import render_launcher

    shipped = deb_file(deb, SHIPPED).decode()
    assert shipped == render_launcher("/usr/bin/python3", ["/usr/lib/python3/dist-packages"],
                                      {}, [])
    assert shipped.startswith("#!/usr/bin/python3 -IS\n") and MARKER in shipped


def test_settings_and_sysctl_snippet(deb):
    with open(os.path.join(CHECKOUT, "aiohook", "data", "aiohook.yaml"), "rb") as fh:
        assert deb_file(deb, "/etc/aiohook/aiohook.yaml") == fh.read()
    snippet = deb_file(deb, "/etc/sysctl.d/60-aiohook.conf").decode()
    active = [line for line in snippet.splitlines() if line.strip() and
              not line.lstrip().startswith(("#", ";"))]
    assert active == []  # inert until the operator enables it
    assert "#fs.aio-max-nr = " in snippet
    from aiohook.budget.gate import SYSCTL_FILE

    assert SYSCTL_FILE == "/etc/sysctl.d/60-aiohook.conf"  # the file doctor --apply writes


def test_maintainer_scripts_never_restart_libvirtd(control):
    from aiohook.admin.install import RESTART_NOTE

    postinst = (control / "postinst").read_text()
    assert f"RESTART_NOTE='{RESTART_NOTE}'" in postinst  # the same words as aiohook install
    for name in ("preinst", "postinst", "prerm", "postrm"):
        path = control / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            if re.search(r"libvirtd|virtqemud", code) and not code.lstrip().startswith(
                    ("echo", "RESTART_NOTE=")):
                raise AssertionError(f"{name} touches libvirtd: {line}")


def test_lintian_reports_no_errors_or_warnings(deb):
    if shutil.which("lintian") is None:
        pytest.skip("lintian missing: apt-get install lintian (make test does)")
    done = subprocess.run(["lintian", "--display-level", ">=warning", "--fail-on", "error",
                           deb], capture_output=True, text=True, timeout=600, check=False)
    tags = [line for line in done.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert done.returncode == 0 and tags == [], done.stdout + done.stderr


def test_man_page_has_every_verb_and_no_groff_warnings(deb, tmp_path):
    from aiohook.cli import build_parser

    page = tmp_path / "aiohook.1"
    import gzip

    page.write_bytes(gzip.decompress(deb_file(deb, "/usr/share/man/man1/aiohook.1.gz")))
    text = page.read_text()
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in verbs.choices:
        assert f'.SS "aiohook {name}"' in text, name
    assert '.SS "aiohook rules lint"' in text and '.SS "aiohook rules validate"' in text
    assert "\\-\\-textfile\\-dir" in text and ".SH EXIT STATUS" in text
    if shutil.which("man") is None:
        pytest.skip("man missing")
    done = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                          capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"}, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_systemd_units_verify():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing")
    units = os.path.join(CHECKOUT, "deploy", "systemd")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           os.path.join(units, "aiohook-textfile.service"),
                           os.path.join(units, "aiohook-textfile.timer")],
                          capture_output=True, text=True, check=False)
    problems = [line for line in done.stderr.splitlines() if "aiohook" in line]
    assert done.returncode == 0 and problems == [], done.stderr


# ---------------------------------------------------------------- apt and dpkg in a chroot copy


@pytest.fixture(scope="module")
def root():
    with chroot_copy("deb") as copy:
        yield copy


def forget_aiohook_caches(root: ChrootCopy) -> None:
    """The stack's own tests ran aiohook from the checkout in it, which left compiled
    rules in its /var/cache/aiohook: the copy is to look like a host that never had
    aiohook."""
    import glob

    cache = root.path("/var/cache/aiohook")
    for pattern in ("binaries.json", "rules-*.json", "settings-*.json"):
        for path in glob.glob(os.path.join(cache, pattern)):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(cache)


@pytest.fixture(scope="module")
def pristine(root):
    """The copy's tree before the package was ever installed."""
    forget_aiohook_caches(root)
    return tree(root.root)


@pytest.fixture(scope="module")
def installed(root, pristine, deb):
    assert not root.exists(HOOK)
    return install_deb(root, deb)


def prealloc(root: ChrootCopy, name: str) -> str:
    inside = f"/var/tmp/{name}.raw"
    with open(root.path(inside), "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    return inside


def domain_xml(name: str, source: str, native: bool = False) -> bytes:
    driver = "cache='none' io='native'" if native else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' {driver}/>
      <source file='{source}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
""".encode()


def decisions(root: ChrootCopy) -> list[dict]:
    path = root.path("/var/log/aiohook/decisions.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_apt_installs_the_hook_and_says_a_restart_is_needed(root, installed):
    from aiohook.admin.install import RESTART_NOTE

    assert f"aiohook: installed {HOOK} (runs /usr/bin/python3 -IS)" in installed
    assert RESTART_NOTE in installed
    assert root.daemons("libvirtd") == [] and root.daemons("virtqemud") == []
    status = root.run("dpkg-query", "-W", "-f=${Status} ${Version}", "aiohook").stdout.decode()
    assert status == f"install ok installed {version()}"
    hook = root.read(HOOK)
    st = os.stat(root.path(HOOK))
    assert oct(st.st_mode & 0o7777) == "0o755" and st.st_uid == 0
    # the shipped launcher, plus the directory postinst had to create (for dpkg -r)
    assert hook == root.read(SHIPPED).replace(
        "# created-dirs: []", '# created-dirs: ["/etc/libvirt/hooks/qemu.d"]')
    assert not [n for n in os.listdir(root.path("/etc/libvirt/hooks")) if n.startswith(".")]


def test_aiohook_runs_on_debians_python_and_status_sees_the_hook(root, installed):
    out = root.run("aiohook", "--version").stdout.decode()
    assert out.strip() == f"aiohook {version()}"
    where = root.run("python3", "-c", "import aiohook, sys; print(aiohook.__file__)")
    assert where.stdout.decode().strip() == "/usr/lib/python3/dist-packages/aiohook/__init__.py"
    info = json.loads(root.run("aiohook", "status", "--format", "json").stdout)
    assert info["installed"] and info["hook"] == HOOK and info["problems"] == []
    assert info["interpreter"] == "/usr/bin/python3"
    assert info["config_dir"] == "/etc/aiohook" and "settings_error" not in info
    assert info["settings"]["enforce"] == "warn"
    rules = root.run("aiohook", "rules", "validate").stdout.decode()
    assert rules.strip().endswith(": ok")


def test_debian_12s_xmlschema_1_10_validates_the_metadata_xsd(root, installed, tmp_path):
    """aiohook's runtime never imports xmlschema; the metadata XSD it ships is what
    xmlschema is for. Debian 12's 1.10 accepts every override in the fixtures and
    rejects a bad one, as the suite's newer xmlschema does (test_metadata_xsd.py)."""
    import glob

    from lxml import etree

    from aiohook.domxml.overrides import NAMESPACE

    docs = root.path("/var/tmp/xsd-docs")
    os.makedirs(docs)
    n = 0
    for path in sorted(glob.glob(os.path.join(CHECKOUT, "tests", "fixtures", "domains", "*.xml"))
                       + glob.glob(os.path.join(CHECKOUT, "examples", "*.xml"))):
        policy = etree.parse(path).getroot().find(f"metadata/{{{NAMESPACE}}}policy")
        if policy is not None:
            n += 1
            with open(os.path.join(docs, f"good-{n}.xml"), "wb") as fh:
                fh.write(etree.tostring(policy))
    assert n > 0
    with open(os.path.join(docs, "bad-1.xml"), "w") as fh:
        fh.write(f"<aiohook:policy xmlns:aiohook='{NAMESPACE}'><aiohook:disk target='vda' "
                 "io='sideways'/></aiohook:policy>")
    code = ("import glob, xmlschema\n"
            "xsd = xmlschema.XMLSchema('/usr/lib/python3/dist-packages/aiohook/schemas/"
            "aiohook-metadata.xsd')\n"
            "for p in sorted(glob.glob('/var/tmp/xsd-docs/*.xml')):\n"
            "    print(p.rsplit('/', 1)[1], xsd.is_valid(p))\n"
            "print('version', xmlschema.__version__)\n")
    out = root.run("python3", "-c", code).stdout.decode().split("\n")
    assert "version 1.10.0" in out
    verdicts = dict(line.split() for line in out if line.endswith(("True", "False")))
    assert verdicts.pop("bad-1.xml") == "False"
    assert set(verdicts.values()) == {"True"} and len(verdicts) == n


def test_the_packaged_hook_gates_and_rewrites_like_libvirt_calls_it(root, installed):
    source = prealloc(root, "pkg-hook")
    xml = domain_xml("pkg-dom", source)
    done = root.run(HOOK, "pkg-dom", "prepare", "begin", "-", input=xml, env={"LC_ALL": "C"})
    assert done.returncode == 0 and done.stdout == b""
    entry = decisions(root)[-1]
    assert entry["domain"] == "pkg-dom" and entry["outcome"] == "warned"  # enforce: warn
    assert entry["disks"][0]["io"] == {"before": None, "after": "native"}
    done = root.run(HOOK, "pkg-dom", "restore", "begin", "-", input=xml)
    assert b"<driver name='qemu' type='raw' cache='none' io='native'/>" in done.stdout
    assert decisions(root)[-1]["outcome"] == "rewritten"


def test_the_metrics_service_writes_the_textfile(root, installed):
    with open(os.path.join(CHECKOUT, "deploy", "systemd", "aiohook-textfile.service")) as fh:
        exec_start = re.search(r"^ExecStart=(.*)$", fh.read(), re.MULTILINE).group(1).split()
    textfile_dir = exec_start[exec_start.index("--textfile-dir") + 1]
    # without node_exporter's directory, the service (ConditionPathIsDirectory) and
    # the command do nothing
    assert root.run(*exec_start, check=False).returncode != 0
    os.makedirs(root.path(textfile_dir))
    root.run(*exec_start)
    prom = root.read(textfile_dir + "/aiohook.prom")
    assert "aiohook_hook_installed 1\n" in prom
    assert 'aiohook_hook_decisions_total{outcome="warned"} 1\n' in prom
    assert 'aiohook_hook_decisions_total{outcome="rewritten"} 1\n' in prom
    assert re.search(r"^aiohook_aio_max_nr \d+$", prom, re.MULTILINE)
    root.run(*exec_start)  # counters don't move without new decisions
    assert 'aiohook_hook_decisions_total{outcome="warned"} 1\n' in root.read(
        textfile_dir + "/aiohook.prom")
    assert [n for n in os.listdir(root.path(textfile_dir))] == ["aiohook.prom"]
    assert os.path.exists(root.path("/var/lib/aiohook/metrics-state.json"))


def test_a_reinstall_keeps_the_hook_and_its_time(root, installed, deb):
    before = os.stat(root.path(HOOK)).st_mtime
    inside = "/tmp/" + os.path.basename(deb)
    shutil.copy(deb, root.path(inside))
    try:
        out = root.run("apt-get", "install", "-y", "--reinstall", inside).stdout.decode()
    finally:
        os.unlink(root.path(inside))
    assert "restart it now" not in out  # libvirtd already knows this hook
    assert os.stat(root.path(HOOK)).st_mtime == before
    assert MARKER in root.read(HOOK)


def test_dpkg_remove_takes_the_hook_and_keeps_the_conffiles(root, installed):
    settings = root.path("/etc/aiohook/aiohook.yaml")
    with open(settings, "a") as fh:
        fh.write("# changed by the site\n")
    done = root.run("dpkg", "-r", "aiohook")
    out = done.stdout.decode() + done.stderr.decode()
    assert f"aiohook: removed {HOOK}" in out
    assert not root.exists(HOOK)
    assert not root.exists("/etc/libvirt/hooks/qemu.d")  # the package made it
    assert os.path.isdir(root.path("/etc/libvirt/hooks"))  # libvirt's own
    assert root.read("/etc/aiohook/aiohook.yaml").endswith("# changed by the site\n")
    assert root.exists("/etc/sysctl.d/60-aiohook.conf")
    assert root.exists("/var/log/aiohook/decisions.jsonl")  # until purge
    assert not root.exists("/usr/lib/python3/dist-packages/aiohook")
    assert not root.exists("/usr/bin/aiohook") and not root.exists(SHIPPED)
    status = root.run("dpkg-query", "-W", "-f=${Status}", "aiohook").stdout.decode()
    assert status == "deinstall ok config-files"
    assert root.daemons("libvirtd") == []


def test_reinstall_after_remove_keeps_the_sites_settings(root, deb):
    out = install_deb(root, deb)
    assert "restart it now" in out  # the hook is new again
    assert root.read("/etc/aiohook/aiohook.yaml").endswith("# changed by the site\n")
    assert MARKER in root.read(HOOK)


def test_a_foreign_hook_is_left_alone(root, deb):
    root.run("dpkg", "--purge", "aiohook")
    foreign = "#!/bin/sh\n# someone else's hook\nexit 0\n"
    os.makedirs(root.path("/etc/libvirt/hooks/qemu.d"))
    with open(root.path(HOOK), "w") as fh:
        fh.write(foreign)
    os.chmod(root.path(HOOK), 0o755)
    try:
        out = install_deb(root, deb)
        assert "exists and is not aiohook's: left as it is" in out
        assert root.read(HOOK) == foreign
        root.run("dpkg", "-r", "aiohook")
        assert root.read(HOOK) == foreign
        root.run("dpkg", "--purge", "aiohook")
        assert root.read(HOOK) == foreign
    finally:
        os.unlink(root.path(HOOK))
        os.rmdir(root.path("/etc/libvirt/hooks/qemu.d"))


def test_purge_removes_everything(root, pristine, deb):
    install_deb(root, deb)
    # what aiohook writes at run time: a decision, a booking, metrics, its caches
    source = prealloc(root, "pkg-purge")
    done = root.run(HOOK, "pkg-purge", "prepare", "begin", "-",
                    input=domain_xml("pkg-purge", source, native=True))
    assert decisions(root)[-1]["outcome"] == "compliant", done.stderr
    assert os.listdir(root.path("/run/aiohook"))  # its AIO booking
    os.makedirs(root.path("/var/lib/prometheus/node-exporter"), exist_ok=True)
    root.run("python3", "-m", "aiohook.metrics")
    with open(root.path("/etc/aiohook/rules.yaml"), "w") as fh:  # the site's rules
        fh.write(root.read("/usr/lib/python3/dist-packages/aiohook/profiles/conservative.yaml"))
    for path in ("/var/log/aiohook/decisions.jsonl", "/run/aiohook", "/var/lib/aiohook",
                 "/var/lib/prometheus/node-exporter/aiohook.prom", "/var/cache/aiohook"):
        assert root.exists(path), path
    root.run("dpkg", "--purge", "aiohook")
    os.rmdir(root.path("/var/lib/prometheus/node-exporter"))  # the test made it
    for d in ("/var/lib/prometheus",):
        if not os.listdir(root.path(d)):
            os.rmdir(root.path(d))
    after = tree(root.root)
    added = sorted(set(after) - set(pristine))
    removed = sorted(set(pristine) - set(after))
    changed = sorted(p for p in set(after) & set(pristine) if after[p] != pristine[p])
    assert (added, removed, changed) == ([], [], []), (added[:20], removed[:20], changed[:20])
    assert root.daemons("libvirtd") == []

