"""The immutable snapshot of one node's metrics."""

from __future__ import annotations

import math
import operator

from collections.abc import Callable, Mapping
from typing import Any, cast

import attrs

from ._validate import check_count_bound, fields_of, safe_repr, type_name


def _count(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Exactly int: a bool is no count, and an int subclass's own __lt__,
    # __eq__ or __hash__ would run here and in every comparison of the snapshot.
    if type(value) is not int:
        msg = f"{attribute.name} must be an int, got {type_name(value)} {safe_repr(value)}"
        raise TypeError(msg)
    if value < 0:
        msg = f"{attribute.name} must be >= 0, got {safe_repr(value)}"
        raise ValueError(msg)
    check_count_bound(attribute.name, value)


def _to_float(value: object) -> object:
    # JSON round-trips may turn 3.0 into 3; accept ints but keep bools out.
    # Subclasses are copied with the base type's own slot, so that their
    # __float__, __lt__ or __eq__ never runs. Adding 0.0 turns -0.0 into 0.0,
    # as the collector does, so that no snapshot shows "-0.0".
    if type(value) is float:
        return value + 0.0
    if issubclass(type(value), float):
        return float.__float__(cast("float", value)) + 0.0
    if type(value) is not bool and issubclass(type(value), int):
        number = operator.index(cast("int", value))
        try:
            return float(number)
        except OverflowError:
            return number  # refused by the validator, which knows the field's name
    return value


def _duration(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name != "avg_execution_ms":
        return
    if type(value) is not float:
        msg = f"{attribute.name} must be a float, got {type_name(value)} {safe_repr(value)}"
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0.0:
        msg = f"{attribute.name} must be a finite float >= 0, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(weakref_slot=False)
class NodeMetrics:
    """
    A point-in-time snapshot of one node's metrics.

    Produced by :meth:`NodeMetricsCollector.get_node_metrics`; immutable, so it
    can be kept, compared and passed between threads freely. Durations are in
    milliseconds. ``total_executions == success_count + failure_count``;
    retries, cancellations and interruptions (a LangGraph node that paused
    at ``interrupt()``) are counted apart because they are not executions.
    The percentiles are over the collector's rolling window, the other
    numbers over the node's whole life since its last reset.

    Every field is validated at construction: counts are ints from 0 to
    ``2**63 - 1`` (what a signed 64-bit integer holds, far more than any
    process records, so that every exporter and JSON reader takes them
    exactly; a bool or other subclass of int is not a count), durations
    non-negative finite floats (an int is accepted and stored as a float,
    ``-0.0`` as ``0.0``; ``None`` where there is no sample yet). Then the
    snapshot must be one a collector can produce:

    - ``total_executions == success_count + failure_count``;
    - ``timeout_errors + validation_errors + network_errors + other_errors
      == failure_count``;
    - ``p50 <= p90 <= p99``;
    - with no execution, ``last_execution_ms`` and the percentiles are
      ``None`` and ``avg_execution_ms`` is 0.0; with one or more, the last
      duration and the percentiles are all set (the average may still be
      0.0: executions can take 0 ms).

    Raises:
        TypeError: A field has the wrong type; the message names the field.
        ValueError: A field is negative, a count above ``2**63 - 1``, a
            duration not finite, or the fields contradict each other; the
            message names them.
    """

    total_executions: int = attrs.field(default=0, validator=_count)
    success_count: int = attrs.field(default=0, validator=_count)
    failure_count: int = attrs.field(default=0, validator=_count)
    retry_count: int = attrs.field(default=0, validator=_count)
    last_execution_ms: float | None = attrs.field(
        default=None, converter=_to_float, validator=_duration
    )
    avg_execution_ms: float = attrs.field(default=0.0, converter=_to_float, validator=_duration)
    p50: float | None = attrs.field(default=None, converter=_to_float, validator=_duration)
    p90: float | None = attrs.field(default=None, converter=_to_float, validator=_duration)
    p99: float | None = attrs.field(default=None, converter=_to_float, validator=_duration)
    timeout_errors: int = attrs.field(default=0, validator=_count)
    validation_errors: int = attrs.field(default=0, validator=_count)
    network_errors: int = attrs.field(default=0, validator=_count)
    other_errors: int = attrs.field(default=0, validator=_count)
    cancelled_count: int = attrs.field(default=0, validator=_count)
    interrupted_count: int = attrs.field(default=0, validator=_count)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> NodeMetrics:
        """
        Build and validate a snapshot from a plain mapping.

        The inverse of :meth:`to_dict`: ``NodeMetrics.from_dict(m.to_dict())
        == m``.

        Args:
            mapping: Exactly the fields of :class:`NodeMetrics`, by name.

        Returns:
            The validated snapshot.

        Raises:
            TypeError: *mapping* is not a mapping (or reading it raised), or a
                field has the wrong type.
            ValueError: A field is missing, unknown, negative, too large (a
                count above ``2**63 - 1``) or not finite.
        """
        return cls(**fields_of("NodeMetrics", _FIELD_NAMES, mapping))

    def to_dict(self) -> dict[str, int | float | None]:
        """
        Return the snapshot as a plain, JSON-ready dict, fields in order.

        Returns:
            A fresh dict of field name to value.
        """
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    # -- invariants: what every collector snapshot satisfies ------------------

    def __attrs_post_init__(self) -> None:
        # Runs after every field's own validator, so all are exact ints and
        # floats here. The collector builds its snapshots without this (see
        # unfrozen_metrics); tests check that they would all pass it.
        total = self.total_executions
        executions = self.success_count + self.failure_count
        if total != executions:
            msg = (
                f"total_executions must equal success_count + failure_count "
                f"({safe_repr(executions)}), got {safe_repr(total)}"
            )
            raise ValueError(msg)
        categories = (
            self.timeout_errors + self.validation_errors + self.network_errors + self.other_errors
        )
        if categories != self.failure_count:
            msg = (
                f"timeout_errors + validation_errors + network_errors + other_errors "
                f"must equal failure_count ({safe_repr(self.failure_count)}), "
                f"got {safe_repr(categories)}"
            )
            raise ValueError(msg)
        samples = (
            ("last_execution_ms", self.last_execution_ms),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
        )
        for name, value in samples:
            if (value is None) != (total == 0):
                state = "None" if total == 0 else "set"
                msg = f"{name} must be {state} when total_executions is {safe_repr(total)}"
                raise ValueError(msg)
        if total == 0 and self.avg_execution_ms != 0.0:
            msg = (
                "avg_execution_ms must be 0.0 when total_executions is 0, "
                f"got {self.avg_execution_ms!r}"
            )
            raise ValueError(msg)
        if total and not self.p50 <= self.p90 <= self.p99:  # type: ignore[operator]
            msg = f"p50 <= p90 <= p99 must hold, got {self.p50!r}, {self.p90!r}, {self.p99!r}"
            raise ValueError(msg)


_FIELD_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(NodeMetrics))

#: The failure-count field of each category, in ErrorCategory's order.
FAILURE_FIELDS: tuple[tuple[str, str], ...] = (
    ("timeout", "timeout_errors"),
    ("validation", "validation_errors"),
    ("network", "network_errors"),
    ("other", "other_errors"),
)
#: The count fields, in the order the table shows them: the executions, by
#: outcome, by failure category, then retries, cancellations, interruptions.
COUNT_FIELDS: tuple[str, ...] = (
    "total_executions",
    "success_count",
    "failure_count",
    *(field for _, field in FAILURE_FIELDS),
    "retry_count",
    "cancelled_count",
    "interrupted_count",
)
#: A snapshot's counts, as a tuple in the order of :data:`COUNT_FIELDS`.
counts_of: Callable[[NodeMetrics], tuple[int, ...]] = operator.attrgetter(*COUNT_FIELDS)
#: Each percentile field with its quantile as exporters label it.
QUANTILE_FIELDS: tuple[tuple[str, str], ...] = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
_FIELD_SET = frozenset(_FIELD_NAMES)

EMPTY = NodeMetrics()


#: ``unfrozen_metrics()`` makes an empty, mutable twin of NodeMetrics, for
#: the collector to build a snapshot without validation: on every read of a
#: changed node, 15 validators and 15 calls through the frozen __setattr__
#: would triple the cost of the read. The twin has the same slots, so plain
#: attribute stores fill it; the builder must set every field and then assign
#: ``__class__ = NodeMetrics``, which CPython allows because the layouts are
#: identical (and is why NodeMetrics has no weakref slot).
unfrozen_metrics: Callable[[], Any] = type("UnfrozenNodeMetrics", (), {"__slots__": _FIELD_NAMES})
