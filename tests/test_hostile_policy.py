"""Issue 14 item 6, reads: the hook takes policy only from files no one but root
can write, as sshd's StrictModes does.

Whoever can write the settings or the rules can make every VM on the host
refuse to start (`enforce: refuse`, `on_error: refuse`, a rule that wants what
no disk has). So the hook (hooks/qemu, run here as libvirt runs it) refuses a
settings or rules file that is group- or world-writable, owned by another
non-root user, reached through a directory others can write (unless it has the
sticky bit) or through a symlink another user owns. It says so (stderr, syslog,
the decision log) and follows on_error: the settings' on_error for untrusted
rules; the built-in `allow` for untrusted settings, whose own on_error line is
not trusted either (that line alone could refuse every start).

The CLI reads what its user names: only the hook is strict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import HOOK, ROOT

from aiohook import fsutil

NOBODY = 65534
STRICT = "enforce: refuse\non_error: refuse\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user)")


class Host:
    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.config = tmp_path / "etc"
        self.config.mkdir(mode=0o755)
        disk = tmp_path / "prealloc.raw"
        with open(disk, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, 1 << 20)
        # Non-compliant under the default rules (wants io=native cache=none):
        # refused with `enforce: refuse` when the settings are trusted.
        self.xml = f"""<domain type='kvm'><name>dom</name><memory>65536</memory>
<os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>""".encode()

    def env(self, config: Path | None = None) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "AIOHOOK_CONFIG_DIR": str(config or self.config),
                "AIOHOOK_LOG_DIR": str(self.root / "log"),
                "AIOHOOK_CACHE_DIR": str(self.root / "cache"),
                "AIOHOOK_STATE_DIR": str(self.root / "state")}

    def hook(self, config: Path | None = None):
        done = subprocess.run([sys.executable, str(HOOK), "dom", "prepare", "begin", "-"],
                              input=self.xml, capture_output=True, env=self.env(config),
                              timeout=60, check=False)
        assert b"Traceback" not in done.stderr
        return done.returncode, done.stderr.decode()


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def trusted_refusal(code: int, err: str) -> None:
    """The settings were used: enforce: refuse refused the non-compliant domain."""
    assert code == 1 and "refusing to start dom (enforce: refuse)" in err, err


def untrusted_settings(code: int, err: str, why: str) -> None:
    """The settings were refused, said so, and the built-in on_error (allow) applied."""
    assert code == 0, err
    assert "not trusted as policy" in err and why in err, err
    assert "(on_error (settings unusable): allow)" in err, err


# ---------------------------------------------------------------- the settings file


def test_a_settings_file_only_root_can_write_is_used(host):
    (host.config / "aiohook.yaml").write_text(STRICT)
    trusted_refusal(*host.hook())


@pytest.mark.parametrize("mode,why", [(0o664, "group-writable (mode 0664)"),
                                      (0o646, "world-writable (mode 0646)"),
                                      (0o666, "group- and world-writable (mode 0666)")])
def test_a_settings_file_others_can_write_is_refused(host, mode, why):
    settings = host.config / "aiohook.yaml"
    settings.write_text(STRICT)
    settings.chmod(mode)
    untrusted_settings(*host.hook(), why)


def test_a_settings_file_owned_by_another_user_is_refused(host):
    settings = host.config / "aiohook.yaml"
    settings.write_text(STRICT)
    os.chown(settings, NOBODY, NOBODY)
    untrusted_settings(*host.hook(), "owned by nobody")


def test_its_on_error_line_is_not_salvaged_either(host):
    """Invalid and untrusted: the lenient on_error reading must not see it."""
    settings = host.config / "aiohook.yaml"
    settings.write_text("on_error: refuse\nenforce: bogus\n")
    settings.chmod(0o666)
    untrusted_settings(*host.hook(), "group- and world-writable")


@pytest.mark.parametrize("mode,owner,trusted", [
    (0o777, 0, False),        # others can write, no sticky bit: they can swap the file
    (0o775, 0, False),
    (0o1777, 0, True),        # sticky (as /tmp): others cannot rename or remove root's file
    (0o755, NOBODY, False),   # the owner of the directory can swap the file
])
def test_the_directory_holding_it(host, mode, owner, trusted):
    config = host.root / "conf"
    config.mkdir()
    (config / "aiohook.yaml").write_text(STRICT)
    os.chown(config, owner, owner)
    config.chmod(mode)
    if trusted:
        trusted_refusal(*host.hook(config))
    else:
        untrusted_settings(*host.hook(config), f"directory {config}")


def test_a_writable_directory_further_up(host):
    upper = host.root / "upper"
    config = upper / "etc"
    config.mkdir(parents=True)
    (config / "aiohook.yaml").write_text(STRICT)
    upper.chmod(0o777)  # whoever can write upper/ can rename etc/ away and put theirs
    untrusted_settings(*host.hook(config), f"directory {upper} is group- and world-writable")


def test_a_symlink_another_user_owns(host):
    real = host.root / "real.yaml"
    real.write_text(STRICT)
    link = host.config / "aiohook.yaml"
    link.symlink_to(real)
    os.lchown(link, NOBODY, NOBODY)
    untrusted_settings(*host.hook(), f"symlink {link} is owned by nobody")


def test_a_root_symlink_into_a_directory_another_user_owns(host):
    theirs = host.root / "theirs"
    theirs.mkdir()
    (theirs / "aiohook.yaml").write_text(STRICT)
    os.chown(theirs, NOBODY, NOBODY)
    (host.config / "aiohook.yaml").symlink_to(theirs / "aiohook.yaml")
    untrusted_settings(*host.hook(), f"directory {theirs} is owned by nobody")


def test_a_root_symlink_to_a_trusted_file_is_fine(host):
    elsewhere = host.root / "srv"
    elsewhere.mkdir()
    (elsewhere / "aiohook.yaml").write_text(STRICT)
    (host.config / "aiohook.yaml").symlink_to("../srv/aiohook.yaml")
    trusted_refusal(*host.hook())


# ---------------------------------------------------------------- the rules file


@pytest.mark.parametrize("on_error,code", [("refuse", 1), ("allow", 0)])
def test_rules_others_can_write_follow_on_error(host, on_error, code):
    (host.config / "aiohook.yaml").write_text(f"rules: rules.yaml\non_error: {on_error}\n")
    rules = host.config / "rules.yaml"
    rules.write_bytes((ROOT / "aiohook" / "rules.yaml").read_bytes())
    rules.chmod(0o666)
    got, err = host.hook()
    assert got == code, err
    assert f"{rules}: not trusted as policy, it is group- and world-writable" in err
    assert f"(on_error: {on_error})" in err
    rules.chmod(0o644)
    got, err = host.hook()
    assert got == 0 and "not trusted" not in err, err


def test_rules_owned_by_another_user(host):
    (host.config / "aiohook.yaml").write_text("on_error: refuse\n")
    rules = host.config / "rules.yaml"  # the default place
    rules.write_bytes((ROOT / "aiohook" / "rules.yaml").read_bytes())
    os.chown(rules, NOBODY, NOBODY)
    got, err = host.hook()
    assert got == 1 and f"{rules}: not trusted as policy, it is owned by nobody" in err, err


def test_packaged_profiles_are_trusted_as_the_code_is(host, tmp_path, monkeypatch):
    (host.config / "aiohook.yaml").write_text("rules: default\n" + STRICT)
    trusted_refusal(*host.hook())
    # Even in a checkout others can write: the YAML beside the code is the code's.
    package = tmp_path / "checkout" / "aiohook"
    package.mkdir(parents=True)
    (package / "rules.yaml").write_text("x: 1\n")
    package.chmod(0o777)
    monkeypatch.setattr("aiohook.paths.PACKAGE_DIR", str(package))
    assert fsutil.trust_problem(str(package / "rules.yaml")) is None
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "rules.yaml").write_text("x: 1\n")
    loose.chmod(0o777)
    assert f"directory {loose} is group- and world-writable" in fsutil.trust_problem(
        str(loose / "rules.yaml"))


def test_the_cli_reads_what_its_user_names(host, tmp_path):
    rules = tmp_path / "mine.yaml"
    rules.write_bytes((ROOT / "aiohook" / "rules.yaml").read_bytes())
    rules.chmod(0o666)
    done = subprocess.run([sys.executable, "-m", "aiohook", "rules", "validate", str(rules)],
                          capture_output=True, env={**os.environ, **host.env()}, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()


# ---------------------------------------------------------------- the check itself


def test_trust_problem_judges_the_file_that_was_opened(tmp_path):
    """The fstat of the open file decides: a name swapped after the open is caught."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("x: 1\n")
    b.write_text("x: 2\n")
    st_a = os.stat(a)
    assert fsutil.trust_problem(str(a), st_a) is None
    os.replace(b, a)
    assert "changed while it was checked" in fsutil.trust_problem(str(a), st_a)


def test_strict_modes_is_off_outside_the_hook(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("x: 1\n")
    path.chmod(0o666)
    assert fsutil.strict_modes is False
    assert fsutil.read_policy(str(path), 100) == b"x: 1\n"
    with pytest.raises(fsutil.UntrustedPolicyError, match="group- and world-writable"):
        fsutil.read_policy(str(path), 100, strict=True)
