"""Plain data classes for the hook's hot path, without the `dataclasses` module.

`import dataclasses` pulls in inspect, ast, dis and tokenize, and every
@dataclass then generates and compiles its methods at import: together about
10 ms of every `prepare begin` hook call (issue 11, benchmarks/README.md). The
classes the hook loads (facts, rules, decisions, plans, the budget gate's
outcome...) write their __init__ by hand and inherit the rest from here, with
what @dataclass gave them:

- __repr__: `Name(field=value, ...)`, fields in declaration order;
- __eq__: same class and equal fields, in order (NotImplemented otherwise);
- mutable records are unhashable (__hash__ = None, as @dataclass(eq=True));
- FrozenRecord: assigning or deleting an attribute raises FrozenInstanceError
  (an AttributeError), and the hash is that of the fields' tuple, as
  @dataclass(frozen=True);
- _replace(**changes) and _asdict() stand for dataclasses.replace() and
  dataclasses.asdict() (every field of these classes holds a scalar, a tuple,
  a record or a list/dict of them: _asdict() copies lists and dicts one level
  and turns nested records into dicts, as asdict does for these shapes).

FIELDS names the fields in order; a subclass lists every field it has.
"""

class FrozenInstanceError(AttributeError):
    """An attribute of a frozen record was assigned or deleted."""


def _value(value):
    if isinstance(value, Record):
        return value._asdict()
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, tuple):
        return type(value)(_value(v) for v in value)
    if isinstance(value, dict):
        return {_value(k): _value(v) for k, v in value.items()}
    return value


class Record:
    __slots__ = ()
    FIELDS: tuple = ()

    def _astuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._astuple() == other._astuple()
        return NotImplemented

    __hash__ = None

    def _replace(self, **changes):
        """A new record with these fields changed (dataclasses.replace)."""
        values = {name: getattr(self, name) for name in self.FIELDS}
        for name in changes:
            if name not in values:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
        values.update(changes)
        return type(self)(**values)

    def _asdict(self) -> dict:
        """Every field by name, nested records as dicts (dataclasses.asdict)."""
        return {name: _value(getattr(self, name)) for name in self.FIELDS}


class FrozenRecord(Record):
    __slots__ = ()

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __hash__(self):
        return hash(self._astuple())


def _set(record, name, value) -> None:
    """Set a field of a frozen record (its __init__ only)."""
    object.__setattr__(record, name, value)
