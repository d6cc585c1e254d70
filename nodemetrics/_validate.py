"""
Checking what callers pass in, without running their code where it matters.

Every check here either returns a plain built-in value (an exact ``str``,
``int`` or ``float``) or raises a :class:`TypeError`/:class:`ValueError`
whose message names the argument. A subclass of ``str``, ``int`` or
``float`` is copied to the exact type with the base type's own slot
(``str.__str__``, :func:`operator.index`, ``float.__float__``), so that its
overridden ``__hash__``, ``__eq__``, ``__lt__`` or ``__float__`` never runs,
here or later under the collector's lock. Where a foreign number's
conversion must run its code (a :class:`fractions.Fraction`), whatever it
raises becomes the documented error. Types are asked with
``issubclass(type(value), ...)``, never ``isinstance``, which would run a
``__class__`` property when the plain answer is no.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator

from collections.abc import Mapping
from typing import Any, cast

import attrs

from ._classify import ErrorCategory
from ._display import printable
from ._log import log


#: The largest duration accepted, in milliseconds (about 31,700 years): any
#: sum of durations a process can record stays finite.
MAX_DURATION_MS = 1e15

#: The largest count a snapshot or histogram holds: what a signed 64-bit
#: integer holds, so that every exporter, and any JSON reader, takes it exactly.
MAX_COUNT = 2**63 - 1

#: The failure categories in the order nodes count them.
CATEGORIES = (
    ErrorCategory.TIMEOUT,
    ErrorCategory.VALIDATION,
    ErrorCategory.NETWORK,
    ErrorCategory.OTHER,
)
CATEGORY_INDEX: dict[str, int] = {c.value: i for i, c in enumerate(CATEGORIES)}
OTHER = CATEGORY_INDEX["other"]


def check_node(node: object, argument: str = "node") -> str:
    """
    Return *node* as an exact ``str`` if it is a valid node name, else raise.

    Raises:
        TypeError: *node* is not a str; the message names *argument*.
        ValueError: *node* is empty; the message names *argument*.
    """
    if not issubclass(type(node), str):
        msg = f"{argument} must be a str, got {type_name(node)}"
        raise TypeError(msg)
    # A str subclass could run its own __len__, __hash__ or __eq__; a plain
    # copy of it cannot.
    name = str.__str__(node)
    if not name:
        msg = f"{argument} must be a non-empty str"
        raise ValueError(msg)
    return name


def to_real(value: object, argument: str) -> float:
    """
    Return *value*, a real number (not a bool), as a float.

    Raises:
        TypeError: *value* is not a real number.
        ValueError: *value* cannot be turned into a float (too large, or its
            own conversion raised).
    """
    if type(value) is bool or not issubclass(type(value), numbers.Real):
        msg = f"{argument} must be a real number, got {type_name(value)}"
        raise TypeError(msg)
    # issubclass() does not narrow: the casts say what it established.
    if issubclass(type(value), float):
        return float.__float__(cast("float", value))
    if issubclass(type(value), int):
        value = operator.index(cast("int", value))
    try:
        number = float(cast("numbers.Real", value))
    except Exception as exc:  # noqa: BLE001 -- a foreign number's conversion may raise anything
        msg = f"{argument} must be convertible to float, got {type_name(value)} ({safe_repr(exc)})"
        raise ValueError(msg) from None
    # float() returns an exact float or raises (a __float__ returning a
    # subclass is converted, one returning a non-float is a TypeError).
    return number


def to_duration(node: str, value: object) -> tuple[float, list[Any] | None]:
    """
    Return *value* as a duration in ms (a float in [0, MAX_DURATION_MS]), and what to log.

    A negative duration is recorded as 0.0, with a warning to log once it is
    counted (as a list of ``(callable, args)``, like threshold events).

    Raises:
        TypeError: *value* is not a real number.
        ValueError: *value* is NaN, infinite or above MAX_DURATION_MS.
    """
    duration = to_real(value, "duration_ms")
    if not math.isfinite(duration):
        msg = f"duration_ms must be finite, got {duration!r}"
        raise ValueError(msg)
    if duration > MAX_DURATION_MS:
        msg = f"duration_ms must be at most {MAX_DURATION_MS:g}, got {duration!r}"
        raise ValueError(msg)
    if duration < 0.0:
        warning = functools.partial(
            log,
            "WARNING",
            "nodemetrics.negative_duration: node {name!r} got duration_ms={value!r}; "
            "recorded as 0.0",
            node=node,
            name=node,
            value=duration,
        )
        return 0.0, [(warning, ())]
    # The fast paths send 0.0 here too: +0.0 turns a -0.0 into 0.0, so that
    # no snapshot shows "-0.0".
    return duration + 0.0, None


def category_index(category: object) -> int:
    """
    Return the index of *category* in :data:`CATEGORIES`.

    Raises:
        ValueError: *category* is not an :class:`ErrorCategory` or its string.
    """
    if issubclass(type(category), str):
        # ErrorCategory members and str subclasses alike: look up an exact
        # copy, so that a subclass's __hash__ and __eq__ never run.
        index = CATEGORY_INDEX.get(str.__str__(category))
        if index is not None:
            return index
    names = ", ".join(repr(c.value) for c in CATEGORIES)
    msg = f"category must be an ErrorCategory or one of {names}, got {safe_repr(category)}"
    raise ValueError(msg)


def check_int(argument: str, value: object, minimum: int) -> int:
    """
    Return *value* as an exact int >= *minimum*.

    Raises:
        TypeError: *value* is not an int (a bool is not one).
        ValueError: *value* < *minimum*.
    """
    if type(value) is bool or not issubclass(type(value), int):
        msg = f"{argument} must be an int, got {type_name(value)}"
        raise TypeError(msg)
    number = operator.index(cast("int", value))
    if number < minimum:
        msg = f"{argument} must be >= {minimum}, got {number!r}"
        raise ValueError(msg)
    return number


def check_count(argument: str, value: object) -> int:
    """
    Return *value* as an exact int in [0, :data:`MAX_COUNT`].

    Raises:
        TypeError: *value* is not an int (a bool is not one).
        ValueError: *value* is negative or above :data:`MAX_COUNT`.
    """
    number = check_int(argument, value, 0)
    check_count_bound(argument, number)
    return number


def check_count_bound(argument: str, number: int) -> None:
    """
    Refuse an exact int *number* above :data:`MAX_COUNT`, naming *argument*.

    Raises:
        ValueError: *number* is above :data:`MAX_COUNT`.
    """
    if number > MAX_COUNT:
        msg = f"{argument} must be at most 2**63 - 1, got {int_text(number)}"
        raise ValueError(msg)


def int_text(number: int) -> str:
    """Return an exact int as a message shows it: its digits, or its size when too long."""
    # CPython 3.11+ refuses to print an int of more than 4,300 digits.
    bits = number.bit_length()
    return repr(number) if bits <= 128 else f"an int of {bits:,} bits"


def optional_real(argument: str, value: object, below: float) -> float | None:
    """
    Return *value* as a float in [0, *below*), or ``None``.

    For a threshold: a value is only ever compared as "above the threshold",
    and none can be above *below*, so a threshold there could never be
    crossed.

    Raises:
        TypeError: *value* is neither ``None`` nor a real number.
        ValueError: *value* is NaN or out of range.
    """
    if value is None:
        return None
    if type(value) is bool or not issubclass(type(value), numbers.Real):
        msg = f"{argument} must be a real number or None, got {type_name(value)}"
        raise TypeError(msg)
    number = to_real(value, argument)
    if not 0.0 <= number < below:
        msg = f"{argument} must be in [0, {below:g}), got {number!r}"
        if number >= below:
            msg += f": nothing exceeds {below:g}, so it could never be crossed"
        raise ValueError(msg)
    return number


def optional_callable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Check, as an attrs validator, that *value* is ``None`` or callable."""
    if value is not None and not callable(value):
        msg = f"{attribute.name} must be callable or None, got {type_name(value)}"
        raise TypeError(msg)


def type_name(value: object) -> str:
    """Return the name of *value*'s type, running none of its code."""
    # type() cannot be fooled by a __class__ property, and a type's name is
    # a plain slot.
    return type.__dict__["__name__"].__get__(type(value))  # type: ignore[no-any-return]


def safe_repr(value: object) -> str:
    """Return ``repr(value)``, or a stand-in if its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 -- a hostile __repr__ must not replace our error
        return f"<{type_name(value)} object>"


def read_items(argument: str, mapping: object) -> list[tuple[object, object]]:
    """
    Return the ``(key, value)`` pairs of *mapping*'s ``items()``, read at once.

    Whatever a foreign mapping does, its ``items()`` raising or giving
    something but pairs (or items whose own iteration raises) included,
    becomes one error naming *argument*.

    Raises:
        TypeError: Reading *mapping* raised, or gave an item that is not a pair.
    """
    try:
        items = list(mapping.items())  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 -- a foreign mapping may raise anything
        msg = f"{argument} could not be read: {safe_repr(exc)}"
        raise TypeError(msg) from None
    # A pair is a tuple of two, as every mapping's items() gives: a str of
    # two characters, or a mapping of two keys, would unpack but is not one.
    for item in items:
        if type(item) is not tuple or len(item) != 2:
            msg = f"{argument} must give (key, value) pairs from items(), got {type_name(item)}"
            raise TypeError(msg)
    return items


def fields_of(kind: str, names: tuple[str, ...], mapping: object) -> dict[str, Any]:
    """
    Return the fields *names* of a *kind* value object, read from *mapping*.

    What ``from_dict()`` of each value object checks: exactly those names,
    as ``str`` keys (a subclass is read as its plain twin, so that none of
    its code runs), none missing and none unknown.

    Raises:
        TypeError: *mapping* is not a mapping, or reading it raised.
        ValueError: A field is missing or unknown.
    """
    if not issubclass(type(mapping), Mapping):
        msg = f"mapping must be a mapping, got {type_name(mapping)}"
        raise TypeError(msg)
    pairs = read_items("mapping", mapping)
    fields: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in pairs:
        # Keys are copied to exact strs, so that a str subclass's own
        # __hash__ or __eq__ never runs in the lookups below.
        name = str.__str__(key) if issubclass(type(key), str) else None
        if name in names:
            fields[name] = value
        else:
            # Escaped: a snapshot file's field name reaches a terminal in the message.
            unknown.append(printable(safe_repr(key) if name is None else name))
    missing = [name for name in names if name not in fields]
    if missing:
        msg = f"{kind} is missing field(s): {', '.join(missing)}"
        raise ValueError(msg)
    if unknown:
        msg = f"{kind} has no field(s): {', '.join(sorted(unknown))}"
        raise ValueError(msg)
    return fields
