"""Values: the package's immutable records, as cheap to define as a cold start needs.

``@dataclass(frozen=True)`` writes six methods per class as source and compiles them when its
module is imported (0.6 ms a class on python3.13). The scheduled function's cold start defined
40 such classes: 25 ms, the largest part of what the package added to a cold start. Even with no
method generated, the dataclass machinery spent 4 ms on the webhook's 41 records, most of it
testing every string annotation three times for ``ClassVar``, ``InitVar`` and ``KW_ONLY``.

A ``@frozen`` class is a plain class whose fields are read-only to the type checker: ``mypy
--strict`` over the package (part of ``make test``) refuses any assignment, as for a frozen
dataclass, and is the guard; at run time nothing stops one. Its fields are read from its own
annotations, with defaults and ``dataclasses.field(default=, default_factory=, repr=,
compare=)`` as a dataclass reads them; what a record does not read (``InitVar``, ``kw_only``,
``init=False``, a record as a base class: none is used) is refused. ``__init__``, equality,
hash and repr are one shared implementation each, which take arguments, compare, hash and show
the fields as a frozen dataclass does (``tests/test_values.py``); ``replace`` and
``field_names`` stand for ``dataclasses.replace`` and ``dataclasses.fields``. The price is about
a microsecond per instance (an invocation makes a few dozen).
"""

from __future__ import annotations

import dataclasses
import reprlib
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, dataclass_transform, get_origin

_T = TypeVar("_T")
_MISSING = dataclasses.MISSING


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[_T]) -> type[_T]:
    """A record, read-only to the type checker, whose methods are shared, not generated."""
    made: Any = cls
    made.__frozen__ = _Spec(made)
    for name, method in (("__init__", _init), ("__eq__", _eq), ("__repr__", _repr),
                         ("__hash__", _hash)):  # fmt: skip
        if made.__dict__.get(name) is None:  # a class's own method stays
            setattr(made, name, method)
    return cls


if TYPE_CHECKING:  # mypy checks the changes against the record's fields
    from dataclasses import replace as replace
else:

    def replace(record: Any, /, **changes: Any) -> Any:
        """A copy of ``record`` with ``changes``, made by its ``__init__`` (``__post_init__``
        included), as ``dataclasses.replace`` makes one; a dataclass goes to that."""
        spec = type(record).__dict__.get("__frozen__")
        if spec is None:
            return dataclasses.replace(record, **changes)
        current = {name: getattr(record, name) for name in spec.names}
        return type(record)(**{**current, **changes})


def field_names(cls: type) -> tuple[str, ...]:
    """A record's fields, in order: what ``dataclasses.fields`` names."""
    spec: _Spec = cls.__dict__["__frozen__"]
    return spec.names


class _Spec:
    """What the shared methods need to know of a class's fields, worked out once."""

    def __init__(self, cls: type) -> None:
        self.post_init = getattr(cls, "__post_init__", None)
        names, shown, compared = [], [], []
        self.defaults: dict[str, Any] = {}
        self.factories: dict[str, Any] = {}
        if any("__frozen__" in vars(base) for base in cls.__mro__[1:]):
            raise TypeError(f"@frozen {cls.__qualname__}: a record is no base of another")
        # The class's own annotations: since Python 3.10 never a base class's.
        for name, annotation in cls.__annotations__.items():
            if _is_class_variable(annotation):
                continue
            if isinstance(annotation, str) and annotation.startswith(_UNSUPPORTED):
                raise TypeError(f"@frozen {cls.__qualname__}.{name}: no {annotation}")
            default, show, compare = cls.__dict__.get(name, _MISSING), True, True
            if isinstance(default, dataclasses.Field):
                if not default.init or default.kw_only is True or default.hash is not None:
                    raise TypeError(f"@frozen {cls.__qualname__}.{name}: a field takes only "
                                    "default, default_factory, repr and compare")  # fmt: skip
                given, show, compare = default, default.repr, default.compare
                default = given.default
                if given.default_factory is not _MISSING:
                    self.factories[name] = given.default_factory
                if default is _MISSING:
                    delattr(cls, name)  # as a dataclass leaves it: no class attribute
                else:
                    setattr(cls, name, default)
            if default is not _MISSING:
                if type(default).__hash__ is None:  # a list, dict or set shared by instances
                    raise ValueError(
                        f"mutable default {type(default)} for field {name} is not allowed: "
                        "use default_factory"
                    )
                self.defaults[name] = default
            names.append(name)
            if show:
                shown.append(name)
            if compare:
                compared.append(name)
        self.names = tuple(names)
        self.known = frozenset(names)
        self.compared = attrgetter(*compared) if compared else _no_fields
        self.shown = tuple(shown)


# What a dataclass reads and a record does not (none is used): refused, never misread.
_UNSUPPORTED = ("InitVar", "dataclasses.InitVar", "KW_ONLY", "dataclasses.KW_ONLY")


def _is_class_variable(annotation: Any) -> bool:
    """``ClassVar[...]``: not a field (a string under ``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return annotation is ClassVar or get_origin(annotation) is ClassVar


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
