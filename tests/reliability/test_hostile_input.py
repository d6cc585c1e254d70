"""Guarantee 6: any input is recorded, or refused naming the argument and changing nothing."""

from __future__ import annotations

import contextlib
import decimal
import fractions
import json
import math
import re

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from nodemetrics import (
    ErrorCategory,
    NodeHistogram,
    NodeMetrics,
    NodeMetricsCollector,
    classify_error,
    format_table,
    metered,
)


class Weird:
    def __repr__(self):
        return "<Weird>"


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.floats(),
    st.complex_numbers(),
    st.text(),
    st.binary(),
    st.fractions(),
    st.decimals(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.sampled_from(
        [
            *ErrorCategory,
            "timeout",
            "TIMEOUT",
            "",
            Weird(),
            object(),
            TimeoutError(),
            KeyboardInterrupt(),
            type,
            print,
            math.nan,
            math.inf,
            -0.0,
            fractions.Fraction(10**400, 3),
            decimal.Decimal("NaN"),
        ]
    ),
)
names = st.text(min_size=1) | st.text(min_size=1_000, max_size=5_000)
durations = st.floats(min_value=0, max_value=1e9, allow_nan=False) | st.integers(0, 10**9)

# The recording methods and, for each argument, a valid value for when it is
# not the one under attack.
CALLS = {
    "record_success": {"node": "n", "duration_ms": 1.0},
    "record_failure": {"node": "n", "duration_ms": 1.0, "error": None, "category": None},
    "record_retry": {"node": "n", "attempt_number": None},
    "record_cancellation": {"node": "n"},
    "record_interruption": {"node": "n"},
    "get_node_metrics": {"node": "n"},
    "reset_node_metrics": {"node": "n"},
    "track": {"node": "n"},
    "retry_hook": {"node": "n"},
}
TARGETS = [(method, arg) for method, args in CALLS.items() for arg in args]

quiet = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def _no_log_spam():
    logger.disable("nodemetrics")
    yield
    logger.enable("nodemetrics")


def seeded() -> NodeMetricsCollector:
    c = NodeMetricsCollector(
        window_size=5,
        min_samples=1,
        failure_rate_threshold=0.5,
        on_failure_rate_threshold=lambda node, rate: None,
    )
    c.record_success("n", 3.0)
    c.record_failure("n", 4.0, TimeoutError())
    c.record_retry("other")
    return c


def names_the(argument: str, error: Exception) -> bool:
    """Whether the error's message begins with the argument's name, as every refusal does."""
    return re.match(rf"{re.escape(argument)}\b", str(error)) is not None


FIELDS = {"timeout": "timeout_errors", "validation": "validation_errors"}
FIELDS |= {"network": "network_errors", "other": "other_errors"}


def expected_after(method: str, kwargs: dict, before: dict) -> dict:
    """What to_dict() must say after an accepted call of *method* with *kwargs*."""
    after = json.loads(json.dumps(before))
    node = kwargs["node"]
    if method in {"get_node_metrics", "track", "retry_hook"}:
        return after  # reading, or making a tracker or hook, records nothing
    if method == "reset_node_metrics":
        if node is None:
            return {}  # None resets every node
        after.pop(node, None)
        return after
    m = after.setdefault(node, NodeMetrics().to_dict())
    not_executions = {
        "record_retry": "retry_count",
        "record_cancellation": "cancelled_count",
        "record_interruption": "interrupted_count",
    }
    if method in not_executions:
        m[not_executions[method]] += 1
        return after
    duration = max(float(kwargs["duration_ms"]), 0.0) + 0.0
    m["total_executions"] += 1
    m["last_execution_ms"] = duration
    if method == "record_success":
        m["success_count"] += 1
    else:
        m["failure_count"] += 1
        error, category = kwargs["error"], kwargs["category"]
        if category is None:
            category = "other" if error is None else classify_error(error)
        m[FIELDS[str(category)]] += 1
    return after


def counts(d: dict) -> dict:
    """The snapshot without the fields that depend on the window's arithmetic."""
    skip = {"p50", "p90", "p99", "avg_execution_ms"}
    return {n: {k: v for k, v in m.items() if k not in skip} for n, m in d.items()}


class TestRecordingArguments:
    @pytest.mark.parametrize(("method", "argument"), TARGETS)
    @quiet
    @given(value=anything)
    def test_recorded_or_refused_unchanged(self, method, argument, value):
        """
        Each argument of each method: refused with an error whose message
        begins with the argument's name, changing nothing; or accepted, and
        then recorded exactly as a valid call would be.
        """
        c = seeded()
        before = c.to_dict()
        kwargs = {**CALLS[method], argument: value}
        try:
            result = getattr(c, method)(**kwargs)
        except (TypeError, ValueError) as e:
            assert names_the(argument, e), str(e)
            assert before == c.to_dict()
            return
        assert counts(expected_after(method, kwargs, before)) == counts(c.to_dict())
        if method == "get_node_metrics":
            assert before.get(kwargs["node"], NodeMetrics().to_dict()) == result.to_dict()
        elif method == "track":
            with result:
                pass
            node = kwargs["node"]
            was = before.get(node, {"success_count": 0})["success_count"]
            assert 1 + was == c.get_node_metrics(node).success_count
        elif method == "retry_hook":
            assert callable(result)

    @quiet
    @given(node=names, duration=durations)
    def test_any_unicode_name_round_trips(self, node, duration):
        """Any non-empty str is a node name, and to_json() of it round-trips."""
        c = NodeMetricsCollector()
        c.record_success(node, duration)
        c.record_failure(node, duration, ValueError())
        assert [node] == list(c.get_all_node_metrics())
        back = json.loads(c.to_json())
        assert c.to_dict() == back
        assert c.get_node_metrics(node) == NodeMetrics.from_dict(back[node])


OPTIONS = [
    "window_size",
    "classifier",
    "failure_rate_threshold",
    "latency_threshold_ms",
    "on_failure_rate_threshold",
    "on_latency_threshold",
    "min_samples",
    "max_nodes",
]


class TestConstructors:
    @pytest.mark.parametrize("option", OPTIONS)
    @quiet
    @given(value=anything)
    def test_collector_options(self, option, value):
        """Every option: a working collector, or an error naming the option."""
        try:
            c = NodeMetricsCollector(**{option: value})
        except (TypeError, ValueError) as e:
            assert names_the(option, e), str(e)
        else:
            kept = getattr(c, option)
            # Kept as given, or as the plain int it equals, or the float
            # float() makes of it (a threshold is compared as a float).
            assert kept is value or (type(kept) in (int, float) and kept == type(kept)(value))
            c.record_success("n", 1.0)
            assert 1 == c.get_node_metrics("n").total_executions

    @pytest.mark.parametrize("field", list(NodeMetrics().to_dict()))
    @quiet
    @given(value=anything)
    def test_node_metrics_fields(self, field, value):
        """Every NodeMetrics field: a valid snapshot, or an error naming the field."""
        try:
            m = NodeMetrics(**{field: value})
        except (TypeError, ValueError) as e:
            # A value of the right kind that contradicts the other fields (a
            # count of 1 with no execution) is refused naming both sides.
            assert names_the(field, e) or field in str(e), str(e)
        else:
            assert value == getattr(m, field)
            assert m == NodeMetrics.from_dict(json.loads(json.dumps(m.to_dict())))

    @quiet
    @given(mapping=anything | st.dictionaries(st.text(max_size=20), anything, max_size=16))
    def test_from_dict(self, mapping):
        """from_dict of anything: a snapshot, or a TypeError/ValueError."""
        with contextlib.suppress(TypeError, ValueError):
            NodeMetrics.from_dict(mapping)

    @quiet
    @given(name=anything, collector=anything)
    def test_metered_arguments(self, name, collector):
        """metered(): a decorator, or an error naming 'name' or 'collector'."""
        try:
            decorator = metered(name, collector=collector)
        except (TypeError, ValueError) as e:
            assert names_the("name", e) or names_the("collector", e), str(e)
        else:
            if callable(name):
                return
            c = NodeMetricsCollector()
            assert 3 == metered(name, collector=c)(lambda: 3)()
            assert callable(decorator)

    @quiet
    @given(value=anything)
    def test_classify_error(self, value):
        """classify_error of a non-exception is a TypeError naming 'exc'."""
        try:
            category = classify_error(value)
        except TypeError as e:
            assert names_the("exc", e), str(e)
        else:
            assert category in ErrorCategory


class TestClassifierResults:
    @quiet
    @given(result=anything)
    def test_any_classifier_result_is_recorded(self, result):
        """Whatever a classifier returns, the failure is recorded and categorized."""
        c = NodeMetricsCollector(classifier=lambda exc: result)
        c.record_failure("n", 1.0, ConnectionResetError())
        m = c.get_node_metrics("n")
        assert 1 == m.failure_count
        valid = result is not None and str(result) in {c.value for c in ErrorCategory}
        valid = valid and isinstance(result, str)
        if not valid:
            assert 1 == m.network_errors  # classify_error decided


class _RaisingPair:
    def __iter__(self):
        raise RuntimeError("the item's own code ran")


def _mapping_of(items):
    class Items(dict):
        def items(self):
            return items

    return Items()


class TestMappingItems:
    @pytest.mark.parametrize(
        "items",
        [[(1, 2, 3)], [5], [_RaisingPair()], [("a",)], ["ab"], [b"ab"], [{"a": 1, "b": 2}]],
        ids=[
            "three values",
            "not iterable",
            "iteration raises",
            "one value",
            "str",
            "bytes",
            "dict",
        ],
    )
    @pytest.mark.parametrize(
        ("read", "argument"),
        [
            (NodeMetrics.from_dict, "mapping"),
            (NodeHistogram.from_dict, "mapping"),
            (format_table, "metrics"),
        ],
        ids=["NodeMetrics.from_dict", "NodeHistogram.from_dict", "format_table"],
    )
    def test_items_that_are_not_pairs(self, items, read, argument):
        """A mapping whose items() yields something but (key, value) pairs is refused by name."""
        with pytest.raises(TypeError) as info:
            read(_mapping_of(items))
        assert names_the(argument, info.value), str(info.value)
