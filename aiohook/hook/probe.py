"""The hook's probe: LinuxProbe with source probes batched per mount point.

LinuxProbe.source_facts starts one thread per path. Profiling `prepare begin`
with 256 disks (benchmarks/README.md) showed thread start/join taking ~100 ms
of ~230 ms. Local stat/open/pread of a path costs microseconds; the threads
exist only so that a dead NFS/FUSE mount cannot hang the hook. A dead mount
hangs every path below it, so one thread per mount point keeps that guarantee:
paths below a live mount are never stuck behind a dead one. Results are kept
per path as they come, so when a group hangs, the paths it finished before the
hang keep their facts; the rest get kind='unknown' with the timeout, as in
LinuxProbe. Grouping uses the path as written (resolving symlinks could itself
hang); a symlink into another mount only shares its group's fate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from aiohook.facts import SourceFacts, SourceRequest
from aiohook.probe import DEFAULT_PROBE_BUDGET_S
from aiohook.probe.linux import LinuxProbe, parse_mountinfo, run_bounded

MAX_GROUP = 512  # paths per thread; bigger groups are split


def mount_point_of(path: str, mount_points: list[str]) -> str:
    """The longest mount point that is a prefix of `path` (lexically)."""
    best = "/"
    for mp in mount_points:
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
            best = mp
    return best


class HookProbe(LinuxProbe):
    def source_facts(
        self, requests: Sequence[SourceRequest], budget_s: float = DEFAULT_PROBE_BUDGET_S
    ) -> dict[str, SourceFacts]:
        unique: dict[str, SourceRequest] = {}
        for request in requests:
            unique.setdefault(request.path, request)
        mounts_text = self._mounts_text()
        mount_points = sorted({mp for mp, _ in parse_mountinfo(mounts_text)})
        groups: dict[tuple[str, int], list[SourceRequest]] = {}
        for path, request in unique.items():
            mp = mount_point_of(os.path.normpath(path), mount_points)
            n = 0
            while len(groups.setdefault((mp, n), [])) >= MAX_GROUP:
                n += 1
            groups[(mp, n)].append(request)
        found: dict[str, SourceFacts] = {}

        def job(batch: list[SourceRequest]):
            def probe_all() -> None:
                for request in batch:
                    found[request.path] = self._probe_safely(request, mounts_text)

            return probe_all

        run_bounded({key: job(batch) for key, batch in groups.items()}, budget_s)
        done = dict(found)  # a hung group may still add entries later: ignore those
        for path in unique:
            if path not in done:
                done[path] = SourceFacts(path=path, kind="unknown",
                                         error=f"probe timed out after {budget_s}s")
        return {request.path: done[request.path] for request in requests}

    def _mounts_text(self) -> str:
        try:
            with open(os.path.join(self.proc_root, "self/mountinfo"), encoding="utf-8",
                      errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""
