"""The cumulative duration histogram of one node: its bounds and the value object."""

from __future__ import annotations

import itertools
import math
import numbers

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._validate import fields_of


#: The default upper bounds, in milliseconds: a 1-2.5-5 series from 0.1 ms
#: (a pure function) to 100 s (a long LLM call), 19 bounds, no two adjacent
#: more than 2.5x apart.
DEFAULT_BUCKETS_MS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
)

#: The most bounds a histogram may have: every node keeps one count per
#: bucket, and every scrape writes one series per bucket.
MAX_BOUNDS = 1_000


def _bound(name: str, index: int, item: object) -> float:
    if type(item) is bool or not isinstance(item, numbers.Real):
        msg = f"{name}[{index}] must be a real number, got {type(item).__name__}"
        raise TypeError(msg)
    # float.__float__ and int.__float__ read the value without running a
    # subclass's own __float__, which may raise or return anything.
    try:
        if isinstance(item, float):
            value = float.__float__(item)
        elif isinstance(item, int):
            value = int.__float__(item)
        else:
            value = float(item)
    except OverflowError:
        value = math.inf
    except Exception as exc:  # noqa: BLE001 -- a hostile __float__ must not escape unnamed
        msg = f"{name}[{index}] could not be converted to float: {type(exc).__name__}"
        raise TypeError(msg) from None
    if not math.isfinite(value) or value <= 0.0:
        msg = f"{name}[{index}] must be finite and > 0, got {value!r}"
        raise ValueError(msg)
    return value


def check_buckets(value: object, name: str = "buckets") -> tuple[float, ...]:
    """
    Return *value* as a histogram's upper bounds, or raise naming *name*.

    Bounds are in milliseconds: a non-empty sequence of at most 1,000 finite
    real numbers > 0, strictly increasing. A bound ``b`` holds the durations
    ``d <= b`` that no lower bound holds.

    Args:
        value: The bounds, any iterable of real numbers but a str or bytes.
        name: The argument's name, for the error messages.

    Returns:
        The bounds as a tuple of plain floats.

    Raises:
        TypeError: *value* is not an iterable of real numbers (a bool is not
            one), or reading it or converting an item raised.
        ValueError: *value* is empty, too long, not strictly increasing, or
            holds a bound that is not finite and > 0.
    """
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        msg = f"{name} must be a sequence of real numbers, got {type(value).__name__}"
        raise TypeError(msg)
    try:
        # One past the limit, so that an endless iterable cannot hang us.
        items = list(itertools.islice(value, MAX_BOUNDS + 1))
    except Exception as exc:  # noqa: BLE001 -- a hostile iterable must not escape unnamed
        msg = f"{name} could not be read: {type(exc).__name__}"
        raise TypeError(msg) from None
    if len(items) > MAX_BOUNDS:
        msg = f"{name} must have at most {MAX_BOUNDS} bounds"
        raise ValueError(msg)
    bounds = [_bound(name, i, item) for i, item in enumerate(items)]
    if not bounds:
        msg = f"{name} must not be empty"
        raise ValueError(msg)
    for i in range(1, len(bounds)):
        if bounds[i] <= bounds[i - 1]:
            msg = (
                f"{name} must be strictly increasing, got {bounds[i - 1]!r} "
                f"then {bounds[i]!r} at index {i}"
            )
            raise ValueError(msg)
    return tuple(bounds)


def _counts(value: object) -> tuple[int, ...]:
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        msg = f"counts must be a sequence of ints, got {type(value).__name__}"
        raise TypeError(msg)
    try:
        items = tuple(value)
    except Exception as exc:  # noqa: BLE001 -- a hostile iterable must not escape unnamed
        msg = f"counts could not be read: {type(exc).__name__}"
        raise TypeError(msg) from None
    for i, item in enumerate(items):
        if type(item) is bool or not isinstance(item, int):
            msg = f"counts[{i}] must be an int, got {type(item).__name__}"
            raise TypeError(msg)
        if item < 0:
            msg = f"counts[{i}] must be >= 0, got {item!r}"
            raise ValueError(msg)
    # int.__int__ makes plain ints of int subclasses.
    return tuple(map(int.__int__, items))


def _count(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is bool or not isinstance(value, int):
        msg = f"{attribute.name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)
    if value < 0:
        msg = f"{attribute.name} must be >= 0, got {value!r}"
        raise ValueError(msg)


def _sum_ms(value: object) -> object:
    # JSON round-trips may turn 3.0 into 3; accept ints but keep bools out.
    if type(value) is not bool and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf  # refused by the validator, which names the field
    return value


def _check_sum_ms(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, float):
        msg = f"{attribute.name} must be a float, got {type(value).__name__}"
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0.0:
        msg = f"{attribute.name} must be a finite float >= 0, got {value!r}"
        raise ValueError(msg)


def _check_bounds(value: object) -> tuple[float, ...]:
    return check_buckets(value, "bounds")


@attrs.frozen(weakref_slot=False)
class NodeHistogram:
    """
    The cumulative duration histogram of one node: how many executions fell in each bucket.

    Produced by :meth:`NodeMetricsCollector.get_node_histogram`; immutable.
    It counts every execution (success or failure) since the node's last
    reset, exactly: unlike the rolling window's percentiles it forgets
    nothing, so histograms from many processes or many scrapes can be
    added up. Durations are in milliseconds.

    A duration ``d`` is counted in the first bucket whose upper bound is
    ``>= d`` (bounds are inclusive, like Prometheus' ``le``); ``counts`` has
    one more item than ``bounds``, the last counting durations above the top
    bound.

    Every field is validated at construction, and across fields: ``counts``
    must have ``len(bounds) + 1`` items summing to ``count``, and an empty
    histogram has ``sum_ms == 0.0``.

    Attributes:
        bounds: The buckets' upper bounds, in milliseconds, strictly
            increasing (see :func:`check_buckets`).
        counts: The executions in each bucket (not cumulative).
        count: The executions in all buckets.
        sum_ms: The sum of their durations, in milliseconds; it never
            decreases between two readings of one node (but a reset).

    Raises:
        TypeError: A field has the wrong type; the message names the field.
        ValueError: A field is out of range or disagrees with another; the
            message names it.
    """

    bounds: tuple[float, ...] = attrs.field(converter=_check_bounds)
    counts: tuple[int, ...] = attrs.field(converter=_counts)
    count: int = attrs.field(validator=_count)
    sum_ms: float = attrs.field(converter=_sum_ms, validator=_check_sum_ms)

    def __attrs_post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            msg = (
                f"counts must have len(bounds) + 1 = {len(self.bounds) + 1} items, "
                f"got {len(self.counts)}"
            )
            raise ValueError(msg)
        if sum(self.counts) != self.count:
            msg = f"count must be sum(counts) = {sum(self.counts)}, got {self.count}"
            raise ValueError(msg)
        if self.count == 0 and self.sum_ms != 0.0:
            msg = f"sum_ms must be 0.0 when count is 0, got {self.sum_ms!r}"
            raise ValueError(msg)

    @classmethod
    def empty(cls, bounds: Iterable[float] = DEFAULT_BUCKETS_MS) -> NodeHistogram:
        """
        Return the histogram of no execution, with *bounds*.

        Raises:
            TypeError: *bounds* is not a sequence of real numbers.
            ValueError: *bounds* is not valid (see :func:`check_buckets`).
        """
        bounds = _check_bounds(bounds)
        return cls(bounds, (0,) * (len(bounds) + 1), 0, 0.0)

    def merge(self, other: NodeHistogram) -> NodeHistogram:
        """
        Return the histogram of both *self*'s and *other*'s executions.

        Also spelled ``self + other``. Counts add exactly; sums add as floats.

        Raises:
            TypeError: *other* is not a :class:`NodeHistogram`.
            ValueError: *other* has different bounds.
        """
        if not isinstance(other, NodeHistogram):
            msg = f"other must be a NodeHistogram, got {type(other).__name__}"
            raise TypeError(msg)
        if other.bounds != self.bounds:
            msg = "other has different bounds: histograms merge only with the same bounds"
            raise ValueError(msg)
        return _trusted(
            self.bounds,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.count + other.count,
            self.sum_ms + other.sum_ms,
        )

    def __add__(self, other: object) -> NodeHistogram:
        if not isinstance(other, NodeHistogram):
            return NotImplemented
        return self.merge(other)

    def cumulative(self) -> tuple[int, ...]:
        """
        Return the running totals of :attr:`counts`, as Prometheus' ``le`` buckets count.

        Returns:
            ``len(bounds) + 1`` counts: item ``i`` counts the durations
            ``<= bounds[i]``; the last is :attr:`count` (``le="+Inf"``).
        """
        total = 0
        running = []
        for c in self.counts:
            total += c
            running.append(total)
        return tuple(running)

    def quantile(self, q: float) -> float | None:
        """
        Estimate the *q*-quantile of the durations, as PromQL's ``histogram_quantile`` does.

        This is an estimate, only as fine as the buckets: it finds the bucket
        holding the quantile and interpolates linearly inside it, taking the
        lowest bucket to start at 0. A quantile above the top bound is
        reported as the top bound. ``q = 0`` gives the lower edge of the
        first non-empty bucket.

        Args:
            q: The quantile, in [0, 1].

        Returns:
            The estimate in milliseconds, or ``None`` when the histogram is
            empty.

        Raises:
            TypeError: *q* is not a real number.
            ValueError: *q* is not in [0, 1].
        """
        if type(q) is bool or not isinstance(q, numbers.Real):
            msg = f"q must be a real number, got {type(q).__name__}"
            raise TypeError(msg)
        if not 0.0 <= q <= 1.0:
            msg = f"q must be in [0, 1], got {q!r}"
            raise ValueError(msg)
        if self.count == 0:
            return None
        rank = float(q) * self.count
        bounds = self.bounds
        below = 0
        for i, upper in enumerate(bounds):
            here = self.counts[i]
            if here and below + here >= rank:
                lower = bounds[i - 1] if i else 0.0
                return lower + (upper - lower) * ((rank - below) / here)
            below += here
        return bounds[-1]

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> NodeHistogram:
        """
        Build and validate a histogram from a plain mapping.

        The inverse of :meth:`to_dict`: ``NodeHistogram.from_dict(h.to_dict())
        == h``.

        Args:
            mapping: Exactly the fields of :class:`NodeHistogram`, by name.

        Returns:
            The validated histogram.

        Raises:
            TypeError: *mapping* is not a mapping, or a field has the wrong type.
            ValueError: A field is missing, unknown or invalid.
        """
        return cls(**fields_of("NodeHistogram", _FIELD_NAMES, mapping))

    def to_dict(self) -> dict[str, Any]:
        """
        Return the histogram as a plain, JSON-ready dict.

        Returns:
            ``{"bounds": [...], "counts": [...], "count": int, "sum_ms": float}``.
        """
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "count": self.count,
            "sum_ms": self.sum_ms,
        }


_FIELD_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(NodeHistogram))

_new = object.__new__
_set = object.__setattr__


def _trusted(
    bounds: tuple[float, ...], counts: tuple[int, ...], count: int, sum_ms: float
) -> NodeHistogram:
    """Build a histogram from values already known valid, without validating them again."""
    histogram: NodeHistogram = _new(NodeHistogram)
    _set(histogram, "bounds", bounds)
    _set(histogram, "counts", counts)
    _set(histogram, "count", count)
    _set(histogram, "sum_ms", sum_ms)
    return histogram
