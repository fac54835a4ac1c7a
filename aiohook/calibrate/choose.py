"""What the rules choose for a calibrated target: the real engine, on a one-disk domain.

The disk carries cache='none', the cache mode every calibration run uses, so
the choice and the measurement are about the same configuration.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr


def _one_disk_domain(path: str, disk_type: str, fmt: str) -> bytes:
    attr = "dev" if disk_type == "block" else "file"
    return f"""<domain type='kvm'>
  <name>aiohook-calibrate</name>
  <devices>
    <disk type={quoteattr(disk_type)} device='disk'>
      <driver name='qemu' type={quoteattr(fmt)} cache='none'/>
      <source {attr}={quoteattr(path)}/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
""".encode()


def rules_chooser(rules: str | None = None, probe=None):
    """choose(target) -> the io mode the ruleset gives that target on this host."""
    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe.linux import LinuxProbe

    ruleset = load_ruleset(rules)
    probe = probe or LinuxProbe()

    def choose(target) -> str:
        xml = _one_disk_domain(target.path, target.disk_type, target.format)
        decision = plan_xml(xml, target.path, ruleset, probe).disks[0].decision
        return decision.io_after or "threads"  # no io attribute: QEMU's default

    return choose


def saved_class_chooser(rules: str | None, host: dict):
    """For a saved calibration: choose(entry) -> the rules' mode for one saved class
    (an item of result["classes"]), on the facts the saved result recorded."""

    def choose(entry: dict) -> str:
        return rules_chooser(rules, _saved_facts(entry, host))(_SavedTarget(entry))

    return choose


class _SavedTarget:
    """What rules_chooser reads of a target, from a saved class entry."""

    def __init__(self, entry: dict):
        self.path = entry["path"]
        self.disk_type = entry["disk_type"]
        self.format = entry["format"]


def _saved_facts(entry: dict, host: dict):
    """A recorded probe of one saved class: its storage class, on the saved host. io_uring
    is there if the host allowed it and the class has an io_uring score (qemu-img ran it)."""
    from aiohook.facts import HostFacts, SourceFacts
    from aiohook.probe.recorded import RecordedProbe

    cls = entry["storage_class"]
    source = SourceFacts(path=entry["path"], kind="block" if cls == "block" else "file",
                         allocated=cls != "file-sparse", o_direct=True)
    host_facts = HostFacts(io_uring=(host.get("io_uring_host") or {}).get("allowed"),
                           qemu_io_uring=(entry.get("scores") or {}).get("io_uring") is not None)
    return RecordedProbe.from_facts(host_facts, {source.path: source},
                                    missing="not in the saved calibration")


def rescore(result: dict, choose_by_class) -> dict:
    """Re-judge a saved calibration with other rules, without measuring again.

    choose_by_class(entry) -> mode; entry is one item of result["classes"].
    """
    from aiohook.calibrate.scoring import regret

    for entry in result["classes"]:
        chosen = choose_by_class(entry)
        scores = entry.get("scores") or {}
        best = entry.get("best")
        entry["chosen"] = chosen
        reg = regret(scores.get(chosen), scores.get(best)) if chosen and best else None
        entry["regret"] = None if reg is None else round(reg, 4)
    return result
