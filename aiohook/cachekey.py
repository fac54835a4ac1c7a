"""The content hash that keys the compiled settings and rules caches.

sha256 from the interpreter's own implementation (_sha256; _sha2 from Python
3.12 on) rather than hashlib, whose import loads OpenSSL's libcrypto: ~2 ms of
every hook call (issue 11). Same digest, so the cache files keep their names.
"""

from __future__ import annotations

try:
    from _sha256 import sha256
except ImportError:  # Python >= 3.12, or a build without it
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()
