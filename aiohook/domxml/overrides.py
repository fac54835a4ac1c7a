"""Per-domain overrides kept in the domain's own <metadata> (schemas/aiohook-metadata.xsd).

    <metadata>
      <aiohook:policy xmlns:aiohook="http://aiohook.org/xmlns/policy/1">
        <aiohook:skip/>
        <aiohook:disk target="vdb" io="threads"/>
      </aiohook:policy>
    </metadata>
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from aiohook.errors import DomainXMLError

NAMESPACE = "http://aiohook.org/xmlns/policy/1"
PIN_VALUES = ("native", "threads", "io_uring", "keep")
_NS = {"a": NAMESPACE}


@dataclass
class DomainOverrides:
    skip: bool = False
    pins: dict[str, str] = field(default_factory=dict)  # target -> io
    line: int | None = None

    @property
    def present(self) -> bool:
        return self.skip or bool(self.pins)


def read_overrides(root: etree._Element) -> DomainOverrides:
    policy = root.find("metadata/a:policy", _NS)
    if policy is None:
        return DomainOverrides()
    out = DomainOverrides(line=policy.sourceline)
    for child in policy:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        qname = etree.QName(child)
        if qname.namespace != NAMESPACE:
            continue
        if qname.localname == "skip":
            out.skip = True
        elif qname.localname == "disk":
            target, io = child.get("target"), child.get("io")
            if not target or io not in PIN_VALUES:
                raise DomainXMLError(
                    f"aiohook metadata: <disk> needs target= and io= one of {', '.join(PIN_VALUES)}",
                    line=child.sourceline,
                )
            out.pins[target] = io
        else:
            raise DomainXMLError(
                f"aiohook metadata: unknown element <{qname.localname}>", line=child.sourceline
            )
    return out
