"""Settings: the contract keys, strict validation with file:line, the JSON cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aiohook.errors import EXIT_BAD_POLICY, EXIT_IO, FileAccessError
from aiohook.settings import DEFAULTS, SettingsError, load_settings, parse_settings, settings_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    conf = tmp_path / "etc"
    conf.mkdir()
    monkeypatch.setenv("AIOHOOK_CONFIG_DIR", str(conf))
    monkeypatch.setenv("AIOHOOK_CACHE_DIR", str(tmp_path / "cache"))
    return conf


def write(cfg, text: str) -> str:
    path = cfg / "aiohook.yaml"
    path.write_text(text)
    return str(path)


def test_packaged_default_is_used_when_none_and_matches_the_documented_defaults(cfg):
    assert settings_path().endswith(os.path.join("aiohook", "data", "aiohook.yaml"))
    settings = load_settings(use_cache=False)
    assert settings.to_dict() == DEFAULTS
    assert settings.enforce == "warn" and settings.on_error == "allow"
    assert settings.on_budget_exceeded == "refuse"


def test_every_key(cfg):
    write(cfg, "enforce: refuse\non_error: refuse\non_budget_exceeded: degrade\n"
               "budget:\n  reserve_events: 4096\n  check: events_at_start\nrules: my.yaml\n")
    s = load_settings(use_cache=False)
    assert (s.enforce, s.on_error, s.on_budget_exceeded) == ("refuse", "refuse", "degrade")
    assert (s.budget_reserve_events, s.budget_check) == (4096, "events_at_start")
    assert s.rules == str(cfg / "my.yaml")  # relative to the settings file
    assert s.source == str(cfg / "aiohook.yaml")


def test_bare_off_means_off(cfg):
    write(cfg, "enforce: off\n")  # YAML 1.1 reads this as false
    assert load_settings(use_cache=False).enforce == "off"


@pytest.mark.parametrize("text,line,needle", [
    ("enforce: warn\nenforc: refuse\n", 2, "unknown key 'enforc' (did you mean 'enforce'?)"),
    ("budget:\n  reserve_event: 1\n", 2, "unknown key 'budget.reserve_event'"),
    ("enforce: on\n", 1, "enforce: expected one of off, warn, refuse, got true/on/yes"),
    ("on_error: maybe\n", 1, "on_error: expected one of allow, refuse, got 'maybe'"),
    ("on_budget_exceeded: ignore\n", 1, "on_budget_exceeded: expected one of refuse, degrade"),
    ("budget:\n  reserve_events: -1\n", 2, "budget.reserve_events: expected an integer >= 0"),
    ("budget:\n  reserve_events: yes\n", 2, "budget.reserve_events: expected an integer"),
    ("budget:\n  check: sometimes\n", 2, "budget.check: expected one of events_max, events_at_start"),
    ("budget: 5\n", 1, "budget: expected a mapping"),
    ("rules: [a, b]\n", 1, "rules: expected a file path"),
    ("- enforce\n", 1, "settings must be a mapping"),
    ("enforce: warn\nenforce: refuse\n", 2, "duplicate key 'enforce'"),
    ("enforce: [\n", 2, "invalid YAML"),
    # settings.schema.json through config's one translator (issue 12, item 3)
    ("colour: red\n", 1, "unknown key 'colour'; known keys: enforce, on_error, "
                         "on_budget_exceeded, budget, rules"),
    ("budget:\n  chek: events_max\n", 2, "unknown key 'budget.chek' (did you mean "
                                          "'budget.check'?); known keys: budget.reserve_events, "
                                          "budget.check"),
    ("budget:\n  reserve_events: 1.5\n", 2, "budget.reserve_events: expected an integer >= 0, "
                                            "got 1.5"),
    ("on_error: no\n", 1, "on_error: expected one of allow, refuse, got false/off/no"),
    ("enforce:\n", 1, "enforce: expected one of off, warn, refuse, got None"),
    ("rules: '  '\n", 1, "rules: expected a file path or profile name, got '  '"),
    ("rules: 7\n", 1, "rules: expected a file path or profile name, got 7"),
    ("on_error: refuse\nenforce: 5\nzz: 1\n", 2,
     "enforce: expected one of off, warn, refuse, got 5 (and 1 more problems)"),
])
def test_invalid_settings_name_file_line_and_key(cfg, text, line, needle):
    path = write(cfg, text)
    with pytest.raises(SettingsError) as err:
        load_settings(use_cache=False)
    assert err.value.exit_code == EXIT_BAD_POLICY
    assert err.value.one_line().startswith(f"{path}:{line}: "), err.value.one_line()
    assert needle in err.value.one_line()


@pytest.mark.parametrize("text,expected", [
    ("enforce: no\n", {"enforce": "off"}),
    ("enforce: false\n", {"enforce": "off"}),
    ("budget:\n", {}),
    ("budget: {}\n", {}),
    ("rules:\n", {}),
    ("budget: {check: events_at_start}\n", {"budget_check": "events_at_start"}),
    ("budget: {reserve_events: 0}\n", {"budget_reserve_events": 0}),
])
def test_what_the_schema_allows_builds(cfg, text, expected):
    write(cfg, text)
    assert load_settings(use_cache=False).to_dict() == dict(DEFAULTS, **expected)


def test_the_schema_and_the_defaults_agree():
    """DEFAULTS (read on a cache hit, which loads no schema) are the schema's defaults."""
    from aiohook import config
    from aiohook.settings import SETTINGS_SCHEMA

    props = config.schema(SETTINGS_SCHEMA)["properties"]
    flat = {key: sub["default"] for key, sub in props.items() if "default" in sub}
    flat.update({f"budget_{key}": sub["default"]
                 for key, sub in props["budget"]["properties"].items()})
    assert flat == DEFAULTS
    assert set(props) == {"enforce", "on_error", "on_budget_exceeded", "budget", "rules"}


def test_empty_file_is_all_defaults(cfg):
    write(cfg, "# nothing\n")
    assert load_settings(use_cache=False).to_dict() == DEFAULTS


def test_unreadable_settings_are_an_io_error(cfg):
    (cfg / "aiohook.yaml").mkdir()  # root reads any file: a directory is unreadable for all
    with pytest.raises(FileAccessError) as err:
        load_settings()
    assert err.value.exit_code == EXIT_IO
    assert "is a directory" in str(err.value)


def test_dangling_symlink_is_not_silently_replaced_by_the_default(cfg):
    os.symlink(cfg / "gone.yaml", cfg / "aiohook.yaml")
    with pytest.raises(FileAccessError, match="no such file"):
        load_settings()


def test_not_utf8(cfg):
    (cfg / "aiohook.yaml").write_bytes(b"enforce: \xff\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings()


def test_profile_name_is_kept(cfg):
    write(cfg, "rules: io_uring\n")
    assert load_settings(use_cache=False).rules == "io_uring"


def test_cache_hit_does_not_import_yaml(cfg, tmp_path):
    write(cfg, "enforce: refuse\nbudget: {reserve_events: 7}\n")
    code = ("import sys; from aiohook.settings import load_settings; s = load_settings(); "
            "print(s.enforce, s.budget_reserve_events, 'yaml' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=ROOT)
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.split()
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True).stdout.split()
    assert first == ["refuse", "7", "True"]  # validated once
    assert second == ["refuse", "7", "False"]  # then from the JSON cache
    assert any(n.startswith("settings-") for n in os.listdir(tmp_path / "cache"))


def test_cache_follows_content(cfg):
    write(cfg, "enforce: refuse\n")
    assert load_settings().enforce == "refuse"
    write(cfg, "enforce: off\n")
    assert load_settings().enforce == "off"
    write(cfg, "enforce: bogus\n")
    with pytest.raises(SettingsError):
        load_settings()


def test_shipped_file_parses_and_documents_every_key():
    path = os.path.join(ROOT, "aiohook", "data", "aiohook.yaml")
    with open(path, "rb") as fh:
        data = fh.read()
    assert parse_settings(data, path).to_dict() == DEFAULTS
    for key in ("enforce:", "on_error:", "on_budget_exceeded:", "reserve_events:", "check:",
                "rules:"):
        assert key.encode() in data


def test_no_usable_cache_directory_only_costs_speed(tmp_path, monkeypatch):
    """cache_dir() is None when no safe place exists: settings still load (this
    raised TypeError from os.path.join(None, ...) before). The settings and the
    rules share one compiled-cache helper, policy.loader.load_compiled."""
    import aiohook.policy.loader as loader
    import aiohook.settings as settings_module

    monkeypatch.setattr(loader, "cache_dir", lambda: None)
    cfg = tmp_path / "etc"
    cfg.mkdir()
    (cfg / "aiohook.yaml").write_text("enforce: refuse\n")
    monkeypatch.setenv("AIOHOOK_CONFIG_DIR", str(cfg))
    assert settings_module.load_settings().enforce == "refuse"


def test_an_unknown_yaml_tag_is_a_one_line_error(cfg):
    """A scalar with a tag safe_load cannot construct raised ConstructorError
    (a traceback) from yamlsource before; now it is file:line: invalid value."""
    path = write(cfg, "enforce: !!python/name:os.system\n")
    with pytest.raises(SettingsError) as err:
        load_settings(use_cache=False)
    assert err.value.one_line().startswith(f"{path}:1: invalid value: ")
