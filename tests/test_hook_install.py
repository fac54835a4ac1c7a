"""`aiohook install / uninstall / status` in scratch hooks dirs (libvirtd is not touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

AIOHOOK = os.path.join(os.path.dirname(sys.executable), "aiohook")


@pytest.fixture
def dirs(tmp_path):
    env = dict(os.environ, AIOHOOK_LOG_DIR=str(tmp_path / "log"),
               AIOHOOK_CACHE_DIR=str(tmp_path / "cache"),
               AIOHOOK_STATE_DIR=str(tmp_path / "state"))
    env.pop("AIOHOOK_CONFIG_DIR", None)
    return tmp_path / "hooks", tmp_path / "etc", env


def aiohook(env, *args, check=True):
    done = subprocess.run([AIOHOOK, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_install_writes_a_pinned_launcher_and_default_config(dirs):
    hooks, etc, env = dirs
    out = aiohook(env, "install", "--hooks-dir", str(hooks), "--config-dir", str(etc)).stdout
    launcher = hooks / "qemu.d" / "50-aiohook"
    assert os.access(launcher, os.X_OK)
    assert not (hooks / "qemu").exists()
    text = launcher.read_text()
    assert text.split("\n", 1)[0].endswith(" -IS")
    assert text.startswith(f"#!{os.path.dirname(sys.executable)}/python")
    assert f"os.environ['AIOHOOK_CONFIG_DIR'] = '{etc}'" in text
    assert (etc / "aiohook.yaml").exists()
    assert "restart" in out and "libvirtd" in out
    # The launcher runs with an empty environment, as libvirt's is nearly empty.
    xml = b"<domain><name>x</name><devices/></domain>"
    done = subprocess.run([str(launcher), "x", "prepare", "begin", "-"], input=xml,
                          capture_output=True, env={}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    status = json.loads(aiohook(env, "status", "--hooks-dir", str(hooks), "--format", "json",
                                check=False).stdout)
    assert status["hook"] == str(launcher) and status["config_dir"] == str(etc)
    assert status["settings"]["enforce"] == "warn"


def test_install_never_clobbers_an_existing_qemu_hook_and_keeps_config(dirs):
    hooks, etc, env = dirs
    hooks.mkdir()
    (hooks / "qemu").write_text("#!/bin/sh\nexit 0\n")
    etc.mkdir()
    (etc / "aiohook.yaml").write_text("enforce: refuse\n")
    out = aiohook(env, "install", "--hooks-dir", str(hooks), "--config-dir", str(etc)).stdout
    assert (hooks / "qemu").read_text() == "#!/bin/sh\nexit 0\n"
    assert "kept" in out
    assert (etc / "aiohook.yaml").read_text() == "enforce: refuse\n"
    aiohook(env, "uninstall", "--hooks-dir", str(hooks))
    assert sorted(os.listdir(hooks)) == ["qemu"]  # qemu.d was ours and is gone again


def test_old_libvirt_gets_hooks_qemu_but_never_over_a_foreign_one(dirs):
    hooks, etc, env = dirs
    aiohook(env, "install", "--hooks-dir", str(hooks), "--config-dir", str(etc),
            "--libvirt-version", "6.0.0")
    assert (hooks / "qemu").read_text().startswith(f"#!{os.path.dirname(sys.executable)}/python")
    assert not (hooks / "qemu.d").exists()
    aiohook(env, "uninstall", "--hooks-dir", str(hooks))
    assert not hooks.exists()  # created by install, removed by uninstall

    hooks.mkdir()
    (hooks / "qemu").write_text("#!/bin/sh\nexit 0\n")
    done = aiohook(env, "install", "--hooks-dir", str(hooks), "--config-dir", str(etc),
                   "--libvirt-version", "6.0.0", check=False)
    assert done.returncode != 0
    assert "is not aiohook's" in done.stderr and "< 6.5" in done.stderr
    assert (hooks / "qemu").read_text() == "#!/bin/sh\nexit 0\n"


def test_status_when_not_installed(dirs):
    hooks, _etc, env = dirs
    done = aiohook(env, "status", "--hooks-dir", str(hooks), check=False)
    assert done.returncode == 1
    assert "installed: no" in done.stdout and "enforce: warn" in done.stdout


def test_status_shows_invalid_settings(dirs):
    hooks, etc, env = dirs
    aiohook(env, "install", "--hooks-dir", str(hooks), "--config-dir", str(etc))
    (etc / "aiohook.yaml").write_text("enforce: maybe\n")
    done = aiohook(env, "status", "--hooks-dir", str(hooks), check=False)
    assert done.returncode == 1
    assert "INVALID" in done.stdout and "aiohook.yaml:1: enforce" in done.stdout


@pytest.mark.parametrize("libvirt", ["6.0.0", "10.0.0"])
def test_doctor_and_status_agree_whether_the_hook_is_installed(tmp_path, monkeypatch, libvirt):
    """One verdict (probe.hookfiles.installed_hook): doctor used to count any executable
    file mentioning aiohook, so a qemu.d launcher that libvirt < 6.5 never runs was
    'installed' for doctor and not for status."""
    from aiohook.admin import install
    from aiohook.budget import doctor
    from aiohook.probe.hookfiles import MARKER

    monkeypatch.setenv("AIOHOOK_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("AIOHOOK_CACHE_DIR", str(tmp_path / "cache"))
    hooks = tmp_path / "hooks"
    (hooks / "qemu.d").mkdir(parents=True)
    launcher = hooks / "qemu.d" / "50-aiohook"
    launcher.write_text(f"#!/bin/sh\n{MARKER}\nexit 0\n")
    wrapper = hooks / "qemu"  # the site's own hook, which mentions aiohook
    wrapper.write_text("#!/bin/sh\n# see aiohook plan\nexit 0\n")
    for path in (launcher, wrapper):
        path.chmod(0o755)
    monkeypatch.setattr(install, "libvirt_version", lambda: libvirt)
    installed = install.status(str(hooks))["installed"]
    assert installed == (libvirt == "10.0.0")
    found = doctor.hook_status(str(hooks), libvirt)
    assert found["installed"] == installed
    assert found["files"] == [{"path": str(launcher), "executable": True}]
