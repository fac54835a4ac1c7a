"""Issue 11: what the hook uses instead of heavy standard modules does what they do.

- aiohook.jsonlite (the C accelerator _json alone) reads and writes exactly what
  json reads and writes, for the arguments the hook passes;
- aiohook.record gives plain classes what @dataclass gave them (repr, eq, hash,
  frozen, replace, asdict);
- aiohook.cachekey is hashlib's sha256;
- aiohook.domxml.textpatch scans a start tag as its former regular expressions
  matched it;
- aiohook.probe.bounded's _thread workers behave as the threading threads did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import time

import pytest

from aiohook import jsonlite
from aiohook.cachekey import sha256_hex
from aiohook.domxml.textpatch import PatchUnavailable, parse_start_tag
from aiohook.facts import DiskFacts, HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe.bounded import abandoned_threads, run_bounded
from aiohook.record import FrozenInstanceError

STRINGS = ["", "a", "\u00e9", "\n", "\x00", "\u2028", "\ud800", "\U0001f642", '"', "\\", "kkk"]


def _value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([None, True, False, 0, -1, 2 ** 70, 1.5, -0.0, 1e300, float("nan"),
                           float("inf"), -float("inf"), rng.choice(STRINGS), 3.141592653589793])
    if r < 0.6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if r < 0.7:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {rng.choice(STRINGS) + str(rng.randrange(5)): _value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


DUMPS_ARGS = [dict(indent=1, sort_keys=True), dict(indent=1), dict(indent=2, sort_keys=True),
              dict(indent=0), dict(separators=(",", ":"), default=str), dict(),
              dict(sort_keys=True)]


def test_jsonlite_writes_what_json_writes():
    rng = random.Random(11)
    for _ in range(5000):
        value = _value(rng)
        for kwargs in DUMPS_ARGS:
            assert jsonlite.dumps(value, **kwargs) == json.dumps(value, **kwargs), (value, kwargs)
    for odd in ({1: 2}, {None: 1, "a": [1]}, [{1, 2}], {"a": {1.5: 2}}, object()):
        for kwargs in DUMPS_ARGS:
            try:
                expected = json.dumps(odd, **kwargs)
            except (TypeError, ValueError) as exc:
                expected = type(exc)
            try:
                got = jsonlite.dumps(odd, **kwargs)
            except (TypeError, ValueError) as exc:
                got = type(exc)
            assert got == expected, (odd, kwargs)


def test_jsonlite_reads_what_json_reads_and_fails_where_it_fails():
    rng = random.Random(12)
    for _ in range(3000):
        text = json.dumps(_value(rng))
        for form in (text, " \n" + text + "\t", text.encode(), (" " + text).encode()):
            assert json.dumps(jsonlite.loads(form)) == json.dumps(json.loads(form))
    for bad in ["", " ", "{", "[1,]", "1 2", '{"a":1}x', "\ufeff{}", b"\xef\xbb\xbf{}",
                b"\xff\xfe{\x00}\x00", "nan", "NaN", "-Infinity", '"\\ud800"', b'{"a":"\xc3"}']:
        try:
            expected = repr(json.loads(bad))
        except ValueError as exc:
            expected = f"{type(exc).__name__}: {exc}"
        try:
            got = repr(jsonlite.loads(bad))
        except ValueError as exc:
            got = f"{type(exc).__name__}: {exc}"
        assert got == expected, bad


@dataclasses.dataclass
class _HostAsDataclass:  # HostFacts as it was declared before issue 11
    io_uring: bool | None = None
    qemu_version: str | None = None
    qemu_io_uring: bool | None = None
    libvirt_version: str | None = None
    aio_max_nr: int | None = None
    aio_nr: int | None = None


@dataclasses.dataclass(frozen=True)
class _VolumeAsDataclass:
    kind: str
    path: str | None = None
    protocol: str | None = None
    reason: str | None = None


def test_records_keep_what_dataclass_gave():
    host = HostFacts(io_uring=True, qemu_version="7.2.0", aio_nr=3)
    old = _HostAsDataclass(io_uring=True, qemu_version="7.2.0", aio_nr=3)
    assert repr(host) == repr(old).replace("_HostAsDataclass", "HostFacts")
    assert host == HostFacts(True, "7.2.0", None, None, None, 3)
    assert host != HostFacts(io_uring=False) and host != old
    assert HostFacts.__hash__ is None  # mutable and eq: unhashable, as @dataclass made it
    assert host._replace(aio_nr=4).aio_nr == 4 and host.aio_nr == 3
    assert host._asdict() == dataclasses.asdict(old)
    with pytest.raises(TypeError):
        host._replace(nope=1)

    vol = VolumeTarget("file", path="/x")
    frozen = _VolumeAsDataclass("file", path="/x")
    assert repr(vol) == repr(frozen).replace("_VolumeAsDataclass", "VolumeTarget")
    assert hash(vol) == hash(frozen) and {vol: 1}[VolumeTarget("file", "/x")] == 1
    for action in (lambda: setattr(vol, "path", "/y"), lambda: delattr(vol, "path")):
        with pytest.raises(FrozenInstanceError):
            action()
    assert isinstance(FrozenInstanceError(), AttributeError)
    assert vol._asdict() == dataclasses.asdict(frozen)

    disk = DiskFacts("d", "vda", "file", "disk", host=SourceFacts("/x", "file"))
    assert disk.extra == {} and disk.extra is not DiskFacts("d", "vda", "file", "disk").extra
    assert disk._asdict()["host"] == {"path": "/x", "kind": "file", **{
        k: None for k in SourceFacts.FIELDS[2:]}}
    assert SourceRequest("/x") == SourceRequest("/x", None)
    assert list(vars(SourceFacts("/x", "file"))) == list(SourceFacts.FIELDS)  # to_dict's order


def test_cachekey_is_hashlibs_sha256():
    for data in (b"", b"x", os.urandom(1000), b"\0" * 70000):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


_ATTR = re.compile(rb"""\s+([^\s=/>]+)\s*=\s*("[^"]*"|'[^']*')""")
_TAG_END = re.compile(rb"\s*(/?)>")
_NAME = re.compile(rb"[^\s/>]+")


def _regex_parse_start_tag(data: bytes, offset: int):
    """parse_start_tag as it was written with regular expressions."""
    if data[offset:offset + 1] != b"<":
        raise PatchUnavailable("no tag")
    name = _NAME.match(data, offset + 1)
    pos = name.end() if name else offset + 1
    attrs = []
    while True:
        m = _ATTR.match(data, pos)
        if not m:
            break
        raw = m.group(2)
        attrs.append((m.group(1), raw[:1], raw[1:-1]))
        pos = m.end()
    end = _TAG_END.match(data, pos)
    if not end:
        raise PatchUnavailable("unparsable")
    return end.end(), attrs, end.group(1) + b">"


def test_start_tag_scanner_matches_the_regular_expressions():
    rng = random.Random(13)
    pieces = [b" ", b"\t", b"\n", b"\r", b"\f", b"\v", b"=", b"/", b">", b"<", b"'", b'"', b"a",
              b"x:y", b"&amp;", b"\xc3\xa9", b"\x00"]
    attrs = [b"'qemu'", b'"raw"', b"'a>b'", b"'", b'"x"y"', b"''"]
    for i in range(60000):
        if i % 2:
            data = b"<" + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        else:
            data = b"<driver" + b"".join(
                rng.choice([b" ", b"\n  ", b"\t", b""]) + rng.choice([b"name", b"type", b"x:io"])
                + rng.choice([b"=", b" = ", b"\n=", b""]) + rng.choice(attrs)
                for _ in range(rng.randint(0, 4))) + rng.choice([b"/>", b">", b" />", b" /", b""])
        offset = 0
        if rng.random() < 0.2:
            data, offset = b"xx" + data, 2
        results = []
        for parse in (_regex_parse_start_tag, parse_start_tag):
            try:
                results.append(parse(data, offset))
            except PatchUnavailable:
                results.append("unavailable")
        assert results[0] == results[1], data


def test_bounded_workers_report_finish_and_join_like_threads(tmp_path):
    done, late = run_bounded({"a": lambda: 1, "b": lambda: 2}, 2.0)
    assert (done, late) == ({"a": 1, "b": 2}, [])
    assert run_bounded({}, 1.0) == ({}, [])
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    started = time.monotonic()
    done, late = run_bounded({"ok": lambda: "x", "stuck": lambda: os.open(fifo, os.O_RDONLY)}, 0.3)
    assert time.monotonic() - started < 2.0
    assert (done, late) == ({"ok": "x"}, ["stuck"])
    stuck = abandoned_threads()
    assert stuck and all(t.is_alive() for t in stuck)
    os.close(os.open(fifo, os.O_WRONLY))  # a writer: the stuck open returns
    for worker in stuck:
        worker.join(5)
    assert abandoned_threads() == []
