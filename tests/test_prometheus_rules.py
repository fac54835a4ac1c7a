"""Prometheus: deploy/prometheus/aiohook-rules.yml and its unit tests,
deploy/prometheus/aiohook-rules.test.yml, run by Debian's promtool (`make promtool`
unpacks it from the prometheus package).

The unit tests' input series are textfiles that aiohook really produced: for each
scenario, `python3 -m aiohook.metrics` (what aiohook-textfile.service runs) reads a
fake /proc and libvirt tree (AIO limits, QEMU processes with their [aio] mappings,
libvirt's pid and status files, domain logs), the decision log written by aiohook's
real hook (installed with `aiohook install`, then called as libvirt calls it), and
`aiohook status` of that hook. Each exporter run is in a private mount namespace with
an empty /run, so the host's own libvirtd never enters the picture. The committed
test file must be exactly what this module generates from those outputs:
AIOHOOK_REGENERATE_PROMTOOL_TESTS=1 rewrites it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from paths import ROOT

CHECKOUT = str(ROOT)
RULES = os.path.join(CHECKOUT, "deploy", "prometheus", "aiohook-rules.yml")
RULE_TESTS = os.path.join(CHECKOUT, "deploy", "prometheus", "aiohook-rules.test.yml")
LABELS = 'instance="hv1.example.org:9100",job="node"'
EXP = {"instance": "hv1.example.org:9100", "job": "node"}
NO_PID = 9000000  # above any pid_max: never a real process
QEMU = "/usr/bin/qemu-system-x86_64"


def promtool() -> str:
    for path in (os.environ.get("AIOHOOK_PROMTOOL"), "/var/cache/aiohook/promtool/usr/bin/promtool",
                 shutil.which("promtool")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("promtool missing: `make promtool` unpacks it from Debian's prometheus package")


# ---------------------------------------------------------------- scenarios


def domain_xml(name: str, io: str, image: str) -> str:
    driver = {"native": "<driver name='qemu' type='raw' cache='none' io='native'/>",
              "threads": "<driver name='qemu' type='raw' io='threads'/>",
              "unset": "<driver name='qemu' type='raw'/>"}[io]
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>256</memory>"
            f"<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
            f"<emulator>{QEMU}</emulator><disk type='file' device='disk'>{driver}"
            f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices>"
            f"</domain>")


class Host:
    """A fake /proc and libvirt tree, aiohook's own directories, and its real hook."""

    def __init__(self, top: str):
        self.top = top
        self.proc = os.path.join(top, "proc")
        self.run_dir = os.path.join(top, "run-libvirt-qemu")
        self.log_dir = os.path.join(top, "log-libvirt-qemu")
        self.hooks = os.path.join(top, "hooks")
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                    "AIOHOOK_CONFIG_DIR": os.path.join(top, "etc"),
                    "AIOHOOK_LOG_DIR": os.path.join(top, "log"),
                    "AIOHOOK_STATE_DIR": os.path.join(top, "state"),
                    "AIOHOOK_CACHE_DIR": os.path.join(top, "cache")}
        self.state_file = os.path.join(top, "metrics-state.json")
        for d in (self.proc, self.run_dir, self.log_dir, self.env["AIOHOOK_CONFIG_DIR"]):
            os.makedirs(d)
        self.image = os.path.join(top, "disk.raw")
        with open(self.image, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, 1 << 20)
        self.limits(65536, 0)
        self.daemon_pid: int | None = None

    def write(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)

    def limits(self, max_nr: int, nr: int) -> None:
        self.write(os.path.join(self.proc, "sys/fs/aio-max-nr"), f"{max_nr}\n")
        self.write(os.path.join(self.proc, "sys/fs/aio-nr"), f"{nr}\n")

    def process(self, pid: int, argv: list[str], contexts: int) -> None:
        self.write(os.path.join(self.proc, str(pid), "cmdline"), "\0".join(argv) + "\0")
        maps = ["55d0c0a00000-55d0c0b00000 r-xp 00000000 fd:00 1234 " + argv[0]]
        maps += [f"7f00000{i:05x}000-7f00000{i:05x}800 rw-s 00000000 00:10 {4000 + i}"
                 "                      /[aio] (deleted)" for i in range(contexts)]
        self.write(os.path.join(self.proc, str(pid), "maps"), "\n".join(maps) + "\n")

    def domain(self, name: str, pid: int, io: str, contexts: int, log: str = "") -> None:
        """A running domain: its QEMU, libvirt's pid file and live XML, its log."""
        self.process(pid, [QEMU, "-name", f"guest={name},debug-threads=on", "-S"], contexts)
        self.write(os.path.join(self.run_dir, f"{name}.pid"), f"{pid}\n")
        self.write(os.path.join(self.run_dir, f"{name}.xml"),
                   f"<domstatus state='running' pid='{pid}'>"
                   f"{domain_xml(name, io, self.image)}</domstatus>\n")
        self.write(os.path.join(self.log_dir, f"{name}.log"),
                   "2026-12-01 05:45:55.755+0000: starting up libvirt version: 9.0.0, "
                   "qemu version: 7.2.0, hostname: hv1\n"
                   f"LC_ALL=C {QEMU} -name guest={name},debug-threads=on -S\n" + log)

    def aiohook(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "aiohook", *args], capture_output=True,
                              text=True, env=self.env, cwd=self.top, check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def settings(self, text: str) -> None:
        self.write(os.path.join(self.env["AIOHOOK_CONFIG_DIR"], "aiohook.yaml"), text)

    def hook_call(self, domain: str, io: str) -> int:
        """The installed hook, called as libvirt calls it at `prepare begin`."""
        hook = os.path.join(self.hooks, "qemu.d", "50-aiohook")
        done = subprocess.run([hook, domain, "prepare", "begin", "-"],
                              input=domain_xml(domain, io, self.image).encode(),
                              capture_output=True, env={"PATH": self.env["PATH"]},
                              check=False, timeout=120)
        return done.returncode

    def textfile(self) -> str:
        """`python3 -m aiohook.metrics`, in its own mount namespace with an empty /run
        (plus /run/libvirtd.pid naming self.daemon_pid, when set)."""
        pidfile = (f"echo {self.daemon_pid} > /run/libvirtd.pid && "
                   if self.daemon_pid else "")
        script = (f"mount -t tmpfs -o mode=755 aiohook-test-run /run && {pidfile}"
                  f"exec {sys.executable} -m aiohook.metrics --stdout --state-file "
                  f"{self.state_file} --hooks-dir {self.hooks} --proc-root {self.proc} "
                  f"--libvirt-run-dir {self.run_dir} --libvirt-log-dir {self.log_dir}")
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, env=self.env,
                              cwd=self.top, check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


FALLBACK_LINE = (f"2026-12-01T05:47:12.123456Z {os.path.basename(QEMU)}: Unable to use Linux AIO, "
                 "falling back to thread pool\n")


def scenarios(top: str) -> dict[str, str]:
    """name -> the textfile aiohook produced, in the order the host lived them."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("not root (or no unshare): the exporter runs need a private mount namespace")
    h = Host(top)
    out = {}
    h.settings("enforce: refuse\non_error: allow\n")
    h.aiohook("install", "--hooks-dir", h.hooks, "--config-dir", h.env["AIOHOOK_CONFIG_DIR"])
    # two running one-disk native domains holding their context, a quiet host
    h.domain("web-1", NO_PID + 1, "native", 1)
    h.domain("db-1", NO_PID + 2, "native", 1)
    h.limits(65536, 2048)
    out["quiet"] = h.textfile()
    # another AIO user takes 59 more contexts: 61 of 64 are gone
    h.process(NO_PID + 3, ["/usr/sbin/mariadbd", "--user=mysql"], 59)
    h.limits(65536, 62464)
    out["full"] = h.textfile()
    h.process(NO_PID + 3, ["/usr/sbin/mariadbd", "--user=mysql"], 0)
    h.limits(65536, 2048)
    # web-1's QEMU logged a fallback to the thread pool
    h.domain("web-1", NO_PID + 1, "native", 0, log=FALLBACK_LINE)
    out["fallback"] = h.textfile()
    h.domain("web-1", NO_PID + 1, "native", 1)
    # the hook refuses a start (enforce: refuse; the disk has no io set)
    assert h.hook_call("app-1", "unset") == 1
    out["refused"] = h.textfile()
    # the hook fails (its rules file is gone) and, per on_error: allow, lets it start
    h.settings("enforce: refuse\non_error: allow\nrules: /nonexistent/rules.yaml\n")
    assert h.hook_call("app-2", "unset") == 0
    h.settings("enforce: refuse\non_error: allow\n")
    out["error"] = h.textfile()
    # the hook is gone while native disks run
    h.aiohook("uninstall", "--hooks-dir", h.hooks)
    out["unhooked"] = h.textfile()
    # reinstalled, but the running libvirtd started before: it won't run it
    h.aiohook("install", "--hooks-dir", h.hooks, "--config-dir", h.env["AIOHOOK_CONFIG_DIR"])
    with subprocess.Popen(["sleep", "60"]) as daemon:
        try:
            hook = os.path.join(h.hooks, "qemu.d", "50-aiohook")
            later = time.time() + 5  # written well after the daemon started
            os.utime(hook, (later, later))
            h.daemon_pid = daemon.pid
            out["restart-pending"] = h.textfile()
        finally:
            daemon.kill()
    h.daemon_pid = None
    # no hook, but no native disk either: nothing to guard
    h.aiohook("uninstall", "--hooks-dir", h.hooks)
    for name in ("web-1", "db-1"):
        h.domain(name, NO_PID + (1 if name == "web-1" else 2), "threads", 0)
    out["unhooked-threads-only"] = h.textfile()
    return out


# ---------------------------------------------------------------- textfile -> promtool


def parse(text: str) -> dict[str, str]:
    """series (name{labels} with the scrape's labels added) -> value, in file order."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        name, labels, value = match.groups()
        out[f"{name}{{{labels + ',' if labels else ''}{LABELS}}}"] = value
    return out


def input_series(snapshots: dict[str, str], timeline: list[tuple[str, int]]) -> list[dict]:
    """Every series of the timeline's textfiles, one sample a minute: each snapshot's
    value for as many minutes as the timeline says ('_' where a snapshot lacks it)."""
    parsed = {name: parse(snapshots[name]) for name, _ in timeline}
    names: list[str] = []
    for name, _ in timeline:
        names += [s for s in parsed[name] if s not in names]
    out = []
    for series in names:
        values = []
        for name, minutes in timeline:
            value = parsed[name].get(series, "_")
            values.append(value if minutes == 1 else f"{value}x{minutes - 1}")
        out.append({"series": series, "values": " ".join(values)})
    return out


def percentage(value: float) -> str:
    """Prometheus' humanizePercentage."""
    return f"{value * 100:.4g}%"


def rule_tests(s: dict[str, str]) -> dict:
    budget = parse(s["full"])
    used = (int(budget[f"aiohook_aio_nr{{{LABELS}}}"])
            + int(budget[f"aiohook_aio_reserve_events{{{LABELS}}}"])
            + int(budget[f"aiohook_aio_reserved_events{{{LABELS}}}"])) \
        / int(budget[f"aiohook_aio_max_nr{{{LABELS}}}"])
    with open(RULES) as fh:
        rules = {r["alert"]: r for g in yaml.safe_load(fh)["groups"] for r in g["rules"]}

    def alert(name: str, **labels) -> dict:
        """An expected alert: its labels and annotations, rendered as Prometheus would."""
        rule = rules[name]
        every = {**EXP, **rule.get("labels", {}), **labels}
        annotations = {}
        for key, text in rule["annotations"].items():
            for label, value in every.items():
                text = text.replace(f"{{{{ $labels.{label} }}}}", value)
            text = text.replace("{{ $value | humanizePercentage }}", percentage(used))
            annotations[key] = text
        return {"exp_labels": every, "exp_annotations": annotations}

    def case(name, timeline, checks):
        return {"name": name, "interval": "1m", "input_series": input_series(s, timeline),
                "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e}
                                    for t, a, e in checks]}

    budget_name = "AiohookAioBudgetNearlyExhausted"
    return {
        "rule_files": ["aiohook-rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            case("AIO budget: fires after 10 minutes past 90%", [("quiet", 15), ("full", 30)], [
                ("10m", budget_name, []),
                ("20m", budget_name, []),  # 5 minutes in: pending
                ("30m", budget_name, [alert(budget_name)]),
            ]),
            case("AIO budget: a quiet host never fires", [("quiet", 60)], [
                ("50m", budget_name, []),
            ]),
            case("a domain that fell back to the thread pool", [("quiet", 5), ("fallback", 10)], [
                ("3m", "AiohookDomainAioFallback", []),
                ("8m", "AiohookDomainAioFallback", [alert("AiohookDomainAioFallback",
                                                          domain="web-1")]),
            ]),
            case("hook refusals and errors in the last hour",
                 [("quiet", 10), ("refused", 10), ("error", 100)], [
                     ("5m", "AiohookHookRefusals", []),
                     ("5m", "AiohookHookErrors", []),
                     ("15m", "AiohookHookRefusals", [alert("AiohookHookRefusals",
                                                           outcome="refused")]),
                     ("15m", "AiohookHookErrors", []),
                     ("25m", "AiohookHookErrors", [alert("AiohookHookErrors",
                                                         outcome="error-allowed")]),
                     ("65m", "AiohookHookRefusals", [alert("AiohookHookRefusals",
                                                           outcome="refused")]),
                     ("75m", "AiohookHookRefusals", []),  # the refusal is over an hour old
                     ("75m", "AiohookHookErrors", [alert("AiohookHookErrors",
                                                         outcome="error-allowed")]),
                     ("85m", "AiohookHookErrors", []),
                 ]),
            case("the hook is gone while native disks run", [("quiet", 5), ("unhooked", 20)], [
                ("10m", "AiohookHookNotInstalled", []),  # pending for 10 minutes
                ("20m", "AiohookHookNotInstalled", [alert("AiohookHookNotInstalled")]),
            ]),
            case("the hook is there but libvirtd started before it",
                 [("quiet", 5), ("restart-pending", 20)], [
                     ("20m", "AiohookHookNotInstalled", [alert("AiohookHookNotInstalled")]),
                 ]),
            case("no hook and no native disk: nothing to guard",
                 [("unhooked-threads-only", 30)], [
                     ("25m", "AiohookHookNotInstalled", []),
                 ]),
        ],
    }


HEADER = """\
# promtool unit tests for aiohook-rules.yml:  promtool test rules aiohook-rules.test.yml
# GENERATED by tests/test_prometheus_rules.py from textfiles that aiohook produced
# (`python3 -m aiohook.metrics` on a fake /proc and libvirt tree, with aiohook's real
# hook deciding): every input value below is one aiohook wrote. Don't edit by hand:
# AIOHOOK_REGENERATE_PROMTOOL_TESTS=1 pytest tests/test_prometheus_rules.py
"""


def render_tests(snapshots: dict[str, str]) -> str:
    return HEADER + yaml.safe_dump(rule_tests(snapshots), sort_keys=False, width=100,
                                   default_flow_style=False)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    return scenarios(str(tmp_path_factory.mktemp("prom")))


# ---------------------------------------------------------------- the tests


def test_the_committed_unit_tests_are_what_aiohook_produced(snapshots):
    text = render_tests(snapshots)
    if os.environ.get("AIOHOOK_REGENERATE_PROMTOOL_TESTS"):
        with open(RULE_TESTS, "w") as fh:
            fh.write(text)
    with open(RULE_TESTS) as fh:
        assert fh.read() == text, ("deploy/prometheus/aiohook-rules.test.yml is not what aiohook "
                                   "produces now: AIOHOOK_REGENERATE_PROMTOOL_TESTS=1 rewrites it")


def test_promtool_check_rules():
    done = subprocess.run([promtool(), "check", "rules", RULES], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "SUCCESS: 5 rules found" in done.stdout, \
        done.stdout + done.stderr


def test_promtool_test_rules():
    done = subprocess.run([promtool(), "test", "rules", os.path.basename(RULE_TESTS)],
                          capture_output=True, text=True, check=False,
                          cwd=os.path.dirname(RULE_TESTS))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_has_a_test_that_fires_it():
    with open(RULES) as fh:
        alerts = {r["alert"] for g in yaml.safe_load(fh)["groups"] for r in g["rules"]}
    with open(RULE_TESTS) as fh:
        tests = yaml.safe_load(fh)["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert alerts == fired == quiet


def test_the_budget_alert_has_a_for():
    with open(RULES) as fh:
        rules = {r["alert"]: r for g in yaml.safe_load(fh)["groups"] for r in g["rules"]}
    assert rules["AiohookAioBudgetNearlyExhausted"]["for"] == "10m"


def test_textfiles_pass_promtool_check_metrics(snapshots):
    for name, text in snapshots.items():
        done = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0 and done.stdout + done.stderr == "", (name, done.stderr)


def test_metric_names_and_labels_follow_prometheus_conventions(snapshots):
    from aiohook.budget.fallback import STATES
    from aiohook.metrics import OUTCOMES

    bounded = {"state": set(STATES), "outcome": set(OUTCOMES) | {"other"}}
    for text in snapshots.values():
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        for name, kind in types.items():
            assert name.startswith("aiohook_")
            assert (kind == "counter") == name.endswith("_total"), name
            assert kind in ("counter", "gauge")
            # counts of AIO events or contexts, 0/1 flags: no units to convert to base units
            assert not re.search(r"_(milli|micro|kilo|mega)|_bytes$|_seconds$", name), name
        for labels in re.findall(r"^\w+\{(.*)\} ", text, re.MULTILINE):
            for key, value in re.findall(r'(\w+)="([^"]*)"', labels):
                # the domain name is the only unbounded label
                assert key == "domain" or value in bounded[key], (key, value)


def test_the_scenarios_show_what_they_claim(snapshots):
    s = {name: parse(text) for name, text in snapshots.items()}

    def v(name, series):
        return s[name][series.replace("}", "," + LABELS + "}") if "{" in series
                       else f"{series}{{{LABELS}}}"]

    assert v("quiet", "aiohook_hook_installed") == "1"
    assert v("quiet", "aiohook_hook_restart_pending") == "0"
    assert v("quiet", 'aiohook_domain_aio_state{domain="web-1",state="native"}') == "1"
    assert v("full", "aiohook_aio_nr") == "62464"
    assert v("fallback", 'aiohook_domain_aio_silent_fallback{domain="web-1"}') == "1"
    assert v("fallback", 'aiohook_domain_aio_state{domain="web-1",state="fallback"}') == "1"
    assert v("refused", 'aiohook_hook_decisions_total{outcome="refused"}') == "1"
    assert v("error", 'aiohook_hook_decisions_total{outcome="error-allowed"}') == "1"
    assert v("error", 'aiohook_hook_decisions_total{outcome="refused"}') == "1"
    assert v("unhooked", "aiohook_hook_installed") == "0"
    assert v("restart-pending", "aiohook_hook_installed") == "1"
    assert v("restart-pending", "aiohook_hook_restart_pending") == "1"
    assert v("unhooked-threads-only", 'aiohook_domain_aio_expected_contexts{domain="web-1"}') \
        == "0"


def test_the_textfile_starts_with_exactly_aiohook_budgets_output(tmp_path):
    """On this host: `aiohook budget --format prometheus`, then the hook's metrics."""
    env = {**os.environ, "AIOHOOK_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(3):  # domains of other tests may start or stop in between
        budget = subprocess.run([sys.executable, "-m", "aiohook", "budget", "--format",
                                 "prometheus"], capture_output=True, text=True, env=env,
                                check=True).stdout
        full = subprocess.run([sys.executable, "-m", "aiohook.metrics", "--stdout",
                               "--state-file", ""], capture_output=True, text=True, env=env,
                              check=True).stdout
        if full.startswith(budget):
            break
    assert full.startswith(budget)
    assert full[len(budget):].startswith("# HELP aiohook_hook_installed ")


def test_the_decision_counter_survives_rotation(tmp_path):
    """Rotating the log, and dropping its oldest file, never makes a counter go down."""
    from aiohook.hook import log
    from aiohook.metrics import count_decisions

    logs = tmp_path / "log"
    state: dict = {}
    seen = []
    old = os.environ.get("AIOHOOK_LOG_DIR")
    os.environ["AIOHOOK_LOG_DIR"] = str(logs)
    try:
        for i in range(40):
            log.record({"domain": f"d{i}", "outcome": "refused" if i % 4 else "warned"},
                       max_bytes=300, keep=2)
            state = count_decisions(str(logs), json.loads(json.dumps(state)))
            seen.append(dict(state["counts"]))
    finally:
        if old is None:
            os.environ.pop("AIOHOOK_LOG_DIR")
        else:
            os.environ["AIOHOOK_LOG_DIR"] = old
    for before, after in zip(seen, seen[1:]):
        assert all(after.get(k, 0) >= n for k, n in before.items())
    assert seen[-1] == {"refused": 30, "warned": 10}
    assert len(os.listdir(logs)) == 3  # the oldest files were dropped on the way
