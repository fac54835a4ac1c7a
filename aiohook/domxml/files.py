"""Domain XML read from a file, or from stdin for "-", bounded to MAX_XML_BYTES."""

from __future__ import annotations

from aiohook.domxml.document import MAX_XML_BYTES
from aiohook.errors import DomainXMLError
from aiohook.fsutil import read_bounded


def input_label(path: str) -> str:
    """How a path is named in messages and plans: "-" is <stdin>."""
    return "<stdin>" if path == "-" else path


def read_xml(path: str) -> bytes:
    data = read_bounded(path, MAX_XML_BYTES)
    if len(data) > MAX_XML_BYTES:
        raise DomainXMLError(f"XML is over the {MAX_XML_BYTES} byte limit", file=input_label(path))
    return data
