"""Domain XML handling: the document is the source of truth.

Read through XPath-backed properties, change only <driver io/cache>, serialize
the same tree back. Nothing here knows about rules or probes.
"""

from aiohook.domxml.document import MAX_XML_BYTES, DomainDocument, parse_domain

__all__ = ["MAX_XML_BYTES", "DomainDocument", "parse_domain"]
