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
raises becomes the documented error.
"""

from __future__ import annotations

import math
import numbers
import operator

from typing import Any

import attrs

from ._classify import ErrorCategory
from ._log import log


#: The largest duration accepted, in milliseconds (about 31,700 years): any
#: sum of durations a process can record stays finite.
MAX_DURATION_MS = 1e15

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
    if not isinstance(node, str):
        msg = f"{argument} must be a str, got {_type_name(node)}"
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
    if type(value) is bool or not isinstance(value, numbers.Real):
        msg = f"{argument} must be a real number, got {_type_name(value)}"
        raise TypeError(msg)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        value = operator.index(value)
    try:
        number = float(value)
    except Exception as exc:  # noqa: BLE001 -- a foreign number's conversion may raise anything
        msg = f"{argument} must be convertible to float, got {_type_name(value)} ({exc!r})"
        raise ValueError(msg) from None
    if type(number) is not float:
        msg = f"{argument} must be convertible to float, got {_type_name(value)}"
        raise TypeError(msg)
    return number


def to_duration(node: str, value: object) -> float:
    """
    Return *value* as a duration in ms: a float in [0, MAX_DURATION_MS].

    A negative duration is recorded as 0.0 and logged as a warning.

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
        log(
            "WARNING",
            "nodemetrics.negative_duration: node {name!r} got duration_ms={value!r}; "
            "recorded as 0.0",
            node=node,
            name=node,
            value=duration,
        )
        return 0.0
    # The fast paths send 0.0 here too: +0.0 turns a -0.0 into 0.0, so that
    # no snapshot shows "-0.0".
    return duration + 0.0


def category_index(category: object) -> int:
    """
    Return the index of *category* in :data:`CATEGORIES`.

    Raises:
        ValueError: *category* is not an :class:`ErrorCategory` or its string.
    """
    if isinstance(category, str):
        # ErrorCategory members and str subclasses alike: look up an exact
        # copy, so that a subclass's __hash__ and __eq__ never run.
        index = CATEGORY_INDEX.get(str.__str__(category))
        if index is not None:
            return index
    names = ", ".join(repr(c.value) for c in CATEGORIES)
    msg = f"category must be an ErrorCategory or one of {names}, got {_safe_repr(category)}"
    raise ValueError(msg)


def check_int(argument: str, value: object, minimum: int) -> int:
    """
    Return *value* as an exact int >= *minimum*.

    Raises:
        TypeError: *value* is not an int (a bool is not one).
        ValueError: *value* < *minimum*.
    """
    if type(value) is bool or not isinstance(value, int):
        msg = f"{argument} must be an int, got {_type_name(value)}"
        raise TypeError(msg)
    number = operator.index(value)
    if number < minimum:
        msg = f"{argument} must be >= {minimum}, got {number!r}"
        raise ValueError(msg)
    return number


def optional_real(argument: str, value: object, upper: float) -> float | None:
    """
    Return *value* as a float in [0, *upper*], or ``None``.

    Raises:
        TypeError: *value* is neither ``None`` nor a real number.
        ValueError: *value* is out of range or not finite.
    """
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, numbers.Real):
        msg = f"{argument} must be a real number or None, got {_type_name(value)}"
        raise TypeError(msg)
    number = to_real(value, argument)
    if not 0.0 <= number <= upper or not math.isfinite(number):
        bound = f"in [0, {upper:g}]" if math.isfinite(upper) else "finite and >= 0"
        msg = f"{argument} must be {bound}, got {number!r}"
        raise ValueError(msg)
    return number


def optional_callable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Check, as an attrs validator, that *value* is ``None`` or callable."""
    if value is not None and not callable(value):
        msg = f"{attribute.name} must be callable or None, got {_type_name(value)}"
        raise TypeError(msg)


def _type_name(value: object) -> str:
    # type() cannot be fooled by a __class__ property, and a type's name is
    # a plain slot.
    return type.__dict__["__name__"].__get__(type(value))  # type: ignore[no-any-return]


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 -- a hostile __repr__ must not replace our error
        return f"<{_type_name(value)} object>"
