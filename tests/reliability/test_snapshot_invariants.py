"""Issue 10, items 6 and 9: every snapshot is valid JSON and never contradicts itself."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from nodemetrics import ErrorCategory, NodeMetrics, NodeMetricsCollector, _tracker


#: The largest duration a collector accepts, in ms (``_validate.MAX_DURATION_MS``).
MAX_MS = 1e15


def refuse_constant(name: str) -> float:
    """A ``json.loads`` parse_constant that refuses NaN and the infinities."""
    msg = f"not JSON: {name}"
    raise ValueError(msg)


def strict_json(text: str) -> Any:
    """Parse *text* as standard JSON, which has no NaN or Infinity."""
    return json.loads(text, parse_constant=refuse_constant)


@pytest.fixture(autouse=True)
def _quiet():
    logger.disable("nodemetrics")
    yield
    logger.enable("nodemetrics")


def ran(total: int = 3, failures: int = 1, **fields: object) -> dict[str, object]:
    """The fields of a consistent snapshot of *total* executions, overridden by *fields*."""
    base: dict[str, object] = {
        "total_executions": total,
        "success_count": total - failures,
        "failure_count": failures,
        "retry_count": 0,
        "last_execution_ms": 2.0,
        "avg_execution_ms": 2.0,
        "p50": 1.0,
        "p90": 2.0,
        "p99": 3.0,
        "timeout_errors": failures,
        "validation_errors": 0,
        "network_errors": 0,
        "other_errors": 0,
        "cancelled_count": 0,
        "interrupted_count": 0,
    }
    return {**base, **fields}


def empty(**fields: object) -> dict[str, object]:
    """The fields of the empty snapshot, overridden by *fields*."""
    return {**NodeMetrics().to_dict(), **fields}


# Each self-contradiction, with the fields its message must name.
CONTRADICTIONS = {
    "total_above_sum": (ran(total=5, success_count=1), ["total_executions", "success_count"]),
    "total_below_sum": (ran(total=1, success_count=3), ["total_executions", "failure_count"]),
    "categories_past_failures": (ran(other_errors=2), ["other_errors", "failure_count"]),
    "categories_short_of_failures": (ran(timeout_errors=0), ["timeout_errors", "failure_count"]),
    "p50_above_p99": (ran(p50=9.0), ["p50", "p99"]),
    "p90_above_p99": (ran(p90=3.5), ["p90", "p99"]),
    "p50_above_p90": (ran(p50=2.5), ["p50", "p90"]),
    "p50_set_without_executions": (empty(p50=1.0), ["p50", "total_executions"]),
    "p99_set_without_executions": (empty(p99=1.0), ["p99", "total_executions"]),
    "last_set_without_executions": (empty(last_execution_ms=1.0), ["last_execution_ms"]),
    "avg_set_without_executions": (empty(avg_execution_ms=1.0), ["avg_execution_ms"]),
    "p90_missing_with_executions": (ran(p90=None), ["p90", "total_executions"]),
    "last_missing_with_executions": (ran(last_execution_ms=None), ["last_execution_ms"]),
    "failures_without_executions": (empty(failure_count=1, other_errors=1), ["total_executions"]),
}


class TestInvariants:
    @pytest.mark.parametrize("case", list(CONTRADICTIONS))
    def test_from_dict_refuses(self, case):
        """from_dict() of a self-contradicting snapshot is a ValueError naming the fields."""
        fields, names = CONTRADICTIONS[case]
        with pytest.raises(ValueError) as info:
            NodeMetrics.from_dict(fields)
        for name in names:
            assert name in str(info.value)

    @pytest.mark.parametrize("case", list(CONTRADICTIONS))
    def test_constructor_refuses(self, case):
        """NodeMetrics(...) refuses the same snapshots as from_dict()."""
        fields, names = CONTRADICTIONS[case]
        with pytest.raises(ValueError, match=names[0]):
            NodeMetrics(**fields)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "fields",
        [
            empty(),
            ran(),
            ran(total=1, failures=0, p50=0.0, p90=0.0, p99=0.0, last_execution_ms=0.0),
            ran(p50=2.0, p90=2.0, p99=2.0),
            # Executions of 0 ms leave the average at 0.0: 0.0 is "empty" only
            # when there was no execution.
            ran(avg_execution_ms=0.0, last_execution_ms=0.0, p50=0.0, p90=0.0, p99=0.0),
            empty(retry_count=4, cancelled_count=2),
        ],
    )
    def test_consistent_accepted(self, fields):
        """A snapshot a collector can produce is accepted and round-trips."""
        m = NodeMetrics.from_dict(fields)
        assert fields == m.to_dict()

    def test_zero_duration_executions_snapshot(self):
        """A collector's snapshot of 0 ms executions (avg 0.0, total > 0) is valid."""
        c = NodeMetricsCollector()
        c.record_success("n", 0.0)
        c.record_failure("n", -1.0)  # recorded as 0.0
        m = c.get_node_metrics("n")
        assert (2, 0.0, 0.0) == (m.total_executions, m.avg_execution_ms, m.p99)
        assert m == NodeMetrics.from_dict(m.to_dict())


class TestCommandLine:
    @pytest.mark.parametrize(
        "case", ["total_above_sum", "p50_above_p99", "p50_set_without_executions"]
    )
    def test_show_refuses_contradiction(self, tmp_path, case):
        """`show` of a contradicting snapshot: exit status 2, one line, no traceback."""
        path = tmp_path / "snapshot.json"
        path.write_text(json.dumps({"fetch": CONTRADICTIONS[case][0]}))
        result = subprocess.run(  # noqa: S603 -- our own interpreter and module
            [sys.executable, "-m", "nodemetrics", "show", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 2 == result.returncode
        assert "" == result.stdout
        assert 1 == len(result.stderr.strip().splitlines())
        assert "Traceback" not in result.stderr
        assert CONTRADICTIONS[case][1][0] in result.stderr


class TestHugeDurations:
    @pytest.mark.parametrize("value", [1e308, 1e15 * (1 + 2**-52), 10**16, math.inf, 2**1024])
    def test_above_cap_refused(self, value):
        """A duration above 1e15 ms is a ValueError naming duration_ms, and changes nothing."""
        c = NodeMetricsCollector()
        c.record_success("n", 2.0)
        before = c.to_json()
        for record in (c.record_success, c.record_failure):
            with pytest.raises(ValueError, match="duration_ms"):
                record("n", value)
        assert before == c.to_json()

    def test_two_huge_durations(self):
        """The issue's case: record_success("n", 1e308) twice is refused; JSON stays JSON."""
        c = NodeMetricsCollector()
        for _ in range(2):
            with pytest.raises(ValueError, match="duration_ms"):
                c.record_success("n", 1e308)
        c.record_success("n", 1.0)
        m = NodeMetrics.from_dict(strict_json(c.to_json())["n"])
        assert (1, 1.0) == (m.total_executions, m.avg_execution_ms)

    @pytest.mark.parametrize("count", [2, 3, 1000])
    def test_largest_accepted_stay_json(self, count):
        """Many durations of exactly 1e15 ms: valid JSON, and from_dict takes the snapshot back."""
        c = NodeMetricsCollector(window_size=7)
        for i in range(count):
            c.record_success("n", MAX_MS)
            c.record_failure("n", MAX_MS, TimeoutError() if i % 2 else None)
        with c.track("n"):
            pass
        data = strict_json(c.to_json())
        m = NodeMetrics.from_dict(data["n"])
        assert m == c.get_node_metrics("n")
        assert 2 * count + 1 == m.total_executions
        assert math.isfinite(m.avg_execution_ms)
        assert MAX_MS == m.p99


# -- every snapshot a collector produces passes the validated constructor -------

NODES = st.sampled_from(["a", "b", "c", "d"])
DURATIONS = (
    st.floats(min_value=-1.0, max_value=MAX_MS, allow_nan=False)
    | st.sampled_from([0.0, -0.0, 5e-324, MAX_MS])
    | st.integers(min_value=0, max_value=10**15)
)
CATEGORIES = st.sampled_from([None, *ErrorCategory])
ERRORS = st.sampled_from([None, TimeoutError(), ValueError(), OSError(), KeyError()])
OPERATIONS = st.one_of(
    st.tuples(st.just("success"), NODES, DURATIONS),
    st.tuples(st.just("failure"), NODES, DURATIONS, ERRORS, CATEGORIES),
    st.tuples(st.just("retry"), NODES),
    st.tuples(st.just("cancel"), NODES),
    st.tuples(st.just("reset"), st.none() | NODES),
    # Timed successes (batched where the collector batches), in ns by a fake clock.
    st.tuples(st.just("track"), NODES, st.lists(st.integers(0, 10**15), max_size=40)),
    st.tuples(st.just("read"), NODES),
)
OPTIONS = st.fixed_dictionaries(
    {
        "window_size": st.integers(1, 12),
        "min_samples": st.integers(1, 5),
        "max_nodes": st.none() | st.integers(1, 3),
    },
    optional={
        "failure_rate_threshold": st.floats(0.0, 1.0, exclude_max=True),
        "latency_threshold_ms": st.floats(0.0, 1e15, exclude_max=True),
    },
)


@contextmanager
def fake_clock(elapsed_ns: list[int]) -> Iterator[None]:
    """Make each block timed by track() take the next of *elapsed_ns*."""
    ticks = itertools.chain.from_iterable((0, ns) for ns in elapsed_ns)
    real = _tracker.perf_counter_ns
    _tracker.perf_counter_ns = ticks.__next__
    try:
        yield
    finally:
        _tracker.perf_counter_ns = real


def check_all(c: NodeMetricsCollector) -> None:
    for snapshot in c.get_all_node_metrics().values():
        assert snapshot == NodeMetrics.from_dict(snapshot.to_dict())
        assert snapshot == NodeMetrics.from_dict(strict_json(json.dumps(snapshot.to_dict())))


class TestCollectorSnapshots:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(options=OPTIONS, operations=st.lists(OPERATIONS, max_size=60))
    def test_every_snapshot_valid(self, options, operations):
        """Every snapshot, after any operations and options, passes NodeMetrics.from_dict()."""
        crossings: list[tuple[str, float]] = []
        # More than the window holds is refused when a threshold is set.
        options["min_samples"] = min(options["min_samples"], options["window_size"])
        c = NodeMetricsCollector(
            **options,
            on_failure_rate_threshold=lambda node, rate: crossings.append((node, rate)),
            on_latency_threshold=lambda node, p99: crossings.append((node, p99)),
        )
        for op, node, *args in operations:
            if op == "success":
                c.record_success(node, args[0])
            elif op == "failure":
                c.record_failure(node, args[0], args[1], args[2])
            elif op == "retry":
                c.record_retry(node)
            elif op == "cancel":
                c.record_cancellation(node)
            elif op == "reset":
                c.reset_node_metrics(node)
            elif op == "track":
                with fake_clock(args[0]):
                    for _ in args[0]:
                        with c.track(node):
                            pass
            else:
                m = c.get_node_metrics(node)
                assert m == NodeMetrics.from_dict(m.to_dict())
            check_all(c)
        assert c.to_dict() == strict_json(c.to_json())
