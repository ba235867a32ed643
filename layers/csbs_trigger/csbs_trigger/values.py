"""Values: the package's immutable records, as cheap to define as a cold start needs.

``@dataclass(frozen=True)`` writes six methods per class as source and compiles them when its
module is imported (0.6 ms a class on python3.13). The scheduled function's cold start defined
40 such classes: 25 ms, the largest part of what the package added to a cold start.

A ``@frozen`` class is a dataclass whose fields are read-only to the type checker: ``mypy
--strict`` over the package (part of ``make test``) refuses any assignment, as for a frozen
dataclass, and is the guard; at run time nothing stops one. Nothing is compiled for it either:
``__init__``, equality, hash and repr are one shared implementation each, which take arguments,
compare, hash and show the fields as a frozen dataclass does (``tests/test_values.py``). The
price is about a microsecond per instance (an invocation makes a few dozen).
"""

from __future__ import annotations

import dataclasses
import reprlib
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[_T]) -> type[_T]:
    """A dataclass, read-only to the type checker, whose methods are shared, not generated."""
    made: Any = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)  # the same class
    fields = dataclasses.fields(made)
    made.__frozen__ = _Spec(made, fields)
    for name, method in (("__init__", _init), ("__eq__", _eq), ("__repr__", _repr),
                         ("__hash__", _hash)):  # fmt: skip
        if made.__dict__.get(name) is None:  # a class's own method stays
            setattr(made, name, method)
    return cls


class _Spec:
    """What the shared methods need to know of a class's fields, worked out once."""

    def __init__(self, cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
        self.post_init = getattr(cls, "__post_init__", None)
        self.names = tuple(f.name for f in fields)
        self.known = frozenset(self.names)
        self.defaults = {f.name: f.default for f in fields
                         if f.default is not dataclasses.MISSING}  # fmt: skip
        self.factories = {f.name: f.default_factory for f in fields
                          if f.default_factory is not dataclasses.MISSING}  # fmt: skip
        compared = [f.name for f in fields if f.compare]
        self.compared = attrgetter(*compared) if compared else _no_fields
        self.shown = tuple(f.name for f in fields if f.repr)


def _no_fields(instance: Any) -> tuple[()]:
    return ()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    spec: _Spec = self.__frozen__
    if len(args) == len(spec.names) and not kwargs:  # the common call: every field in order
        self.__dict__.update(zip(spec.names, args, strict=True))
    else:
        self.__dict__.update(_bound(spec, type(self).__qualname__, args, kwargs))
    if spec.post_init is not None:
        spec.post_init(self)


def _bound(spec: _Spec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fields' values from a call, refused as a generated ``__init__`` refuses it."""
    if len(args) > len(spec.names):
        raise TypeError(f"{name}() takes {len(spec.names)} arguments but {len(args)} were given")
    values = dict(zip(spec.names, args, strict=False))
    for key in kwargs:
        if key not in spec.known:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
        if key in values:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
    values.update(kwargs)
    for field in spec.names:
        if field in values:
            continue
        if field in spec.defaults:
            values[field] = spec.defaults[field]
        elif field in spec.factories:
            values[field] = spec.factories[field]()
        else:
            raise TypeError(f"{name}() missing required argument: {field!r}")
    return values


def _eq(self: Any, other: Any) -> Any:  # bool, or NotImplemented for another class
    if self is other:
        return True
    if other.__class__ is not self.__class__:
        return NotImplemented
    compared = self.__frozen__.compared
    return bool(compared(self) == compared(other))


def _hash(self: Any) -> int:
    return hash(self.__frozen__.compared(self))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__frozen__.shown)
    return f"{self.__class__.__qualname__}({shown})"
