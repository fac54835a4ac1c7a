"""The per-domain override XSD and the parser that reads overrides agree."""

from __future__ import annotations

import glob
import os

import pytest
import xmlschema
from lxml import etree
from paths import ROOT

from aiohook.domxml.overrides import NAMESPACE, read_overrides
from aiohook.errors import DomainXMLError

XSD = xmlschema.XMLSchema(os.path.join(ROOT, "aiohook", "schemas", "aiohook-metadata.xsd"))
FIXTURES = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "domains", "*.xml"))
                  + glob.glob(os.path.join(ROOT, "examples", "*.xml")))


def _policy(xml: str):
    root = etree.fromstring(xml.encode())
    return root, root.find(f"metadata/{{{NAMESPACE}}}policy")


def _domain(policy_body: str) -> str:
    return (f"<domain type='kvm'><name>d</name><metadata>"
            f"<aiohook:policy xmlns:aiohook='{NAMESPACE}'>{policy_body}</aiohook:policy>"
            f"</metadata></domain>")


def test_every_shipped_override_is_valid_against_the_xsd():
    seen = 0
    for path in FIXTURES:
        root = etree.parse(path).getroot()
        policy = root.find(f"metadata/{{{NAMESPACE}}}policy")
        if policy is None:
            continue
        seen += 1
        XSD.validate(etree.tostring(policy).decode())
        read_overrides(root)  # and the parser accepts it
    assert seen >= 4  # the corpus has skip and pin examples


@pytest.mark.parametrize("body, skip, pins", [
    ("<aiohook:skip/>", True, {}),
    ("<aiohook:disk target='vdb' io='threads'/><aiohook:disk target='sda' io='keep'/>",
     False, {"vdb": "threads", "sda": "keep"}),
    ("", False, {}),
])
def test_valid_metadata_both_accept(body, skip, pins):
    root, policy = _policy(_domain(body))
    XSD.validate(etree.tostring(policy).decode())
    got = read_overrides(root)
    assert (got.skip, got.pins) == (skip, pins)


@pytest.mark.parametrize("body", [
    "<aiohook:disk target='vdb' io='fast'/>",     # io not in the enumeration
    "<aiohook:disk io='native'/>",                 # target missing
    "<aiohook:disk target='vdb'/>",                # io missing
    "<aiohook:pin target='vdb' io='native'/>",     # unknown element
])
def test_invalid_metadata_both_reject(body):
    root, policy = _policy(_domain(body))
    assert not XSD.is_valid(etree.tostring(policy).decode())
    with pytest.raises(DomainXMLError):
        read_overrides(root)
