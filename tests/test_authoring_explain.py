"""`aiohook explain`: every rule in order, why not, vetoes, decision."""

from __future__ import annotations

import json
import os

from paths import ROOT

from aiohook.cli import main

SHARED = os.path.join(ROOT, "tests", "rules", "shared")
CORPUS = os.path.join(ROOT, "tests", "fixtures", "domains")
EDGES = os.path.join(SHARED, "authoring-edges.xml")
FACTS = os.path.join(SHARED, "facts.yaml")


def explain(capsys, *argv):
    code = main(["explain", "--facts", FACTS, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_walks_every_rule_with_failing_condition_and_fact_value(capsys):
    code, out, _ = explain(capsys, "--disk", "vdc", EDGES)
    assert code == 0
    lines = out.splitlines()
    assert "disk vdc: class block" in out
    assert any(
        "1. no-io-effect" in line
        and "no match: class is block, wanted one of network, other" in line
        for line in lines
    )
    assert any(
        "4. explicit-io" in line
        and "no match: io is unset, wanted one of native, threads, io_uring" in line
        for line in lines
    )
    assert any("6. host-page-cache" in line and "cache is unset" in line for line in lines)
    assert any("8. block-device" in line and "MATCHED -> decides" in line for line in lines)
    assert any(
        "9. preallocated-image" in line and "not reached (would not match" in line for line in lines
    )
    assert any("10. default" in line and "not reached (would match" in line for line in lines)
    assert "decision: io unset -> native, cache unset -> none by block-device (changed)" in out


def test_shows_vetoes_and_safety_checks(capsys):
    # explicit native on a sparse image on cifs: two checks veto it, threads is the fallback
    path = os.path.join(CORPUS, "proxmox-cifs-krbd.xml")
    code, out, _ = explain(capsys, "--disk", "vdd", path)
    assert code == 0
    assert "VETO native-needs-o-direct: io=native cache=none" in out
    assert "VETO native-not-on-sparse: io=native" in out
    assert "safety checks on the outcome io=threads cache=none:" in out
    assert "ok  native-not-on-sparse" in out
    assert "decision: io native -> threads, cache none by explicit-io (changed)" in out


def test_no_effect_disks_show_which_checks_apply(capsys):
    code, out, _ = explain(capsys, "--disk", "sda", EDGES)
    assert code == 0
    assert "MATCHED -> decides (class is network)" in out
    assert "n/a  native-needs-o-direct" in out
    assert "ok  no-io-without-effect" in out


def test_metadata_skip_consults_no_rule(capsys):
    code, out, _ = explain(capsys, os.path.join(CORPUS, "handwritten-skip-override.xml"))
    assert code == 0
    assert "no rule is consulted" in out
    assert "not consulted" in out and "by metadata:skip" in out


def test_all_disks_json(capsys):
    code, out, _ = explain(capsys, "--format", "json", "--rules", "io_uring", EDGES)
    assert code == 0
    data = json.loads(out)
    assert data["domain"] == "authoring-edges"
    assert len(data["disks"]) == 15
    vdi = next(d for d in data["disks"] if d["target"] == "vdi")
    assert vdi["decision"]["rule"] == "krbd-cached"
    statuses = [s["status"] for s in vdi["rules"]]
    assert statuses.index("matched, decides") == [s["rule"] for s in vdi["rules"]].index(
        "krbd-cached"
    )
    assert all(s == "no match" for s in statuses[: statuses.index("matched, decides")])


def test_unknown_disk_is_a_usage_error(capsys):
    code, _, err = explain(capsys, "--disk", "vdz", EDGES)
    assert code == 2
    assert "has no disk 'vdz'" in err


def test_shows_the_replacement_of_a_refused_explicit_io(capsys):
    # issue 15: explicit native on a sparse image gets what the rules give it without an io
    path = os.path.join(SHARED, "migrated-sparse-native.xml")
    code = main(["explain", "--facts", os.path.join(SHARED, "facts-migrated.yaml"),
                 "--disk", "vda", path])
    out = capsys.readouterr().out
    assert code == 0
    assert "VETO native-not-on-sparse: io=native cache=none" in out
    assert ("REPLACED io=native by io=io_uring: asked rule 'sparse-image', which decides this "
            "disk when the XML sets no io") in out
    assert "decision: io native -> io_uring, cache none by explicit-io (changed)" in out
    assert "| io_uring instead: what rule 'sparse-image' gives this disk when the XML sets no io" in out


def test_json_names_the_replacing_rule(capsys):
    path = os.path.join(SHARED, "migrated-sparse-native-no-io-uring.xml")
    code = main(["explain", "--format", "json", "--facts",
                 os.path.join(SHARED, "facts-migrated-no-io-uring.yaml"), path])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    by_target = {d["target"]: d["decision"] for d in data["disks"]}
    assert by_target["vda"]["replaced_by"] == "sparse-image"
    assert by_target["vda"]["io"] == {"before": "native", "after": "threads"}
    assert by_target["vdf"]["replaced_by"] == "block-device"
    assert by_target["vdf"]["io"] == {"before": "io_uring", "after": "native"}
