"""Guarantee 1: the collector behaves exactly like an obviously-correct model."""

from __future__ import annotations

import itertools
import math
import statistics

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from loguru import logger

from nodemetrics import (
    ErrorCategory,
    NodeMetricsCollector,
    _instrument,
    _tracker,
    classify_error,
    metered,
)


NODES = st.sampled_from(["a", "b", "ü-node"])
DURATIONS = (
    st.floats(min_value=-5.0, max_value=1e6, allow_nan=False, allow_infinity=False)
    | st.integers(min_value=0, max_value=10**6)
    | st.sampled_from([0.0, -0.0, 1.0])
)
CATEGORIES = st.sampled_from([*ErrorCategory, *(c.value for c in ErrorCategory)])
ERRORS = st.sampled_from(
    [TimeoutError(), ValueError(), ConnectionResetError(), KeyError(), RuntimeError(), None]
)
# Nanoseconds that timed calls take, by a fake clock; bursts long enough to
# fill a batch (32) twice.
ELAPSED = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=70)


@contextmanager
def fake_clock(module: object, elapsed_ns: list[int]) -> Iterator[None]:
    """Make *module*'s perf_counter_ns tick: each timed call takes the next *elapsed_ns*."""
    ticks = itertools.chain.from_iterable((0, ns) for ns in elapsed_ns)
    real = module.perf_counter_ns  # type: ignore[attr-defined]
    module.perf_counter_ns = ticks.__next__  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.perf_counter_ns = real  # type: ignore[attr-defined]


class ModelNode:
    """A node as lists and counters: slow, and plainly right."""

    def __init__(self, window_size: int) -> None:
        self.success = 0
        self.failures: dict[str, int] = {c.value: 0 for c in ErrorCategory}
        self.retries = 0
        self.cancelled = 0
        self.interrupted = 0
        self.durations: list[float] = []
        self.window: deque[float] = deque(maxlen=window_size)

    def execute(self, duration: float) -> None:
        duration = max(0.0, float(duration))
        self.durations.append(duration)
        self.window.append(duration)

    def percentiles(self) -> list[float | None]:
        data = list(self.window)
        if not data:
            return [None, None, None]
        if len(data) == 1:
            return data * 3
        q = statistics.quantiles(data, n=100, method="inclusive")
        return [q[49], q[89], q[98]]


class CollectorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, ModelNode] = {}
        logger.disable("nodemetrics")  # negative durations warn; not the point here

    def teardown(self) -> None:
        logger.enable("nodemetrics")

    @initialize(window_size=st.integers(1, 12))
    def make(self, window_size: int) -> None:
        self.window_size = window_size
        self.collector = NodeMetricsCollector(window_size=window_size, max_nodes=None)

    def node(self, name: str) -> ModelNode:
        return self.model.setdefault(name, ModelNode(self.window_size))

    @rule(node=NODES, duration=DURATIONS)
    def success(self, node, duration):
        self.collector.record_success(node, duration)
        m = self.node(node)
        m.success += 1
        m.execute(duration)

    def timed(self, node: str, elapsed_ns: list[int]) -> None:
        m = self.node(node)
        for ns in elapsed_ns:
            m.success += 1
            m.execute(ns / 1e6)

    @rule(node=NODES, elapsed_ns=ELAPSED)
    def tracked(self, node, elapsed_ns):
        with fake_clock(_tracker, elapsed_ns):
            for _ in elapsed_ns:
                with self.collector.track(node):
                    pass
        self.timed(node, elapsed_ns)

    @rule(node=NODES, elapsed_ns=ELAPSED)
    def metered_calls(self, node, elapsed_ns):
        call = metered(node, collector=self.collector)(lambda: None)
        with fake_clock(_instrument, elapsed_ns):
            for _ in elapsed_ns:
                call()
        self.timed(node, elapsed_ns)

    @rule(node=NODES, elapsed_ns=ELAPSED, duration=DURATIONS)
    def tracked_then_failure(self, node, elapsed_ns, duration):
        """A failure recorded while tracked successes wait in a batch lands after them."""
        self.tracked(node, elapsed_ns)
        self.failure_with_category(node, duration, "network", None)

    @rule(node=NODES, duration=DURATIONS, category=CATEGORIES, error=ERRORS)
    def failure_with_category(self, node, duration, category, error):
        self.collector.record_failure(node, duration, error, category=category)
        m = self.node(node)
        m.failures[ErrorCategory(category).value] += 1
        m.execute(duration)

    @rule(node=NODES, duration=DURATIONS, error=ERRORS)
    def failure_classified(self, node, duration, error):
        self.collector.record_failure(node, duration, error)
        m = self.node(node)
        category = ErrorCategory.OTHER if error is None else classify_error(error)
        m.failures[category.value] += 1
        m.execute(duration)

    @rule(node=NODES, attempt=st.none() | st.integers(1, 50))
    def retry(self, node, attempt):
        self.collector.record_retry(node, attempt)
        self.node(node).retries += 1

    @rule(node=NODES)
    def cancel(self, node):
        self.collector.record_cancellation(node)
        self.node(node).cancelled += 1

    @rule(node=NODES)
    def interrupt(self, node):
        self.collector.record_interruption(node)
        self.node(node).interrupted += 1

    @rule(node=NODES)
    def reset_one(self, node):
        self.collector.reset_node_metrics(node)
        self.model.pop(node, None)

    @rule()
    def reset_all(self):
        self.collector.reset_node_metrics()
        self.model.clear()

    @rule(node=NODES)
    def get(self, node):
        self.check(node, self.collector.get_node_metrics(node))

    @invariant()
    def every_snapshot_matches(self):
        if not hasattr(self, "collector"):
            return
        snapshots = self.collector.get_all_node_metrics()
        assert set(self.model) == set(snapshots)
        for node, snapshot in snapshots.items():
            self.check(node, snapshot)
            assert len(self.collector._nodes[node].window) <= self.window_size

    def check(self, node, s):
        m = self.model.get(node) or ModelNode(self.window_size)
        failures = sum(m.failures.values())
        assert m.success + failures == s.total_executions
        assert m.success == s.success_count
        assert failures == s.failure_count
        assert m.retries == s.retry_count
        assert m.cancelled == s.cancelled_count
        assert m.interrupted == s.interrupted_count
        assert [
            m.failures["timeout"],
            m.failures["validation"],
            m.failures["network"],
            m.failures["other"],
        ] == [s.timeout_errors, s.validation_errors, s.network_errors, s.other_errors]
        assert (m.durations[-1] if m.durations else None) == s.last_execution_ms
        avg = math.fsum(m.durations) / len(m.durations) if m.durations else 0.0
        assert pytest.approx(avg, rel=1e-9, abs=1e-9) == s.avg_execution_ms
        expected = m.percentiles()
        actual = [s.p50, s.p90, s.p99]
        for e, a in zip(expected, actual, strict=True):
            if e is None:
                assert a is None
            else:
                assert pytest.approx(e, rel=1e-9, abs=1e-9) == a


CollectorMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestCollectorModel = CollectorMachine.TestCase
