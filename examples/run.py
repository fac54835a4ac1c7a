"""`make run`: build real storage for the bundled example domains, then dry-run them.

Each example disk points at /tmp/aiohook-examples/disks/<kind>, a symlink to
storage StorageLab really builds (fallocated/sparse raw, qcow2 in each
preallocation mode, a loop device, files on tmpfs and xfs). Kinds that need
root show up as 'unknown' when run unprivileged: that is the honest answer.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

from aiohook.lab.storage import LAB_KINDS, StorageLab

ROOT = "/tmp/aiohook-examples"
DISKS = os.path.join(ROOT, "disks")
HERE = os.path.dirname(os.path.abspath(__file__))


def aiohook(*args: str) -> int:
    print(f"\n$ aiohook {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "aiohook", *args], cwd=HERE)


def main() -> int:
    os.makedirs(DISKS, exist_ok=True)
    for link in glob.glob(os.path.join(DISKS, "*")):
        os.unlink(link)
    with StorageLab(os.path.join(ROOT, "lab")) as lab:
        targets, unavailable = lab.make_all(LAB_KINDS)
        for target in targets:
            os.symlink(target.path, os.path.join(DISKS, target.name))
        print(f"built {len(targets)} storage kinds under {ROOT}")
        for kind, reason in unavailable.items():
            print(f"  not built: {kind}: {reason}")
        examples = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.xml")))
        codes = [aiohook("plan", *examples),
                 aiohook("rewrite", "--diff", "web-virtinst.xml"),
                 aiohook("rewrite", "--diff", "nova-mixed.xml")]
        for link in glob.glob(os.path.join(DISKS, "*")):
            os.unlink(link)
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
