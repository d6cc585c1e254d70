"""Guarantee 1: the collector behaves exactly like an obviously-correct model."""

from __future__ import annotations

import math
import statistics

from collections import deque

import pytest

from _internals import fake_clock, window_of
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from loguru import logger

from nodemetrics import OVERFLOW_NODE, ErrorCategory, NodeMetricsCollector, _window, metered


class ConnectTimeout(ConnectionError, TimeoutError):
    """A network error and a timeout at once, like requests' ConnectTimeout: a timeout."""


NODES = st.sampled_from(["a", "b", "ü-node"])
DURATIONS = (
    st.floats(min_value=-5.0, max_value=1e6, allow_nan=False, allow_infinity=False)
    | st.integers(min_value=0, max_value=10**6)
    | st.sampled_from([0.0, -0.0, 1.0])
)
CATEGORIES = st.sampled_from([*ErrorCategory, *(c.value for c in ErrorCategory)])
# Each error with the category the README's order gives it, written out here
# rather than asked of classify_error().
ERRORS_AND_CATEGORIES = [
    (TimeoutError(), "timeout"),
    (ValueError(), "validation"),
    (ConnectionResetError(), "network"),
    (ConnectTimeout(), "timeout"),
    (KeyError(), "other"),
    (RuntimeError(), "other"),
    (None, "other"),
]
ERRORS = st.sampled_from(ERRORS_AND_CATEGORIES)
# Nanoseconds that timed calls take, by a fake clock; bursts long enough to
# fill a batch (64) twice.
ELAPSED = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=140)


def p99_by_the_formula(samples: list[float]) -> float:
    """The README's interpolation, written out: what a latency threshold compares."""
    ordered = sorted(samples)
    lo, rem = divmod((len(ordered) - 1) * 99, 100)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + rem / 100 * (ordered[hi] - ordered[lo])


class ModelNode:
    """A node as lists and counters: slow, and plainly right."""

    def __init__(self, window_size: int) -> None:
        self.success = 0
        self.failures: dict[str, int] = {c.value: 0 for c in ErrorCategory}
        self.retries = 0
        self.cancelled = 0
        self.durations: list[float] = []
        self.window: deque[tuple[float, bool]] = deque(maxlen=window_size)
        self.rate_armed = True
        self.latency_armed = True

    def execute(self, duration: float, failed: bool = False) -> None:
        duration = max(0.0, float(duration))
        self.durations.append(duration)
        self.window.append((duration, failed))

    def percentiles(self) -> list[float | None]:
        data = [d for d, _ in self.window]
        if not data:
            return [None, None, None]
        if len(data) == 1:
            return data * 3
        q = statistics.quantiles(data, n=100, method="inclusive")
        return [q[49], q[89], q[98]]


class CollectorMachine(RuleBasedStateMachine):
    """
    Random sequences of every operation against the model, on windows of one
    chunk and of many (the chunk size shrunk), with thresholds and max_nodes
    drawn too. Snapshots are read only when a rule reads, so timed successes
    pile up in batches and windows catch up many notes at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, ModelNode] = {}
        self.fired: list[tuple[str, str, float]] = []
        self.expected: list[tuple[str, str, float]] = []
        self.load = _window._LOAD
        logger.disable("nodemetrics")  # negative durations warn; not the point here

    def teardown(self) -> None:
        try:
            if hasattr(self, "collector"):
                self.get_all()  # a last read of everything
        finally:
            _window._LOAD = self.load
            logger.enable("nodemetrics")

    @initialize(
        window_size=st.integers(1, 12) | st.integers(13, 40),
        load=st.sampled_from([1024, 2, 5]),
        rate=st.sampled_from([None, 0.0, 0.3, 0.5]),
        latency=st.sampled_from([None, 0.0, 1.0, 1e3]),
        min_samples=st.integers(1, 5),
        max_nodes=st.sampled_from([None, 1, 2]),
    )
    def make(self, window_size, load, rate, latency, min_samples, max_nodes):  # noqa: PLR0917
        # A chunk size of 2 or 5 splits a window of 40 into many chunks.
        _window._LOAD = load
        self.window_size = window_size
        # More than the window holds is refused when a threshold is set.
        min_samples = min(min_samples, window_size)
        self.rate, self.latency, self.min_samples, self.max_nodes = (
            rate,
            latency,
            min_samples,
            max_nodes,
        )
        self.collector = NodeMetricsCollector(
            window_size=window_size,
            max_nodes=max_nodes,
            min_samples=min_samples,
            failure_rate_threshold=rate,
            on_failure_rate_threshold=None
            if rate is None
            else (lambda node, r: self.fired.append(("rate", node, r))),
            latency_threshold_ms=latency,
            on_latency_threshold=None
            if latency is None
            else (lambda node, p99: self.fired.append(("latency", node, p99))),
        )

    def resolve(self, name: str) -> str:
        """The node a recording for *name* lands in: itself, or the overflow node."""
        if name in self.model or self.max_nodes is None:
            return name
        named = sum(n != OVERFLOW_NODE for n in self.model)
        return name if named < self.max_nodes else OVERFLOW_NODE

    def node(self, name: str) -> ModelNode:
        return self.model.setdefault(self.resolve(name), ModelNode(self.window_size))

    def execute(self, name: str, duration: float, failed: bool) -> None:
        """One execution in the model, and the threshold callbacks it must fire."""
        node = self.resolve(name)
        m = self.node(name)
        m.execute(duration, failed)
        n = len(m.window)
        if n < self.min_samples:
            return
        if self.rate is not None:
            rate = sum(f for _, f in m.window) / n
            if rate > self.rate:
                if m.rate_armed:
                    m.rate_armed = False
                    self.expected.append(("rate", node, rate))
            else:
                m.rate_armed = True
        if self.latency is not None:
            p99 = p99_by_the_formula([d for d, _ in m.window])
            if p99 > self.latency:
                if m.latency_armed:
                    m.latency_armed = False
                    self.expected.append(("latency", node, p99))
            else:
                m.latency_armed = True

    @rule(node=NODES, duration=DURATIONS)
    def success(self, node, duration):
        self.collector.record_success(node, duration)
        self.node(node).success += 1
        self.execute(node, duration, False)

    def timed(self, node: str, elapsed_ns: list[int]) -> None:
        for ns in elapsed_ns:
            self.node(node).success += 1
            self.execute(node, ns / 1e6, False)

    @rule(node=NODES, elapsed_ns=ELAPSED)
    def tracked(self, node, elapsed_ns):
        with fake_clock(elapsed_ns):
            for _ in elapsed_ns:
                with self.collector.track(node):
                    pass
        self.timed(node, elapsed_ns)

    @rule(node=NODES, elapsed_ns=ELAPSED)
    def metered_calls(self, node, elapsed_ns):
        call = metered(node, collector=self.collector)(lambda: None)
        with fake_clock(elapsed_ns):
            for _ in elapsed_ns:
                call()
        self.timed(node, elapsed_ns)

    @rule(node=NODES, elapsed_ns=ELAPSED, duration=DURATIONS)
    def tracked_then_failure(self, node, elapsed_ns, duration):
        """A failure recorded while tracked successes wait in a batch lands after them."""
        self.tracked(node, elapsed_ns)
        self.failure_with_category(node, duration, "network", (None, "other"))

    def failed(self, node: str, duration: float, category: str) -> None:
        self.node(node).failures[category] += 1
        self.execute(node, duration, True)

    @rule(node=NODES, duration=DURATIONS, category=CATEGORIES, error=ERRORS)
    def failure_with_category(self, node, duration, category, error):
        self.collector.record_failure(node, duration, error[0], category=category)
        self.failed(node, duration, ErrorCategory(category).value)

    @rule(node=NODES, duration=DURATIONS, error=ERRORS)
    def failure_classified(self, node, duration, error):
        exc, category = error
        self.collector.record_failure(node, duration, exc)
        self.failed(node, duration, category)

    @rule(node=NODES, attempt=st.none() | st.integers(1, 50))
    def retry(self, node, attempt):
        self.collector.record_retry(node, attempt)
        self.node(node).retries += 1

    @rule(node=NODES)
    def cancel(self, node):
        self.collector.record_cancellation(node)
        self.node(node).cancelled += 1

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

    @rule()
    def get_all(self):
        snapshots = self.collector.get_all_node_metrics()
        assert set(self.model) == set(snapshots)
        for node, snapshot in snapshots.items():
            self.check(node, snapshot)
            assert len(window_of(self.collector, node)) <= self.window_size

    @invariant()
    def callbacks_fired_as_the_model_says(self):
        """Checked after every step: callbacks fire at the crossing, not at a read."""
        assert [(k, n) for k, n, _ in self.expected] == [(k, n) for k, n, _ in self.fired]
        for (kind, _, e), (_, _, a) in zip(self.expected, self.fired, strict=True):
            assert (e == a) if kind == "rate" else (pytest.approx(e, rel=1e-12) == a)

    def check(self, node, s):
        m = self.model.get(node) or ModelNode(self.window_size)
        failures = sum(m.failures.values())
        assert m.success + failures == s.total_executions
        assert m.success == s.success_count
        assert failures == s.failure_count
        assert m.retries == s.retry_count
        assert m.cancelled == s.cancelled_count
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
