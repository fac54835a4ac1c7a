"""Per-domain overrides kept in the domain's own <metadata> (aiohook/schemas/aiohook-metadata.xsd).

    <metadata>
      <aiohook:policy xmlns:aiohook="http://aiohook.org/xmlns/policy/1">
        <aiohook:skip/>
        <aiohook:disk target="vdb" io="threads"/>
      </aiohook:policy>
    </metadata>
"""

from __future__ import annotations

from aiohook.errors import DomainXMLError
from aiohook.record import Record

NAMESPACE = "http://aiohook.org/xmlns/policy/1"
PIN_VALUES = ("native", "threads", "io_uring", "keep")
_POLICY = f"{{{NAMESPACE}}}policy"


class DomainOverrides(Record):
    FIELDS = ("skip", "pins", "line")

    def __init__(self, skip: bool = False, pins: dict[str, str] | None = None,
                 line: int | None = None):
        self.skip = skip
        self.pins = {} if pins is None else pins  # target -> io
        self.line = line

    @property
    def present(self) -> bool:
        return self.skip or bool(self.pins)


def _split(tag: str) -> tuple[str | None, str]:
    """(namespace, local name) of a Clark-notation tag, as lxml's QName gives them."""
    if tag[:1] == "{":
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return None, tag


def read_overrides(root) -> DomainOverrides:
    """From an lxml tree or aiohook.domxml.lite's (both have find, iteration and
    Clark-notation tags: `{uri}local`)."""
    policy = next((p for m in root.iterfind("metadata") for p in m
                   if p.tag == _POLICY), None)
    if policy is None:
        return DomainOverrides()
    out = DomainOverrides(line=policy.sourceline)
    for child in policy:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        namespace, localname = _split(child.tag)
        if namespace != NAMESPACE:
            continue
        if localname == "skip":
            out.skip = True
        elif localname == "disk":
            target, io = child.get("target"), child.get("io")
            if not target or io not in PIN_VALUES:
                raise DomainXMLError(
                    f"aiohook metadata: <disk> needs target= and io= one of {', '.join(PIN_VALUES)}",
                    line=child.sourceline,
                )
            out.pins[target] = io
        else:
            raise DomainXMLError(
                f"aiohook metadata: unknown element <{localname}>", line=child.sourceline
            )
    return out
