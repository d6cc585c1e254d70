"""The cumulative duration histogram of one node: its bounds and the value object."""

from __future__ import annotations

import itertools
import math
import numbers
import operator

from collections.abc import Iterable, Mapping
from typing import Any, cast

import attrs

from ._validate import MAX_COUNT, check_count, fields_of, int_text, safe_repr, to_real, type_name


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
    # issubclass(type(...)) rather than isinstance(), which would run a
    # __class__ property; type_name() reads the name without running code.
    if type(item) is bool or not issubclass(type(item), numbers.Real):
        msg = f"{name}[{index}] must be a real number, got {type_name(item)}"
        raise TypeError(msg)
    # float.__float__ and int.__float__ read the value without running a
    # subclass's own __float__, which may raise or return anything; only a
    # foreign real number (a Fraction, say) runs its own conversion.
    try:
        if issubclass(type(item), float):
            value = float.__float__(cast("float", item))
        elif issubclass(type(item), int):
            value = int.__float__(cast("int", item))
        else:
            value = float(cast("numbers.Real", item))
    except OverflowError:
        value = math.inf
    except Exception as exc:  # noqa: BLE001 -- a hostile __float__ must not escape unnamed
        msg = f"{name}[{index}] could not be converted to float: {type_name(exc)}"
        raise TypeError(msg) from None
    # value is an exact float from here on: its comparisons are float's own.
    if not math.isfinite(value) or value <= 0.0:
        msg = f"{name}[{index}] must be finite and > 0, got {value!r}"
        raise ValueError(msg)
    return value


def check_buckets(value: object, name: str = "buckets") -> tuple[float, ...]:
    """
    Return *value* as a histogram's upper bounds, or raise naming *name*.

    Bounds are in milliseconds: a non-empty sequence of at most 1,000 finite
    real numbers > 0, strictly increasing. A bound ``b`` holds the durations
    ``d <= b`` that no lower bound holds. The exporters give the bounds in
    seconds, as ``b / 1000``, and every series of a histogram needs its own
    ``le``: so the bounds must also stay > 0 and strictly increasing once
    divided by 1000, which refuses a first bound so small (below about
    ``2.5e-321``) that it becomes 0.0, and two bounds so close (adjacent
    floats, say) that they become the same number of seconds.

    Args:
        value: The bounds, any iterable of real numbers but a str or bytes.
        name: The argument's name, for the error messages.

    Returns:
        The bounds as a tuple of plain floats.

    Raises:
        TypeError: *value* is not an iterable of real numbers (a bool is not
            one), or reading it or converting an item raised.
        ValueError: *value* is empty, too long, not strictly increasing (in
            milliseconds, or in seconds), or holds a bound that is not
            finite and > 0 (in milliseconds, or in seconds).
    """
    if issubclass(type(value), (str, bytes, bytearray)) or not issubclass(type(value), Iterable):
        msg = f"{name} must be a sequence of real numbers, got {type_name(value)}"
        raise TypeError(msg)
    try:
        # One past the limit, so that an endless iterable cannot hang us.
        items = list(itertools.islice(cast("Iterable[object]", value), MAX_BOUNDS + 1))
    except Exception as exc:  # noqa: BLE001 -- a hostile iterable must not escape unnamed
        msg = f"{name} could not be read: {type_name(exc)}"
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
    _check_seconds(name, bounds)
    return tuple(bounds)


def _check_seconds(name: str, bounds: list[float]) -> None:
    # The exporters divide by 1000 (prometheus' le, the multiprocess
    # Histogram's buckets, OpenTelemetry's boundaries): two bounds that are
    # one number of seconds would be two series with the same labels, which
    # a Prometheus server refuses, and a bound of 0.0 s is not > 0.
    seconds = [b / 1000 for b in bounds]
    if seconds[0] <= 0.0:
        msg = (
            f"{name}[0] is too small to tell apart from 0 in seconds: "
            f"{bounds[0]!r} ms is {seconds[0]!r} once divided by 1000"
        )
        raise ValueError(msg)
    for i in range(1, len(seconds)):
        if seconds[i] <= seconds[i - 1]:
            msg = (
                f"{name} must be strictly increasing in seconds too: {bounds[i - 1]!r} "
                f"then {bounds[i]!r} ms at index {i} are too close to tell apart in "
                f"seconds, both {seconds[i]!r} once divided by 1000"
            )
            raise ValueError(msg)


def _counts(value: object) -> tuple[int, ...]:
    if issubclass(type(value), (str, bytes, bytearray)) or not issubclass(type(value), Iterable):
        msg = f"counts must be a sequence of ints, got {type_name(value)}"
        raise TypeError(msg)
    try:
        items = tuple(cast("Iterable[object]", value))
    except Exception as exc:  # noqa: BLE001 -- a hostile iterable must not escape unnamed
        msg = f"counts could not be read: {type_name(exc)}"
        raise TypeError(msg) from None
    # check_count() copies an int subclass to a plain int (operator.index runs
    # none of its code) before comparing it, so that a subclass whose < lies
    # cannot pass for a count >= 0, and only plain ints are stored.
    return tuple(check_count(f"counts[{i}]", item) for i, item in enumerate(items))


def _count(value: object) -> int:
    # As each of counts: a plain int in [0, 2**63 - 1], an int subclass copied to one.
    return check_count("count", value)


def _sum_ms(value: object) -> object:
    # JSON round-trips may turn 3.0 into 3; accept ints but keep bools out.
    # Subclasses are copied with the base type's own slot, so that their
    # __float__ or comparisons never run, here or in the validator.
    # Adding 0.0 turns -0.0 into 0.0, as the collector does.
    if issubclass(type(value), float):
        return float.__float__(cast("float", value)) + 0.0
    if type(value) is not bool and issubclass(type(value), int):
        try:
            return float(operator.index(cast("int", value)))
        except OverflowError:
            return math.inf  # refused by the validator, which names the field
    return value


def _check_sum_ms(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # The converter made every float (and int) an exact float: anything else
    # is not a sum of durations.
    if type(value) is not float:
        msg = f"{attribute.name} must be a float, got {type_name(value)} {safe_repr(value)}"
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
    must have ``len(bounds) + 1`` items summing to ``count``, every count
    is from 0 to ``2**63 - 1`` (what a signed 64-bit integer holds, far
    more than any process records, so that every exporter and JSON reader
    takes it exactly), and an empty histogram has ``sum_ms == 0.0``; a
    ``sum_ms`` of ``-0.0`` is stored as ``0.0``. Only plain values are stored: a count
    of an ``int`` subclass is copied to a plain ``int``, a ``float``
    subclass (or an ``int``) ``sum_ms`` to a plain ``float``, with the base
    type's own slot, so that the subclass's comparisons, which may lie,
    never decide whether a count is >= 0 or a sum finite and >= 0.

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
    count: int = attrs.field(converter=_count)
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

        A subclass of :class:`NodeHistogram` is read through the class's own
        slots and validated again, as its fields may not have been.

        Raises:
            TypeError: *other* is not a :class:`NodeHistogram`, or is an
                instance of a subclass holding a field of the wrong type.
            ValueError: *other* has different bounds, is an instance of a
                subclass holding an invalid field, its count added to
                *self*'s is above ``2**63 - 1``, or its sum of durations
                added to *self*'s is too large for a float (it would be
                ``inf``, which no histogram may hold).
        """
        # issubclass(type(...)) rather than isinstance(), which would run a
        # __class__ property (and believe one that lies).
        if not issubclass(type(other), NodeHistogram):
            msg = f"other must be a NodeHistogram, got {type_name(other)}"
            raise TypeError(msg)
        theirs = _plain(other)
        if theirs.bounds != self.bounds:
            msg = "other has different bounds: histograms merge only with the same bounds"
            raise ValueError(msg)
        count = self.count + theirs.count
        if count > MAX_COUNT:
            msg = f"other cannot be merged: the counts add up to {int_text(count)}, above 2**63 - 1"
            raise ValueError(msg)
        sum_ms = self.sum_ms + theirs.sum_ms
        if sum_ms == math.inf:
            msg = (
                f"other cannot be merged: the sum of both sum_ms, {self.sum_ms!r} + "
                f"{theirs.sum_ms!r}, is too large for a float"
            )
            raise ValueError(msg)
        return _trusted(
            self.bounds,
            tuple(a + b for a, b in zip(self.counts, theirs.counts, strict=True)),
            count,
            sum_ms,
        )

    def __add__(self, other: object) -> NodeHistogram:
        if not issubclass(type(other), NodeHistogram):
            return NotImplemented
        return self.merge(cast("NodeHistogram", other))

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
            TypeError: *q* is not a real number (a bool is not one).
            ValueError: *q* is not in [0, 1], or its own conversion to
                float raised.
        """
        # to_real() gives an exact float, read with the base type's own slot
        # (a subclass whose comparisons lie is compared as its plain value);
        # NaN fails the range check.
        value = to_real(q, "q")
        if not 0.0 <= value <= 1.0:
            msg = f"q must be in [0, 1], got {value!r}"
            raise ValueError(msg)
        if self.count == 0:
            return None
        rank = value * self.count
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


#: The histogram's own slots: reading a field through them runs none of a
#: subclass's code (a property of the same name, say).
_SLOTS = tuple(NodeHistogram.__dict__[name] for name in _FIELD_NAMES)


def _plain(histogram: NodeHistogram) -> NodeHistogram:
    """
    Return *histogram* itself if it is exactly a NodeHistogram, else its validated copy.

    Raises:
        TypeError: A field of the copy has the wrong type or was never set;
            the message names ``other`` (and the field).
        ValueError: A field of the copy is invalid; the message names
            ``other`` and the field.
    """
    if type(histogram) is NodeHistogram:
        return histogram
    # A subclass may override the fields' names or skip validation: read its
    # stored values through NodeHistogram's own slots and validate them anew.
    try:
        fields = [slot.__get__(histogram, NodeHistogram) for slot in _SLOTS]
    except AttributeError:
        # A subclass's __init__ that never set a field leaves its slot empty.
        msg = "other is not a valid NodeHistogram: a field was never set"
        raise TypeError(msg) from None
    try:
        return NodeHistogram(*fields)
    except (TypeError, ValueError) as exc:
        # The field's own message follows, so that the caller learns which.
        error = ValueError if issubclass(type(exc), ValueError) else TypeError
        msg = f"other is not a valid NodeHistogram: {exc}"
        raise error(msg) from None


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
