"""Issue 11: the hook's pyexpat document (aiohook.domxml.lite) is lxml's document.

parse_domain_lite is a fast path, never a second opinion: for every input it
gives the error parse_domain gives, or a document that reads, plans, edits and
serializes exactly as parse_domain's does. Checked here on the fixture corpus
and on thousands of mutated domains (tests/test_hostile_input.py's mutator plus
mutations aimed at what expat and libxml2 treat differently: namespaces,
line ends, text around comments and CDATA, XML declarations, nesting depth).
benchmarks/corpus_check.py compares the two on every plan and rewrite too
(tests/test_corpus.py).
"""

from __future__ import annotations

import glob
import os
import random

import pytest
from paths import ROOT
from test_hostile_input import Mutator

from aiohook.domxml.document import parse_domain
from aiohook.domxml.lite import FAST_MAX_BYTES, LiteDocument, parse_domain_lite
from aiohook.errors import DomainXMLError

FIXTURES = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "domains", "*.xml"))
                  + glob.glob(os.path.join(ROOT, "examples", "*.xml")))
SEED = int(os.environ.get("AIOHOOK_LITE_SEED", "11"))
MUTATIONS = int(os.environ.get("AIOHOOK_LITE_MUTATIONS", "6000"))


def reading(doc) -> list:
    """Everything the planner, the overrides and the budget read from a document."""
    out = [doc.name, doc.emulator, doc.iothreads, doc.iothread_ids, doc.domain_type]
    for d in doc.disks():
        out.append((d.type, d.device, d.target, d.bus, d.format, d.cache, d.io, d.iothread,
                    d.queue_iothreads, d.readonly, d.shareable, d.source_path, d.protocol,
                    d.network_name, d.volume, d.has_source, d.sourceline,
                    None if d.driver is None else dict(d.driver.attrib),
                    d.element.find("address") is not None,
                    d.element.find("source/encryption") is not None))
    try:
        o = doc.overrides()
        out.append((o.skip, o.pins, o.line))
    except DomainXMLError as exc:
        out.append(("overrides error", exc.one_line()))
    out.append([(c.get("index"), c.get("model"), c.find("driver") is not None)
                for c in doc.controllers("scsi")])
    vcpu = doc.root.find("vcpu")
    out.append(None if vcpu is None else (vcpu.text, vcpu.get("current")))
    for el in doc.root.iter():
        if isinstance(el.tag, str):
            out.append((el.tag, dict(el.attrib), el.text, el.sourceline))
    return out


def same(data: bytes, rng: random.Random | None = None) -> str:
    """'lite', 'lxml' (the fast path handed it to lxml) or 'error'; asserts sameness."""
    try:
        a = parse_domain(data, "<x>")
    except DomainXMLError as exc:
        a = exc
    try:
        b = parse_domain_lite(data, "<x>")
    except DomainXMLError as exc:
        b = exc
    if isinstance(a, DomainXMLError):
        assert isinstance(b, DomainXMLError) and b.one_line() == a.one_line(), (data[:300], a, b)
        return "error"
    assert not isinstance(b, DomainXMLError), (data[:500], b)
    assert reading(b) == reading(a), data[:2000]
    edits: dict = {}
    if rng is not None:  # the same edits on both: the same bytes
        disks = len(a.disks())
        for _ in range(rng.randrange(0, 6)):
            if not disks:
                break
            name = rng.choice(["io", "cache"])
            value = rng.choice([None, "native", "threads", "none", "a'b\"c&<>"])
            edits.setdefault(rng.randrange(disks), {})[name] = value
    assert b.serialize(edits) == a.serialize(edits), data[:2000]
    assert reading(b) == reading(a), data[:2000]  # serializing edits neither document
    return "lite" if isinstance(b, LiteDocument) else "lxml"


def test_fixtures_take_the_fast_path_and_read_as_lxml_reads_them():
    kinds = [same(open(path, "rb").read(), random.Random(i)) for i, path in enumerate(FIXTURES)]
    assert kinds.count("lite") == len(FIXTURES), kinds


URIS = ["http://a.b/c", "http://a b", "urn:x", "urn:", "x", "", "http://h:80/p", "http://h:x/p",
        "https://h/p?q", "http://h/%41", "http://h/\u00e9", "http://[::1]/", "file:///x",
        "urn:a:b/c", "http://www.w3.org/XML/1998/namespace"]


class EdgeMutator(Mutator):
    """What expat and libxml2 could disagree on, on top of the hostile mutator."""

    def ns(self, data):
        prefix = self.rng.choice(["x", "y", "xml", "xmlns", "", ":"])
        uri = self.rng.choice(URIS)
        decl = (f" xmlns:{prefix}='{uri}'" if prefix else f" xmlns='{uri}'").encode()
        tag = self.rng.choice([b"<disk ", b"<driver ", b"<devices>", b"<name>", b"<domain "])
        if tag.endswith(b">"):
            return data.replace(tag, tag[:-1] + decl + b">", 1)
        return data.replace(tag, tag[:-1] + decl + b" ", self.rng.choice([1, 3]))

    def prefixed(self, data):
        attr = self.rng.choice([b" x:io='native'", b" xml:lang='en'", b" io='native' io='x'",
                                b" cache='&#x6e;one'", b" io=\"th&amp;r\"", b" io='a\tb'",
                                b" io='a\nb'", b" io='a&#10;b'", b" io='&#1;'"])
        return data.replace(b"<driver ", b"<driver" + attr + b" ", self.rng.choice([1, 2]))

    def line_ends(self, data):
        return data.replace(b"\n", self.rng.choice([b"\r\n", b"\r", b"\n\r"]),
                            self.rng.choice([1, 5, -1]))

    def depth(self, data):
        n = self.rng.choice([199, 200, 201, 255, 256, 257])
        return data.replace(b"<devices>", b"<devices>" + b"<a>" * n + b"</a>" * n, 1)

    def text_nodes(self, data):
        bit = self.rng.choice([b"<!--c-->", b"<![CDATA[q]]>", b"<?p x?>", b"&amp;", b"&#233;",
                               b"\xc3\xa9", b"]]>"])
        tag = self.rng.choice([b"<name>", b"<emulator>", b"<vcpu", b"<iothreads>"])
        at = data.find(tag)
        if at < 0:
            return data
        end = data.find(b">", at) + 1
        return data[:end] + bit + data[end:]

    def declaration(self, data):
        decl = self.rng.choice([
            b"<?xml version='1.0'?>", b"<?xml version='1.1'?>",
            b"<?xml version='1.0' encoding='utf-8'?>", b"<?xml version='1.0' encoding='UTF8'?>",
            b"<?xml version='1.0' encoding='us-ascii'?>",
            b"<?xml version='1.0' encoding='latin1'?>",
            b"<?xml version='1.0' standalone='yes'?>", b" <?xml version='1.0'?>",
            b"<?xml version='1.0' encoding = \"utf-8\" ?>"])
        body = data.split(b"?>", 1)[1] if data.startswith(b"<?xml") and b"?>" in data else data
        return decl + self.rng.choice([b"", b"\n"]) + body

    OPS = Mutator.OPS + [ns, ns, prefixed, prefixed, line_ends, depth, text_nodes, text_nodes,
                         declaration]


def test_mutated_domains_give_lxml_errors_or_lxml_documents(tmp_path):
    rng = random.Random(SEED)
    files = {k: str(tmp_path / k) for k in ("prealloc", "sparse", "fifo", "dir", "chr",
                                            "link-null")}
    seeds = [open(path, "rb").read() for path in FIXTURES]
    mutator = EdgeMutator(rng, files)
    kinds = {"lite": 0, "lxml": 0, "error": 0}
    for _ in range(MUTATIONS):
        try:
            data = mutator.mutate(rng.choice(seeds))
        except IndexError:  # a mutation that does not apply to this input
            continue
        if len(data) > (11 << 20):
            continue
        kinds[same(data, rng)] += 1
    # each way is exercised: most inputs break, many take the fast path, some go to lxml
    assert kinds["lite"] > MUTATIONS // 5 and kinds["lxml"] > 10 and kinds["error"] > 100, kinds


@pytest.mark.parametrize("data", [
    b"",
    b"   ",
    b"<!DOCTYPE domain [<!ENTITY x 'y'>]><domain><name>&x;</name></domain>",
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE domain><domain/>'.encode("utf-16"),
    b"<domain><name>&xxe;</name></domain>",
    b"<pool><name>p</name></pool>",
    b"<domain xmlns='http://example.org/x'><name>n</name></domain>",
    b"<domain><name>n</name>" + b"<a>" * 300 + b"</a>" * 300 + b"</domain>",
    b"<domain><name>n</name><devices><!--" + b"x" * (FAST_MAX_BYTES + 1) + b"--></devices></domain>",
    b"<domain><name>n</name><devices><!--" + b"x" * (10 << 20) + b"--></devices></domain>",
    b"<domain><name>n</name><x:y xmlns:x='http://a b'/></domain>",
    b"<domain><name>n</name><y x:z='1'/></domain>",
    b"<domain><name>n</na",
    b"<domain/><domain/>",
])
def test_hardening_is_parse_domains(data):
    """No DTD, no entity, the size bound, the root check: the same verdict, from
    the fast path or from lxml."""
    same(data)


def test_an_unpatchable_edit_is_serialized_by_lxml_with_the_same_edits():
    """A self-closing <disk/> gains a <driver>: the byte patch can't place it, so
    both documents serialize a tree of lxml's with the edits (DomainDocument.serialize)."""
    data = (b"<domain type='kvm'><name>n</name><devices>"
            b"<disk type='file' device='disk'><source file='/x'/><target dev='vda'/></disk>"
            b"<disk type='file' device='disk'/></devices></domain>")
    a, b = parse_domain(data), parse_domain_lite(data)
    assert isinstance(b, LiteDocument)
    edits = {0: {"io": "native"}, 1: {"io": None, "cache": "none"}}
    assert b.serialize(edits) == a.serialize(edits)
    assert b"<driver name=\"qemu\" cache=\"none\"/>" in a.serialize(edits)  # lxml's serialization
    assert a.serialize() == b.serialize() == data  # the documents stay as read
    assert a.serialize({1: {"io": None}}) == data  # an edit that changes nothing


def test_only_the_edited_attributes_are_rewritten():
    """An attribute value that a parser normalizes (a newline in it) is left as
    written: before, every <driver> was brought in line with the tree, so the
    rewrite changed such values even where aiohook edited nothing."""
    data = (b"<domain><name>n</name><devices><disk type='file'>"
            b"<driver name='qemu' type=\"raw\nx\"/><source file='/a'/><target dev='vda'/></disk>"
            b"<disk type='file'><driver name='qemu' discard='un\tmap'/><source file='/b'/>"
            b"<target dev='vdb'/></disk></devices></domain>")
    for doc in (parse_domain(data), parse_domain_lite(data)):
        assert doc.serialize() == data
        assert doc.serialize({0: {"io": "native"}}) == data.replace(
            b"type=\"raw\nx\"/>", b"type=\"raw\nx\" io='native'/>")


def test_metadata_errors_are_lxmls_messages_and_lines():
    data = (b"<domain><name>n</name><metadata>\n<a:policy xmlns:a='http://aiohook.org/xmlns/policy/1'"
            b">\n<a:disk\n target='vda'\r io='bogus'\n/></a:policy></metadata></domain>")
    with pytest.raises(DomainXMLError) as lxml_error:
        parse_domain(data, "<f>").overrides()
    with pytest.raises(DomainXMLError) as lite_error:
        parse_domain_lite(data, "<f>").overrides()
    assert lite_error.value.one_line() == lxml_error.value.one_line()
    assert lxml_error.value.line == 5
