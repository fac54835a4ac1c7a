"""json.loads and json.dumps for the hook, from the C accelerator (_json) alone.

The json package imports re (and with it enum, functools, collections...):
about 6 ms of every hook call (issue 11). The hook reads and writes JSON with
_json's scanner and encoder, which are what json itself runs, set up as json
sets them up, so the values read and the text written are json's:

- loads(data) is json.loads(data) for text and for UTF-8 bytes (other bytes,
  e.g. UTF-16 or with a BOM, go to json itself); a document that is not JSON
  raises json's own JSONDecodeError (a ValueError: _json imports json.decoder
  to raise it, so only a broken file pays for the import);
- dumps(obj, separators=..., default=..., sort_keys=...) is json.dumps with
  those arguments (ensure_ascii, check_circular and allow_nan as json's
  defaults);
- dumps(obj, indent=N, ...): the C encoder has no indent before Python 3.13,
  so this writes json's indented layout itself for dicts, lists, tuples, str,
  int, float, bool and None, and hands anything else to json.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # an interpreter without the accelerator: json as it is
    _json = None

_WS = " \t\n\r"
_INF = float("inf")


class _DecoderContext:
    """What _json.make_scanner reads from a json.JSONDecoder (json's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -_INF, "Infinity": _INF, "NaN": float("nan")}.__getitem__
    memo: dict = {}


_scan = _json.make_scanner(_DecoderContext()) if _json is not None else None


def loads(data: str | bytes):
    """json.loads(data)."""
    if _scan is None or isinstance(data, (bytes, bytearray)) and (
            data[:3] == b"\xef\xbb\xbf" or data[:2] in (b"\xff\xfe", b"\xfe\xff")
            or b"\x00" in data[:4]):
        import json

        return json.loads(data)
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "surrogatepass")
    if not isinstance(data, str) or data.startswith("\ufeff"):
        import json

        return json.loads(data)
    start = len(data) - len(data.lstrip(_WS))
    try:
        value, end = _scan(data, start)
    except StopIteration:
        import json

        return json.loads(data)  # json's "Expecting value" error, with its position
    if data[end:].strip(_WS):
        import json

        return json.loads(data)  # json's "Extra data" error
    return value


def _default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj, *, separators: tuple[str, str] | None = None, default=None,
          sort_keys: bool = False, indent: int | None = None) -> str:
    """json.dumps(obj, separators=..., default=..., sort_keys=..., indent=...)."""
    if indent is not None:
        text = _indented(obj, indent, separators, sort_keys, default)
        if text is not None:
            return text
    if _json is not None and isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    if _json is None or indent is not None:
        import json

        return json.dumps(obj, separators=separators, default=default, sort_keys=sort_keys,
                          indent=indent)
    item_sep, key_sep = separators or (", ", ": ")
    encode = _json.make_encoder({}, default or _default, _json.encode_basestring_ascii, None,
                                key_sep, item_sep, sort_keys, False, True)
    return "".join(encode(obj, 0))


def _float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(o)


_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


def _indented(obj, indent: int, separators, sort_keys: bool, default) -> str | None:
    """json's indented layout (json.encoder._make_iterencode), or None to let
    json write it: a value of another type (default= decides those), a key that
    is not a str, a circular structure."""
    if _json is None:
        return None
    item_sep, key_sep = separators or (",", ": ")
    pad = " " * indent
    escape = _json.encode_basestring_ascii
    out: list[str] = []
    seen: set[int] = set()

    class _Other(Exception):
        pass

    def value(o, level: int) -> None:
        kind = type(o)
        if kind not in _PLAIN:
            raise _Other
        if kind is str:
            out.append(escape(o))
        elif o is None:
            out.append("null")
        elif o is True:
            out.append("true")
        elif o is False:
            out.append("false")
        elif kind is int:
            out.append(int.__repr__(o))
        elif kind is float:
            out.append(_float(o))
        else:
            if id(o) in seen:
                raise _Other
            seen.add(id(o))
            if kind is dict:
                mapping(o, level)
            else:
                sequence(o, level)
            seen.discard(id(o))

    def sequence(items, level: int) -> None:
        if not items:
            out.append("[]")
            return
        inner = "\n" + pad * (level + 1)
        out.append("[" + inner)
        for i, item in enumerate(items):
            if i:
                out.append(item_sep + inner)
            value(item, level + 1)
        out.append("\n" + pad * level + "]")

    def mapping(dct: dict, level: int) -> None:
        if not dct:
            out.append("{}")
            return
        inner = "\n" + pad * (level + 1)
        out.append("{" + inner)
        items = sorted(dct.items()) if sort_keys else dct.items()
        for i, (key, item) in enumerate(items):
            if type(key) is not str:
                raise _Other
            if i:
                out.append(item_sep + inner)
            out.append(escape(key) + key_sep)
            value(item, level + 1)
        out.append("\n" + pad * level + "}")

    try:
        value(obj, 0)
    except (_Other, RecursionError, TypeError):
        return None
    return "".join(out)
