"""The immutable snapshot of one node's metrics."""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping
from typing import Any

import attrs


def _count(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is bool or not isinstance(value, int):
        msg = f"{attribute.name} must be an int, got {value!r}"
        raise TypeError(msg)
    if value < 0:
        msg = f"{attribute.name} must be >= 0, got {value!r}"
        raise ValueError(msg)


def _to_float(value: object) -> object:
    # JSON round-trips may turn 3.0 into 3; accept ints but keep bools out.
    if type(value) is not bool and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return value  # refused by the validator, which knows the field's name
    return value


def _duration(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name != "avg_execution_ms":
        return
    if not isinstance(value, float):
        msg = f"{attribute.name} must be a float, got {value!r}"
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

    Every field is validated at construction: counts are non-negative ints (a
    bool is not a count), durations non-negative finite floats (``None`` where
    there is no sample yet).

    Raises:
        TypeError: A field has the wrong type; the message names the field.
        ValueError: A field is negative or not finite; the message names it.
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
            TypeError: *mapping* is not a mapping, or a field has the wrong type.
            ValueError: A field is missing, unknown, negative or not finite.
        """
        if not isinstance(mapping, Mapping):
            msg = f"mapping must be a mapping, got {type(mapping).__name__}"
            raise TypeError(msg)
        missing = [name for name in _FIELD_NAMES if name not in mapping]
        if missing:
            msg = f"NodeMetrics is missing field(s): {', '.join(missing)}"
            raise ValueError(msg)
        unknown = sorted(str(key) for key in mapping if key not in _FIELD_SET)
        if unknown:
            msg = f"NodeMetrics has no field(s): {', '.join(unknown)}"
            raise ValueError(msg)
        return cls(**{name: mapping[name] for name in _FIELD_NAMES})

    def to_dict(self) -> dict[str, int | float | None]:
        """
        Return the snapshot as a plain, JSON-ready dict, fields in order.

        Returns:
            A fresh dict of field name to value.
        """
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(NodeMetrics))

#: The failure-count field of each category, in ErrorCategory's order.
FAILURE_FIELDS: tuple[tuple[str, str], ...] = (
    ("timeout", "timeout_errors"),
    ("validation", "validation_errors"),
    ("network", "network_errors"),
    ("other", "other_errors"),
)
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
