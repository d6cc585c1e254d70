"""
Hostile objects, shared by the tests that attack what public calls accept.

Each one's own code raises :class:`Hostile` or lies: a test that sees
``Hostile`` has let that code run, and one that accepts a liar must have
acted on its plain value.
"""

from __future__ import annotations

import fractions
import numbers

from typing import Any


class Hostile(RuntimeError):
    """Raised by hostile code: a test that sees it has let that code run."""


def hostile(*_args: object) -> Any:
    raise Hostile("hostile code ran")


COMPARISONS = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")


def with_raising(base: type, name: str, methods: tuple[str, ...]) -> type:
    """A subclass of *base* called *name* whose *methods* all raise :class:`Hostile`."""
    return type(name, (base,), dict.fromkeys(methods, hostile))


#: A float whose conversion, comparisons, hash and arithmetic all raise.
RaisingFloat = with_raising(
    float,
    "RaisingFloat",
    (
        *COMPARISONS,
        "__float__",
        "__hash__",
        "__add__",
        "__radd__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__bool__",
    ),
)
#: An int whose comparisons, conversions, hash and arithmetic raise.
RaisingInt = with_raising(
    int,
    "RaisingInt",
    (
        *COMPARISONS,
        "__index__",
        "__int__",
        "__float__",
        "__hash__",
        "__bool__",
        "__add__",
        "__radd__",
    ),
)
#: A Fraction whose comparisons raise (as they would under the collector's lock).
RaisingFraction = with_raising(fractions.Fraction, "RaisingFraction", (*COMPARISONS, "__hash__"))
#: A Fraction whose conversion to float raises.
UnconvertibleFraction = with_raising(fractions.Fraction, "UnconvertibleFraction", ("__float__",))
#: A str whose length, truth, hash, equality and str() raise.
HostileStr = with_raising(
    str, "HostileStr", ("__len__", "__bool__", "__hash__", "__eq__", "__ne__", "__str__")
)


class LyingInt(int):
    """An int that says it is never below anything and always above."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class LyingFloat(float):
    """A float that says it is in every range: never below, never above."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    __hash__ = float.__hash__


class RaisingClass:
    """An object whose ``__class__`` raises (isinstance() would run it)."""

    __class__ = property(hostile)  # type: ignore[assignment]


def masquerade(cls: type) -> object:
    """An object whose ``__class__`` claims to be *cls* (isinstance() believes it)."""
    return type(f"Fake{cls.__name__.title()}", (), {"__class__": property(lambda self: cls)})()


class ZeroDivisionReal:
    """A numbers.Real (registered) whose __float__ raises ZeroDivisionError."""

    def __float__(self) -> float:
        return 1 / 0

    def __repr__(self) -> str:
        return "ZeroDivisionReal()"


numbers.Real.register(ZeroDivisionReal)
