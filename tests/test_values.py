"""Records (``@frozen``, csbs_trigger/values.py): read-only to mypy, and at run time reading their
fields, taking arguments, comparing, hashing, showing and being replaced exactly as a frozen
dataclass does."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, ClassVar

import pytest

from csbs_trigger.cloud.credentials import PasswordCredentials
from csbs_trigger.cloud.endpoints import Endpoints
from csbs_trigger.values import field_names, frozen, replace


def _pair() -> tuple[type, type]:
    """One record declared both ways: as a frozen dataclass, and ``@frozen``."""

    def declare(decorate: Any) -> type:
        @decorate
        class Record:
            name: str
            tags: tuple[str, ...] = ()
            secret: str = dataclasses.field(default="s", repr=False)
            seen: int = dataclasses.field(default=0, compare=False)
            notes: list[str] = dataclasses.field(default_factory=list, compare=False)

            def __post_init__(self) -> None:
                object.__setattr__(self, "tags", tuple(self.tags))

        return Record

    return declare(dataclasses.dataclass(frozen=True)), declare(frozen)


def _values(instance: Any) -> tuple[Any, ...]:
    """An instance's fields in order, a dataclass's or a record's."""
    if dataclasses.is_dataclass(instance):
        return dataclasses.astuple(instance)
    return tuple(getattr(instance, name) for name in field_names(type(instance)))


@pytest.mark.parametrize(
    ("a", "b"),
    [(("x",), ("x",)), (("x", ("t",)), ("x", ("t",))), (("x",), ("y",)),
     (("x", (), "s", 1), ("x", (), "s", 2)), (("x", (), "s"), ("x", (), "other"))],
)  # fmt: skip
def test_a_frozen_record_compares_hashes_and_shows_as_a_frozen_dataclass(
    a: tuple[Any, ...], b: tuple[Any, ...]
) -> None:
    reference, record = _pair()
    assert (record(*a) == record(*b)) is (reference(*a) == reference(*b))
    assert (record(*a) != record(*b)) is (reference(*a) != reference(*b))
    assert (hash(record(*a)) == hash(record(*b))) is (hash(reference(*a)) == hash(reference(*b)))
    instance = record(*a)
    assert instance == instance
    assert repr(record(*a)) == repr(reference(*a))  # the secret field unshown in both
    assert record(*a) != reference(*a)  # another class is never equal
    assert record(*a).__eq__(a) is NotImplemented
    assert _values(record(*a)) == _values(reference(*a))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("x",), {}), ((), {"name": "x", "tags": ["t"]}), (("x",), {"seen": 3, "secret": "k"}),
     (("x", ("t",), "s", 1, ["n"]), {}), (("x", ("t",), "s", 1, ["n"], "more"), {}), ((), {}),
     (("x",), {"name": "y"}), (("x",), {"colour": "red"}), ((), {"tags": ()}),
     (("x", ("t",), "s", 1, ["n"]), {"seen": 2})],
)  # fmt: skip
def test_a_frozen_record_takes_arguments_as_a_frozen_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    reference, record = _pair()

    def made(cls: type) -> tuple[str, Any]:
        try:
            instance = cls(*args, **kwargs)
        except TypeError:
            return "TypeError", None
        return "made", _values(instance)

    assert made(record) == made(reference)
    if made(record)[0] == "made" and len(args) < 5 and "notes" not in kwargs:
        # each instance its own default list
        assert record(*args, **kwargs).notes is not record(*args, **kwargs).notes


@pytest.mark.parametrize(
    ("args", "kwargs", "refusal"),
    [((), {}, "missing required argument: 'name'"),
     (("x",), {"colour": "red"}, "got an unexpected keyword argument 'colour'"),
     (("x",), {"name": "y"}, "got multiple values for argument 'name'"),
     (("x", (), "s", 1, []), {"seen": 2}, "got multiple values for argument 'seen'"),
     (("x", (), "s", 1, [], "more"), {}, "takes 5 arguments but 6 were given")],
)  # fmt: skip
def test_a_refused_call_names_the_record_and_the_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], refusal: str
) -> None:
    _, record = _pair()
    with pytest.raises(TypeError, match=re.escape(f"Record() {refusal}")):
        record(*args, **kwargs)


@pytest.mark.parametrize("shape", ["one field", "no field"])
def test_a_record_of_one_field_or_none_compares_and_hashes_as_a_frozen_dataclass(
    shape: str,
) -> None:
    def declare(decorate: Any) -> type:
        if shape == "one field":

            @decorate
            class One:
                name: str = "x"

            return One

        @decorate
        class Empty:
            pass

        return Empty

    reference, record = declare(dataclasses.dataclass(frozen=True)), declare(frozen)
    assert (record() == record()) is (reference() == reference()) is True
    assert hash(record()) == hash(record())
    assert repr(record()) == repr(reference())
    if shape == "one field":
        assert record("x") != record("y")
        assert hash(record("x")) != hash(record("y"))


def test_a_record_keeps_its_own_hash_and_hides_its_secrets() -> None:
    endpoints = Endpoints({"csbs_endpoint": "https://csbs"}, "eu-de")
    assert hash(endpoints) == hash(((("csbs_endpoint", "https://csbs"),), "eu-de"))
    assert {endpoints: 1}[Endpoints({"csbs_endpoint": "https://csbs"}, "eu-de")] == 1
    credentials = PasswordCredentials(
        auth_url="https://iam", username="u", password="hunter2-secret", user_domain_name="d",
        project_id="0" * 32, project_name=None, endpoints=Endpoints(),
    )  # fmt: skip
    assert "hunter2-secret" not in repr(credentials)


def test_a_record_reads_its_fields_as_a_dataclass_reads_them() -> None:
    reference, record = _pair()
    assert field_names(record) == tuple(f.name for f in dataclasses.fields(reference))
    for name in field_names(record):  # a default stays on the class, a factory's field does not
        assert getattr(record, name, "none") == getattr(reference, name, "none"), name

    def declare(decorate: Any) -> type:
        @decorate
        class Counted:
            made: ClassVar[int] = 0  # a string here (the future import), as most are
            name: str
            kinds: typing.ClassVar[tuple[str, ...]] = ()

        return Counted

    def built(decorate: Any) -> type:  # annotations as objects (no future import)
        annotations = {"name": str, "made": ClassVar[int], "kinds": typing.ClassVar}
        return decorate(type("Counted", (), {"__annotations__": annotations, "made": 0}))

    as_strings = (declare(dataclasses.dataclass(frozen=True)), declare(frozen))
    as_objects = (built(dataclasses.dataclass(frozen=True)), built(frozen))
    for reference, record in (as_strings, as_objects):
        assert field_names(record) == ("name",)
        assert tuple(f.name for f in dataclasses.fields(reference)) == ("name",)
        assert repr(record("x")) == repr(reference("x"))


@pytest.mark.parametrize("default", [[], {}, set()])
def test_a_mutable_default_is_refused_as_a_dataclass_refuses_it(default: Any) -> None:
    refusals = []
    for decorate in (dataclasses.dataclass(frozen=True), frozen):
        with pytest.raises(ValueError, match="mutable default") as refused:
            decorate(type("Shared", (), {"__annotations__": {"items": "list[str]"},
                                         "items": default}))  # fmt: skip
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1]


@pytest.mark.parametrize(
    "changes", [{"name": "z"}, {"tags": ["t"]}, {"seen": 5, "secret": "k"}, {}, {"colour": 1}]
)
def test_a_replaced_record_is_made_anew_as_a_replaced_dataclass(changes: dict[str, Any]) -> None:
    reference, record = _pair()

    def replaced(instance: Any) -> tuple[str, Any]:
        try:
            made = replace(instance, **changes)
        except TypeError:
            return "TypeError", None
        assert made is not instance
        return "made", _values(made)  # __post_init__ ran again: tags a tuple

    assert replaced(record("x", ["a"])) == replaced(reference("x", ["a"]))
    assert replaced(record("x", ["a"]))[1] == (
        None
        if "colour" in changes
        else _values(dataclasses.replace(reference("x", ["a"]), **changes))
    )


@pytest.mark.parametrize(
    ("body", "refusal"),
    [({"__annotations__": {"x": "InitVar[int]"}}, "x: no InitVar[int]"),
     ({"__annotations__": {"_": "KW_ONLY", "x": "int"}}, "_: no KW_ONLY"),
     ({"__annotations__": {"x": "int"}, "x": dataclasses.field(init=False, default=0)},
      "x: a field takes only default, default_factory, repr and compare"),
     ({"__annotations__": {"x": "int"}, "x": dataclasses.field(kw_only=True)},
      "x: a field takes only default, default_factory, repr and compare"),
     ({"__annotations__": {"x": "int"}, "x": dataclasses.field(hash=False)},
      "x: a field takes only default, default_factory, repr and compare")],
)  # fmt: skip
def test_what_a_record_does_not_read_is_refused_never_misread(
    body: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(f"@frozen Odd.{refusal}")):
        frozen(type("Odd", (), body))


def test_a_record_is_no_base_of_another() -> None:
    @frozen
    class Base:
        x: int

    with pytest.raises(TypeError, match=r"@frozen .*Derived: a record is no base of another"):

        @frozen
        class Derived(Base):
            y: int
