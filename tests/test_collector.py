from __future__ import annotations

import asyncio
import fractions
import json
import math
import random
import statistics
import threading

from collections import deque

import attrs
import pytest

from _internals import (
    between_changes,
    holding_lock_between_changes,
    lock_of,
    node_names,
    node_state,
    pending_count,
    queue,
    timed_successes_held,
    window_chunks,
    window_of,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from nodemetrics import (
    OVERFLOW_NODE,
    ErrorCategory,
    NodeMetrics,
    NodeMetricsCollector,
    get_default_collector,
)


def make_collector(**kwargs):
    return NodeMetricsCollector(**kwargs)


class TestConfiguration:
    def test_defaults(self):
        """The documented defaults."""
        c = NodeMetricsCollector()
        assert 100 == c.window_size
        assert 10 == c.min_samples
        assert 10_000 == c.max_nodes
        assert c.classifier is None
        assert c.failure_rate_threshold is None
        assert c.latency_threshold_ms is None

    def test_keyword_only(self):
        """Options are keyword-only."""
        with pytest.raises(TypeError):
            NodeMetricsCollector(100)  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("kwargs", "error", "name"),
        [
            ({"window_size": 0}, ValueError, "window_size"),
            ({"window_size": -5}, ValueError, "window_size"),
            ({"window_size": True}, TypeError, "window_size"),
            ({"window_size": 10.0}, TypeError, "window_size"),
            ({"window_size": "10"}, TypeError, "window_size"),
            ({"min_samples": 0}, ValueError, "min_samples"),
            ({"min_samples": False}, TypeError, "min_samples"),
            ({"max_nodes": 0}, ValueError, "max_nodes"),
            ({"max_nodes": 2.5}, TypeError, "max_nodes"),
            ({"failure_rate_threshold": -0.1}, ValueError, "failure_rate_threshold"),
            ({"failure_rate_threshold": 1.5}, ValueError, "failure_rate_threshold"),
            ({"failure_rate_threshold": 1}, ValueError, "failure_rate_threshold"),
            ({"failure_rate_threshold": math.nan}, ValueError, "failure_rate_threshold"),
            ({"failure_rate_threshold": True}, TypeError, "failure_rate_threshold"),
            ({"failure_rate_threshold": "0.5"}, TypeError, "failure_rate_threshold"),
            ({"latency_threshold_ms": -1}, ValueError, "latency_threshold_ms"),
            ({"latency_threshold_ms": math.inf}, ValueError, "latency_threshold_ms"),
            ({"latency_threshold_ms": 1e15}, ValueError, "latency_threshold_ms"),
            ({"latency_threshold_ms": 2**60}, ValueError, "latency_threshold_ms"),
            ({"latency_threshold_ms": math.nan}, ValueError, "latency_threshold_ms"),
            ({"latency_threshold_ms": "5"}, TypeError, "latency_threshold_ms"),
            ({"on_failure_rate_threshold": 3}, TypeError, "on_failure_rate_threshold"),
            ({"on_latency_threshold": "print"}, TypeError, "on_latency_threshold"),
            ({"classifier": object()}, TypeError, "classifier"),
        ],
    )
    def test_bad_configuration(self, kwargs, error, name):
        """Bad options raise at construction, naming the option."""
        with pytest.raises(error, match=name):
            NodeMetricsCollector(**kwargs)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"failure_rate_threshold": 0},
            {"failure_rate_threshold": fractions.Fraction(1, 3)},
            {"latency_threshold_ms": 0},
            {"max_nodes": None},
            {"window_size": 1, "min_samples": 1},
        ],
    )
    def test_edge_configuration(self, kwargs):
        """Boundary values are accepted."""
        NodeMetricsCollector(**kwargs)

    @pytest.mark.parametrize(
        "threshold",
        [
            {"failure_rate_threshold": 0.5, "on_failure_rate_threshold": print},
            {"latency_threshold_ms": 100.0, "on_latency_threshold": print},
        ],
    )
    def test_a_window_too_small_for_min_samples_is_refused_with_a_threshold(self, threshold):
        """
        A window that can never hold min_samples executions would never
        evaluate a threshold: refused, naming min_samples, with a threshold
        set; a window of exactly min_samples, or no threshold, is accepted.
        """
        with pytest.raises(
            ValueError,
            match=r"^min_samples must be at most window_size .* "
            r"min_samples=10 and window_size=5$",
        ):
            NodeMetricsCollector(window_size=5, **threshold)
        NodeMetricsCollector(window_size=5)
        c = NodeMetricsCollector(window_size=5, min_samples=5, **threshold)
        assert (5, 5) == (c.window_size, c.min_samples)

    @pytest.mark.parametrize(
        ("threshold", "record", "above"),
        [
            # A rate is at most 1: the highest threshold below it, crossed
            # by a window of failures.
            (
                {"failure_rate_threshold": math.nextafter(1.0, 0.0)},
                NodeMetricsCollector.record_failure,
                1.0,
            ),
            # A duration is at most 1e15 ms, and so is a p99.
            (
                {"latency_threshold_ms": math.nextafter(1e15, 0.0)},
                NodeMetricsCollector.record_success,
                1e15,
            ),
        ],
    )
    def test_a_threshold_that_could_never_be_crossed_is_refused(self, threshold, record, above):
        """
        Nothing exceeds a failure rate of 1 or a p99 of 1e15 ms, so a
        threshold there would be silent for ever: refused, naming it and
        saying why. The highest one below is accepted, and crossed.
        """
        ((name, highest),) = threshold.items()
        with pytest.raises(
            ValueError,
            match=rf"^{name} must be in \[0, [^)]+\), got .+: nothing exceeds .+, "
            r"so it could never be crossed$",
        ):
            NodeMetricsCollector(**{name: above})
        crossed = []
        c = NodeMetricsCollector(
            window_size=2,
            min_samples=2,
            **threshold,
            on_failure_rate_threshold=lambda node, value: crossed.append(value),
            on_latency_threshold=lambda node, value: crossed.append(value),
        )
        assert highest == getattr(c, name)
        record(c, "n", 1e15)
        record(c, "n", 1e15)
        assert [above] == crossed

    def test_options_are_frozen(self):
        """Options cannot be changed under a running collector."""
        c = NodeMetricsCollector()
        with pytest.raises(attrs.exceptions.FrozenAttributeError):
            c.window_size = 5  # type: ignore[misc]

    def test_repr(self):
        """The repr shows the node count and the window size, not all state."""
        c = NodeMetricsCollector(window_size=7)
        c.record_success("a", 1.0)
        c.record_success("b", 1.0)
        assert "<NodeMetricsCollector(nodes=2, window_size=7)>" == repr(c)


class TestRecording:
    def test_success_and_failure_counts(self):
        """Executions are successes plus failures; the methods return None."""
        c = NodeMetricsCollector()
        assert c.record_success("n", 1.0) is None
        assert c.record_failure("n", 2.0) is None
        c.record_success("n", 3.0)
        m = c.get_node_metrics("n")
        assert (3, 2, 1) == (m.total_executions, m.success_count, m.failure_count)
        assert 1 == m.other_errors
        assert 3.0 == m.last_execution_ms
        assert 2.0 == m.avg_execution_ms

    def test_retry_is_not_an_execution(self):
        """record_retry counts a retry and nothing else."""
        c = NodeMetricsCollector()
        assert c.record_retry("n") is None
        c.record_retry("n", 2)
        m = c.get_node_metrics("n")
        assert 2 == m.retry_count
        assert 0 == m.total_executions
        assert m.last_execution_ms is None
        assert m.p50 is None

    def test_cancellation_is_not_an_execution(self):
        """record_cancellation counts a cancellation and nothing else."""
        c = NodeMetricsCollector()
        c.record_cancellation("n")
        m = c.get_node_metrics("n")
        assert (1, 0) == (m.cancelled_count, m.total_executions)

    def test_interruption_is_not_an_execution(self):
        """record_interruption counts an interruption and nothing else."""
        c = NodeMetricsCollector()
        c.record_interruption("n")
        c.record_interruption("n")
        m = c.get_node_metrics("n")
        assert (2, 0, 0, 0) == (
            m.interrupted_count,
            m.cancelled_count,
            m.total_executions,
            m.retry_count,
        )
        assert m.last_execution_ms is None

    @pytest.mark.parametrize("bad", [0, -1])
    def test_bad_attempt_number_value(self, bad):
        """attempt_number must be >= 1; nothing is recorded otherwise."""
        c = NodeMetricsCollector()
        with pytest.raises(ValueError, match="attempt_number"):
            c.record_retry("n", bad)
        assert {} == c.to_dict()

    @pytest.mark.parametrize("bad", [True, 1.0, "2"])
    def test_bad_attempt_number_type(self, bad):
        """attempt_number must be an int; nothing is recorded otherwise."""
        c = NodeMetricsCollector()
        with pytest.raises(TypeError, match="attempt_number"):
            c.record_retry("n", bad)
        assert {} == c.to_dict()

    def test_avg_is_lifetime_and_percentiles_are_window(self):
        """avg_execution_ms spans all executions; percentiles only the window."""
        c = NodeMetricsCollector(window_size=2)
        for v in [100.0, 1.0, 3.0]:
            c.record_success("n", v)
        m = c.get_node_metrics("n")
        assert pytest.approx(104.0 / 3) == m.avg_execution_ms
        assert 2.0 == m.p50
        assert 3.0 == m.last_execution_ms

    def test_int_and_fraction_durations(self):
        """Any real number is a duration; it is stored as a float."""
        c = NodeMetricsCollector()
        c.record_success("n", 2)
        c.record_success("n", fractions.Fraction(1, 2))
        m = c.get_node_metrics("n")
        assert 0.5 == m.last_execution_ms
        assert isinstance(m.last_execution_ms, float)
        assert 1.25 == m.avg_execution_ms

    def test_negative_duration_clamped_and_logged(self, logs):
        """A negative duration is recorded as 0.0 with a warning naming node and value."""
        c = NodeMetricsCollector()
        c.record_success("fetch", -2.5)
        c.record_failure("fetch", -1)
        m = c.get_node_metrics("fetch")
        assert 0.0 == m.last_execution_ms
        assert 0.0 == m.p99
        warnings = logs.of_level("WARNING")
        assert 2 == len(warnings)
        assert "nodemetrics.negative_duration" in warnings[0]
        assert "'fetch'" in warnings[0]
        assert "-2.5" in warnings[0]

    def test_negative_zero_is_zero(self):
        """-0.0 is stored as 0.0, so snapshots never show a minus sign."""
        c = NodeMetricsCollector()
        c.record_success("n", -0.0)
        assert "-" not in c.to_json()

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
    def test_non_finite_duration(self, bad):
        """NaN, infinities and overflowing ints are refused and record nothing."""
        c = NodeMetricsCollector()
        with pytest.raises(ValueError, match="duration_ms"):
            c.record_success("n", bad)
        with pytest.raises(ValueError, match="duration_ms"):
            c.record_failure("n", bad)
        assert {} == c.to_dict()

    @pytest.mark.parametrize("bad", [True, False, "1.0", None, [1.0], 1j])
    def test_duration_type(self, bad):
        """Bools and non-numbers are refused and record nothing."""
        c = NodeMetricsCollector()
        with pytest.raises(TypeError, match="duration_ms"):
            c.record_success("n", bad)
        with pytest.raises(TypeError, match="duration_ms"):
            c.record_failure("n", bad)
        assert {} == c.to_dict()

    @pytest.mark.parametrize(
        ("bad", "error"), [(None, TypeError), (3, TypeError), (b"n", TypeError), ("", ValueError)]
    )
    def test_bad_node(self, bad, error):
        """A node that is not a non-empty str is refused everywhere, naming 'node'."""
        c = NodeMetricsCollector()
        for call in [
            lambda: c.record_success(bad, 1.0),
            lambda: c.record_failure(bad, 1.0),
            lambda: c.record_retry(bad),
            lambda: c.record_cancellation(bad),
            lambda: c.record_interruption(bad),
            lambda: c.get_node_metrics(bad),
            lambda: c.track(bad),
            lambda: c.retry_hook(bad),
        ]:
            with pytest.raises(error, match="node"):
                call()
        if bad is not None:  # None resets every node
            with pytest.raises(error, match="node"):
                c.reset_node_metrics(bad)
        assert {} == c.to_dict()

    def test_str_subclass_names_are_copied(self):
        """A str subclass's own __hash__/__eq__ never run inside the collector."""
        calls = []

        class Name(str):
            __slots__ = ()

            def __hash__(self):
                calls.append("hash")
                return str.__hash__(self)

        c = NodeMetricsCollector()
        c.record_success(Name("n"), 1.0)
        c.record_failure(Name("n"), 1.0)
        c.record_retry(Name("n"))
        c.record_cancellation(Name("n"))
        with c.track(Name("n")):
            pass
        assert 3 == c.get_node_metrics(Name("n")).total_executions
        assert [str] == [type(k) for k in c.get_all_node_metrics()]
        assert [] == calls

    def test_bad_error(self):
        """error must be an exception; nothing is recorded otherwise."""
        c = NodeMetricsCollector()
        with pytest.raises(TypeError, match="error"):
            c.record_failure("n", 1.0, "timeout")  # type: ignore[arg-type]
        assert {} == c.to_dict()


class TestCategories:
    @pytest.mark.parametrize(
        ("error", "field"),
        [
            (TimeoutError(), "timeout_errors"),
            (ConnectionResetError(), "network_errors"),
            (ValueError(), "validation_errors"),
            (KeyError(), "other_errors"),
            (None, "other_errors"),
        ],
    )
    def test_classified(self, error, field):
        """Without a category the error is classified."""
        c = NodeMetricsCollector()
        c.record_failure("n", 1.0, error)
        assert 1 == getattr(c.get_node_metrics("n"), field)

    @pytest.mark.parametrize("category", [ErrorCategory.NETWORK, "network"])
    def test_explicit_category_wins(self, category):
        """An explicit category, enum or string, wins over the error's class."""
        c = NodeMetricsCollector()
        c.record_failure("n", 1.0, TimeoutError(), category=category)
        m = c.get_node_metrics("n")
        assert (1, 0) == (m.network_errors, m.timeout_errors)

    @pytest.mark.parametrize("bad", ["Timeout", "fatal", 3, [], None.__class__])
    def test_bad_category(self, bad):
        """An unknown category is a ValueError naming 'category'; nothing recorded."""
        c = NodeMetricsCollector()
        with pytest.raises(ValueError, match="category"):
            c.record_failure("n", 1.0, category=bad)
        assert {} == c.to_dict()

    def test_classifier(self):
        """A classifier's answer (enum or string) is used."""
        c = NodeMetricsCollector(
            classifier=lambda e: "timeout" if isinstance(e, KeyError) else ErrorCategory.NETWORK
        )
        c.record_failure("n", 1.0, KeyError())
        c.record_failure("n", 1.0, ValueError())
        m = c.get_node_metrics("n")
        assert (1, 1, 0) == (m.timeout_errors, m.network_errors, m.validation_errors)

    def test_classifier_none_falls_back(self):
        """A classifier returning None defers to classify_error."""
        c = NodeMetricsCollector(classifier=lambda e: None)
        c.record_failure("n", 1.0, TimeoutError())
        assert 1 == c.get_node_metrics("n").timeout_errors

    def test_classifier_raising_falls_back(self, logs):
        """A classifier that raises is logged and classify_error decides."""

        def broken(exc):
            raise RuntimeError("classifier bug")

        c = NodeMetricsCollector(classifier=broken)
        c.record_failure("n", 1.0, TimeoutError())
        assert 1 == c.get_node_metrics("n").timeout_errors
        assert any("nodemetrics.classifier_failed" in m for m in logs.of_level("ERROR"))

    def test_classifier_bad_result_falls_back(self, logs):
        """A classifier answering nonsense is logged and classify_error decides."""
        c = NodeMetricsCollector(classifier=lambda e: "fatal")
        c.record_failure("n", 1.0, ValueError())
        assert 1 == c.get_node_metrics("n").validation_errors
        assert any("nodemetrics.classifier_result" in m for m in logs.of_level("WARNING"))


class TestReading:
    def test_unknown_node_is_empty(self):
        """An unknown node gives the empty snapshot."""
        assert NodeMetrics() == NodeMetricsCollector().get_node_metrics("nope")

    def test_get_all_is_fresh(self):
        """get_all_node_metrics returns a new dict each time."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        first = c.get_all_node_metrics()
        first.clear()
        assert ["a"] == list(c.get_all_node_metrics())

    def test_snapshot_reflects_new_records(self):
        """A snapshot taken after a recording includes it (no stale cache)."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        before = c.get_node_metrics("a")
        assert before is c.get_node_metrics("a")
        for record in [
            lambda: c.record_success("a", 5.0),
            lambda: c.record_failure("a", 5.0),
            lambda: c.record_retry("a"),
            lambda: c.record_cancellation("a"),
        ]:
            record()
            after = c.get_node_metrics("a")
            assert before != after
            before = after

    def test_reset_one(self):
        """Resetting one node leaves the others."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        c.record_success("b", 1.0)
        assert c.reset_node_metrics("a") is None
        assert NodeMetrics() == c.get_node_metrics("a")
        assert 1 == c.get_node_metrics("b").total_executions
        c.reset_node_metrics("never-seen")
        assert ["b"] == list(c.get_all_node_metrics())

    def test_reset_all(self):
        """Resetting with no node forgets every node."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        c.record_retry("b")
        c.reset_node_metrics()
        assert {} == c.get_all_node_metrics()

    def test_to_dict_and_json(self):
        """to_dict maps nodes to NodeMetrics.to_dict(); to_json is its json.dumps."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        c.record_failure("b", 2.0, TimeoutError())
        d = c.to_dict()
        assert {"a": c.get_node_metrics("a").to_dict(), "b": c.get_node_metrics("b").to_dict()} == d
        assert d == json.loads(c.to_json())
        assert json.dumps(d, indent=2, sort_keys=True) == c.to_json(indent=2, sort_keys=True)

    @settings(max_examples=60, deadline=None)
    @given(
        size=st.integers(1, 50),
        samples=st.lists(
            st.floats(0, 1e6, allow_nan=False, allow_infinity=False), min_size=2, max_size=200
        ),
    )
    def test_percentiles_match_statistics(self, size, samples):
        """p50/p90/p99 equal statistics.quantiles(method='inclusive') over the window."""
        c = NodeMetricsCollector(window_size=size)
        for s in samples:
            c.record_success("n", s)
        window = samples[-size:]
        m = c.get_node_metrics("n")
        if len(window) == 1:
            expected = [window[0]] * 3
        else:
            q = statistics.quantiles(window, n=100, method="inclusive")
            expected = [q[49], q[89], q[98]]
        assert pytest.approx(expected, rel=1e-9, abs=1e-9) == [m.p50, m.p90, m.p99]


class TestThresholds:
    def test_failure_rate_fires_once_per_crossing(self):
        """The rate callback fires on the crossing, not after, and re-arms at or below."""
        calls = []
        c = NodeMetricsCollector(
            window_size=4,
            min_samples=3,
            failure_rate_threshold=0.5,
            on_failure_rate_threshold=lambda node, rate: calls.append((node, rate)),
        )
        c.record_failure("n", 1.0)
        c.record_failure("n", 1.0)
        assert [] == calls  # below min_samples
        c.record_failure("n", 1.0)
        assert [("n", 1.0)] == calls
        c.record_failure("n", 1.0)  # still above: no second call
        assert 1 == len(calls)
        c.record_success("n", 1.0)  # F F F S: 0.75
        c.record_success("n", 1.0)  # F F S S: 0.5, re-armed
        assert 1 == len(calls)
        c.record_failure("n", 1.0)  # F S S F: 0.5
        c.record_failure("n", 1.0)  # S S F F: 0.5
        assert 1 == len(calls)
        c.record_failure("n", 1.0)  # S F F F: 0.75, crossed again
        assert [("n", 1.0), ("n", 0.75)] == calls

    def test_latency_fires_once_per_crossing(self):
        """The latency callback fires when p99 goes above the threshold."""
        calls = []
        c = NodeMetricsCollector(
            window_size=5,
            min_samples=2,
            latency_threshold_ms=100.0,
            on_latency_threshold=lambda node, p99: calls.append((node, p99)),
        )
        c.record_success("n", 500.0)
        assert [] == calls
        c.record_success("n", 10.0)
        assert 1 == len(calls)
        assert "n" == calls[0][0]
        assert calls[0][1] > 100.0
        c.record_success("n", 10.0)
        assert 1 == len(calls)
        for _ in range(5):
            c.record_success("n", 10.0)  # 500 falls out: re-armed
        c.record_success("n", 1000.0)
        assert 2 == len(calls)

    def test_latency_at_the_threshold_does_not_fire(self):
        """A p99 exactly at the threshold is not above it; just past it, the callback fires."""
        calls = []
        c = NodeMetricsCollector(
            window_size=2,
            min_samples=1,
            latency_threshold_ms=100.0,
            on_latency_threshold=lambda node, p99: calls.append(p99),
        )
        c.record_success("n", 100.0)  # p99 of [100] is 100.0: at, not above
        c.record_success("n", 100.0)
        assert [] == calls
        c.record_success("n", 100.5)  # [100, 100.5]: p99 = 100.495
        assert [pytest.approx(100.495)] == calls

    def test_failure_rate_at_the_threshold_does_not_fire(self):
        """A failure rate exactly at the threshold is not above it."""
        calls = []
        c = NodeMetricsCollector(
            window_size=4,
            min_samples=4,
            failure_rate_threshold=0.5,
            on_failure_rate_threshold=lambda node, rate: calls.append(rate),
        )
        for failed in [True, False, True, False]:
            if failed:
                c.record_failure("n", 1.0)
            else:
                c.record_success("n", 1.0)
        assert [] == calls  # F S F S: 0.5
        c.record_failure("n", 1.0)  # S F S F: 0.5
        assert [] == calls
        c.record_failure("n", 1.0)  # F S F F: 0.75
        assert [0.75] == calls

    def test_latency_crossing_in_a_window_of_many_chunks(self):
        """With several sorted chunks the callback fires at the crossing record, exactly."""
        calls = []
        c = NodeMetricsCollector(
            window_size=3000,
            latency_threshold_ms=50.0,
            on_latency_threshold=lambda node, p99: calls.append(p99),
        )
        rng = random.Random(1)  # noqa: S311 -- reproducible test data
        model: deque[float] = deque(maxlen=3000)
        for _ in range(4000):  # full, then each record swaps one sample for another
            value = rng.uniform(1.0, 40.0)
            c.record_success("n", value)
            model.append(value)
        assert [] == calls
        assert 1 < len(window_chunks(window_of(c, "n")))
        while True:
            value = rng.uniform(60.0, 100.0)
            c.record_success("n", value)
            model.append(value)
            expected = statistics.quantiles(model, n=100, method="inclusive")[98]
            if expected > 50.0:
                break
            assert [] == calls
        assert [pytest.approx(expected, rel=1e-12)] == calls

    def test_reset_rearms(self):
        """A reset re-arms the thresholds."""
        calls = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=lambda node, rate: calls.append(node),
        )
        c.record_failure("n", 1.0)
        c.record_failure("n", 1.0)
        c.reset_node_metrics("n")
        c.record_failure("n", 1.0)
        assert ["n", "n"] == calls

    def test_threshold_without_callback(self):
        """A threshold with no callback costs nothing and raises nothing."""
        c = NodeMetricsCollector(
            min_samples=1, failure_rate_threshold=0.0, latency_threshold_ms=0.0
        )
        c.record_failure("n", 5.0)
        assert 1 == c.get_node_metrics("n").failure_count

    def test_callback_may_read_and_record(self):
        """A callback runs outside the lock: it can read and record without deadlock."""
        seen = []
        c = NodeMetricsCollector(min_samples=1, failure_rate_threshold=0.5)

        def on_rate(node, rate):
            seen.append(c.get_node_metrics(node).failure_count)
            c.record_retry(node)

        c = NodeMetricsCollector(
            min_samples=1, failure_rate_threshold=0.5, on_failure_rate_threshold=on_rate
        )
        c.record_failure("n", 1.0)
        assert [1] == seen
        assert 1 == c.get_node_metrics("n").retry_count

    def test_callback_exception_is_logged(self, logs):
        """An exception in a callback is logged and never reaches the recorder."""

        def broken(node, value):
            raise RuntimeError("callback bug")

        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=broken,
            latency_threshold_ms=0.0,
            on_latency_threshold=broken,
        )
        c.record_failure("n", 5.0)
        errors = [m for m in logs.of_level("ERROR") if "nodemetrics.callback_failed" in m]
        assert 2 == len(errors)
        assert 1 == c.get_node_metrics("n").failure_count


class TestDeferredRecording:
    """A call made while its own thread holds the lock (a signal handler's, a
    finalizer's) is queued, never waited for; the next call applies the queue."""

    def test_recording_while_locked_is_queued_then_applied(self, interrupted):
        """A recording that finds its own thread changing the collector is queued, then applied."""
        calls = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=lambda node, rate: calls.append(node),
        )
        with interrupted(c):
            c.record_success("n", 1.0)
            c.record_failure("n", 1.0)
            c.record_retry("n")
            assert 3 == pending_count(c)
            assert [] == calls
        m = c.get_node_metrics("n")
        assert (2, 1, 1) == (m.total_executions, m.failure_count, m.retry_count)
        assert ["n"] == calls

    def test_queue_drained_by_next_recording(self):
        """The next recording drains the queue too, before its own."""
        c = NodeMetricsCollector(window_size=1)
        with holding_lock_between_changes(c):
            c.record_success("n", 1.0)
        c.record_success("n", 2.0)
        assert 0 == pending_count(c)
        assert 2 == node_state(c, "n").success
        assert 2.0 == c.get_node_metrics("n").last_execution_ms

    def test_queued_crossing_fires_from_the_draining_recorder(self):
        """A threshold crossed by a queued recording fires when a recorder drains it."""
        calls = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=lambda node, rate: calls.append(node),
        )
        c.record_success("other", 1.0)
        with holding_lock_between_changes(c):
            c.record_failure("n", 1.0)
        assert [] == calls
        c.record_success("other", 1.0)
        assert ["n"] == calls

    def test_reset_applies_queue_first(self):
        """A reset applies what was queued before it, then forgets it."""
        c = NodeMetricsCollector()
        with holding_lock_between_changes(c):
            c.record_success("n", 1.0)
        c.reset_node_metrics("n")
        assert {} == c.to_dict()

    def test_reset_while_locked_is_queued_in_order(self):
        """A reset made while the lock is held is queued between the recordings around it."""
        c = NodeMetricsCollector()
        with holding_lock_between_changes(c):
            c.record_success("n", 1.0)
            c.reset_node_metrics()
            c.record_success("n", 2.0)
        m = c.get_node_metrics("n")
        assert (1, 2.0) == (m.total_executions, m.last_execution_ms)

    def test_timed_success_after_a_queued_failure_keeps_its_place(self):
        """A timed success never overtakes a failure queued before it (window_size=1)."""
        c = NodeMetricsCollector(window_size=1)
        c.record_success("n", 1.0)  # the node exists: timed successes would batch
        with holding_lock_between_changes(c):
            c.record_failure("n", 5.0)
        with c.track("n"):
            pass
        m = c.get_node_metrics("n")
        assert (3, 1) == (m.total_executions, m.failure_count)
        assert m.last_execution_ms < 5.0
        assert m.p99 == m.last_execution_ms


class TestConcurrency:
    def test_threads_lose_no_count(self):
        """Many threads recording into one collector lose no count."""
        c = NodeMetricsCollector(window_size=50)
        n_threads, per_thread = 8, 5_000
        barrier = threading.Barrier(n_threads)

        def work(i):
            barrier.wait()
            for j in range(per_thread):
                node = f"node-{j % 3}"
                if j % 5 == 0:
                    c.record_failure(node, float(j % 7), TimeoutError())
                else:
                    c.record_success(node, float(j % 11))
                if j % 10 == 0:
                    c.record_retry(node)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = c.get_all_node_metrics()
        assert n_threads * per_thread == sum(m.total_executions for m in metrics.values())
        assert n_threads * per_thread // 5 == sum(m.timeout_errors for m in metrics.values())
        assert n_threads * per_thread // 10 == sum(m.retry_count for m in metrics.values())
        for m in metrics.values():
            assert m.success_count + m.failure_count == m.total_executions

    async def test_asyncio_gather_loses_no_count(self):
        """Many tasks recording through `async with track` lose no count."""
        c = NodeMetricsCollector()

        async def node(i):
            async with c.track(f"n{i % 4}"):
                await asyncio.sleep(0)
                if i % 3 == 0:
                    raise ValueError(i)

        results = await asyncio.gather(*(node(i) for i in range(1_000)), return_exceptions=True)
        assert 334 == sum(isinstance(r, ValueError) for r in results)
        metrics = c.get_all_node_metrics()
        assert 1_000 == sum(m.total_executions for m in metrics.values())
        assert 334 == sum(m.validation_errors for m in metrics.values())


class TestMaxNodes:
    def test_overflow_folds_new_names(self, logs):
        """Past max_nodes new names go to __overflow__, with one warning."""
        c = NodeMetricsCollector(max_nodes=2)
        for name in ["a", "b", "c", "d", "a"]:
            c.record_success(name, 1.0)
        c.record_retry("e")
        assert {"a", "b", OVERFLOW_NODE} == set(c.get_all_node_metrics())
        assert 2 == c.get_node_metrics("a").total_executions
        assert 2 == c.get_node_metrics(OVERFLOW_NODE).total_executions
        assert 1 == c.get_node_metrics(OVERFLOW_NODE).retry_count
        warnings = [m for m in logs.of_level("WARNING") if "nodemetrics.max_nodes" in m]
        assert 1 == len(warnings)
        assert "'c'" in warnings[0]

    def test_unbounded(self):
        """max_nodes=None keeps every name."""
        c = NodeMetricsCollector(max_nodes=None)
        for i in range(50):
            c.record_success(f"n{i}", 1.0)
        assert 50 == len(c.get_all_node_metrics())

    def test_reset_frees_room(self):
        """Resetting nodes makes room for new names again."""
        c = NodeMetricsCollector(max_nodes=1)
        c.record_success("a", 1.0)
        c.reset_node_metrics("a")
        c.record_success("b", 1.0)
        assert ["b"] == list(c.get_all_node_metrics())

    def test_overflow_node_does_not_count_against_max_nodes(self):
        """With an overflow node present, a reset still makes room for exactly one new name."""
        c = NodeMetricsCollector(max_nodes=2)
        for name in ["a", "b", "c"]:  # c overflows
            c.record_success(name, 1.0)
        c.reset_node_metrics("a")
        c.record_success("d", 2.0)  # takes a's room
        c.record_success("e", 3.0)  # full again: overflows
        assert {"b", "d", OVERFLOW_NODE} == set(c.get_all_node_metrics())
        assert (1, 2.0) == (
            c.get_node_metrics("d").total_executions,
            c.get_node_metrics("d").last_execution_ms,
        )
        assert 2 == c.get_node_metrics(OVERFLOW_NODE).total_executions


class TestDefaultCollector:
    def test_is_a_singleton(self):
        """get_default_collector() always returns the same collector."""
        assert get_default_collector() is get_default_collector()
        assert isinstance(get_default_collector(), NodeMetricsCollector)


class TestWaiting:
    def test_other_thread_waits_for_the_holder_and_applies_its_own(self):
        """A thread that finds another thread holding the lock waits for it; nothing is queued."""
        c = NodeMetricsCollector()
        started = threading.Event()
        lock_of(c).acquire()
        try:

            def record():
                started.set()
                c.record_failure("n", 1.0)

            t = threading.Thread(target=record)
            t.start()
            assert started.wait(5)
            t.join(0.05)
            assert t.is_alive()  # it waits rather than queueing
            assert 0 == pending_count(c)
        finally:
            lock_of(c).release()
        t.join(5)
        assert not t.is_alive()
        assert 1 == c.get_node_metrics("n").failure_count

    def test_drain_is_bounded_when_applying_queues_more(self, interrupted):
        """If applying a recording queues another (a GC callback on every allocation), the
        drainer applies only what was queued when it began; later calls apply the rest."""

        class Reentrant(NodeMetricsCollector):
            generate = True

            def _apply(self, node, value, kind):
                events = super()._apply(node, value, kind)
                if self.generate:  # as if the GC ran a recording callback meanwhile
                    queue(self, "echo", 1.0, -1)
                return events

        c = Reentrant()
        with interrupted(c):
            c.record_success("n", 1.0)  # queued
        # Applies the queue, whose item queues an echo: the call's own
        # recording then goes after the echo, never ahead of it.
        c.record_success("n", 1.0)
        assert 2 == pending_count(c)  # the echo, then its own
        assert "echo" not in node_names(c)
        assert 1 == c._nodes["n"].success
        Reentrant.generate = False
        assert 1 == c.get_node_metrics("echo").success_count
        assert 2 == c.get_node_metrics("n").success_count
        assert 0 == pending_count(c)
        assert not timed_successes_held(c)


class TestBetweenChanges:
    def test_success_between_changes_goes_ahead(self):
        """A success recorded while this thread holds the lock but changes no node (a
        finalizer run between two steps) is applied at once, as if it had come first."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        with holding_lock_between_changes(c):
            c.record_success("n", 2.0)
            c.record_success("new", 3.0)
            assert 0 == pending_count(c)
        assert (2, 1) == (c.get_node_metrics("n").total_executions, len(node_names(c)) - 1)

    def test_read_of_all_nodes_survives_a_node_added_meanwhile(self, monkeypatch):
        """A read of all nodes walks a copy of the table: a node added by a call that went
        ahead (a finalizer's, mid-read) does not break it."""
        from nodemetrics._node import _Node

        c = NodeMetricsCollector()
        for node in ("a", "b"):
            c.record_success(node, 1.0)
        real = _Node.snapshot
        added = []

        def snapshot_then_add(self):
            if not added:
                added.append(True)
                between_changes(c)  # between two nodes, as a finalizer finds it
                c.record_success("added", 1.0)
            return real(self)

        monkeypatch.setattr(_Node, "snapshot", snapshot_then_add)
        assert {"a", "b"} <= set(c.get_all_node_metrics())
        monkeypatch.undo()
        assert 1 == c.get_node_metrics("added").total_executions
