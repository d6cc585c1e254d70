"""
Issue 10, item 11: user hooks raising a BaseException.

The rule: the node's own outcome is counted first. An Exception from a
classifier, threshold callback or log sink is logged (or, from a sink,
dropped) and swallowed. A KeyboardInterrupt, SystemExit or other
BaseException that is not an Exception, from any of them, is never
swallowed: from a threshold callback it propagates after every other
callback of that recording ran; from a classifier, after the failure is
counted as classify_error() sorts it, chained to the node's exception as
__context__; from a log sink, from the log call.
"""

from __future__ import annotations

import asyncio
import threading

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loguru import logger

from nodemetrics import NodeMetricsCollector, metered


class Stop(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


STOPS = [KeyboardInterrupt, SystemExit, Stop]


class NodeError(TimeoutError):
    """The node's own failure (a timeout, so its category shows)."""


def assert_usable(c: NodeMetricsCollector) -> None:
    """Another thread can still record and read: no lock was left held."""
    done: list[int] = []

    def retries() -> int:
        return sum(m.retry_count for m in c.get_all_node_metrics().values())

    def other() -> None:
        # A retry takes the lock but crosses no threshold.
        c.record_retry("other thread")
        done.append(retries())

    before = retries()
    t = threading.Thread(target=other, daemon=True)
    t.start()
    t.join(timeout=10)
    assert [before + 1] == done


def raiser(stop: type[BaseException], calls: list[str], name: str) -> Callable[..., None]:
    def callback(*args: object) -> None:
        calls.append(name)
        raise stop(name)

    return callback


def recorder(calls: list[str], name: str) -> Callable[..., None]:
    return lambda *args: calls.append(name)


def both_thresholds(rate: Callable[..., Any], latency: Callable[..., Any]) -> dict[str, Any]:
    """Options under which a first failure of 5 ms crosses both thresholds at once."""
    return {
        "min_samples": 1,
        "failure_rate_threshold": 0.0,
        "on_failure_rate_threshold": rate,
        "latency_threshold_ms": 0.0,
        "on_latency_threshold": latency,
    }


def run(call: Callable[[], Any]) -> BaseException | None:
    """Call *call* (awaiting what it returns, in a fresh loop); return what it raised."""
    try:
        result = call()
    except BaseException as raised:
        return raised
    if not asyncio.iscoroutine(result):
        return None
    caught: list[BaseException] = []

    async def catch() -> None:
        # Caught inside the task, so that asyncio's own handling of a
        # KeyboardInterrupt or SystemExit escaping a task is not under test.
        try:
            await result
        except BaseException as raised:
            caught.append(raised)

    asyncio.run(catch())
    return caught[0] if caught else None


# -- how a node is run: each returns a call that runs a failing or succeeding node


def failing_paths(c: NodeMetricsCollector, exc: BaseException) -> dict[str, Callable[[], Any]]:
    def sync_track() -> None:
        with c.track("n"):
            raise exc

    async def async_track() -> None:
        async with c.track("n"):
            raise exc

    @metered("n", collector=c)
    def sync_metered() -> None:
        raise exc

    @metered("n", collector=c)
    async def async_metered() -> None:
        raise exc

    def by_hand() -> None:
        try:
            raise exc
        except NodeError as e:
            c.record_failure("n", 5.0, e)

    return {
        "sync_track": sync_track,
        "async_track": async_track,
        "sync_metered": sync_metered,
        "async_metered": async_metered,
        "record_failure": by_hand,
    }


FAILING = list(failing_paths(NodeMetricsCollector(), NodeError()))


def succeeding_paths(c: NodeMetricsCollector) -> dict[str, Callable[[], Any]]:
    def work() -> int:
        return sum(range(1000))  # takes more than 0 ns, so p99 > 0.0

    def sync_track() -> None:
        with c.track("n"):
            work()

    async def async_track() -> None:
        async with c.track("n"):
            work()

    @metered("n", collector=c)
    def sync_metered() -> int:
        return work()

    @metered("n", collector=c)
    async def async_metered() -> int:
        return work()

    return {
        "sync_track": sync_track,
        "async_track": async_track,
        "sync_metered": sync_metered,
        "async_metered": async_metered,
        "record_success": lambda: c.record_success("n", 5.0),
    }


SUCCEEDING = list(succeeding_paths(NodeMetricsCollector()))


class TestThresholdCallbacks:
    @pytest.mark.parametrize("stop", STOPS)
    @pytest.mark.parametrize("path", FAILING)
    def test_failure_counted_then_raised(self, path, stop):
        """A callback's BaseException propagates after the count and the other callback."""
        calls: list[str] = []
        c = NodeMetricsCollector(
            **both_thresholds(raiser(stop, calls, "rate"), recorder(calls, "latency"))
        )
        node_error = NodeError("the node's own")
        raised = run(failing_paths(c, node_error)[path])
        assert stop is type(raised)
        assert ["rate", "latency"] == calls
        assert raised.__context__ is node_error
        m = c.get_node_metrics("n")
        assert (1, 1, 1) == (m.total_executions, m.failure_count, m.timeout_errors)
        assert_usable(c)

    @pytest.mark.parametrize("stop", STOPS)
    @pytest.mark.parametrize("path", SUCCEEDING)
    def test_success_counted_then_raised(self, path, stop):
        """On a success too: counted, then the callback's BaseException propagates."""
        calls: list[str] = []
        c = NodeMetricsCollector(
            min_samples=1, latency_threshold_ms=0.0, on_latency_threshold=raiser(stop, calls, "p99")
        )
        raised = run(succeeding_paths(c)[path])
        assert stop is type(raised)
        assert ["p99"] == calls
        assert 1 == c.get_node_metrics("n").success_count
        assert_usable(c)

    def test_later_callback_runs_and_first_stop_wins(self):
        """Two callbacks raise: both run, the first one's BaseException propagates."""
        calls: list[str] = []
        c = NodeMetricsCollector(
            **both_thresholds(
                raiser(SystemExit, calls, "rate"), raiser(KeyboardInterrupt, calls, "latency")
            )
        )
        with pytest.raises(SystemExit, match="rate"):
            c.record_failure("n", 5.0)
        assert ["rate", "latency"] == calls
        assert 1 == c.get_node_metrics("n").other_errors

    def test_exception_is_swallowed(self, logs):
        """An Exception from a callback is logged, and the other callback still runs."""
        calls: list[str] = []
        c = NodeMetricsCollector(
            **both_thresholds(raiser(RuntimeError, calls, "rate"), recorder(calls, "latency"))
        )
        c.record_failure("n", 5.0)
        assert ["rate", "latency"] == calls
        assert 1 == sum("nodemetrics.callback_failed" in m for m in logs.messages)


class TestClassifier:
    @pytest.mark.parametrize("stop", STOPS)
    @pytest.mark.parametrize("path", FAILING)
    def test_counted_then_raised(self, path, stop):
        """A classifier's BaseException: counted as classify_error sorts it, then raised."""

        def classifier(exc: BaseException) -> str:
            raise stop("classifier")

        c = NodeMetricsCollector(classifier=classifier)
        node_error = NodeError("the node's own")
        raised = run(failing_paths(c, node_error)[path])
        assert stop is type(raised)
        assert raised.__context__ is node_error
        assert "the node's own" == str(node_error)
        m = c.get_node_metrics("n")
        assert (1, 1, 1) == (m.total_executions, m.failure_count, m.timeout_errors)
        assert_usable(c)

    def test_not_called_with_explicit_category(self):
        """With category=, the classifier never runs, so cannot raise."""

        def classifier(exc: BaseException) -> str:
            raise KeyboardInterrupt

        c = NodeMetricsCollector(classifier=classifier)
        c.record_failure("n", 1.0, NodeError(), category="network")
        assert 1 == c.get_node_metrics("n").network_errors

    def test_classifier_stop_not_lost_to_callback_stop(self):
        """A classifier's KeyboardInterrupt is not swallowed by a callback's SystemExit after it."""

        def classifier(exc: BaseException) -> str:
            raise KeyboardInterrupt

        c = NodeMetricsCollector(
            classifier=classifier,
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=raiser(SystemExit, [], "rate"),
        )
        with pytest.raises(KeyboardInterrupt):
            c.record_failure("n", 1.0, NodeError())


@pytest.fixture
def stopping_sink() -> Iterator[list[str]]:
    """A loguru sink (catch=False) that raises KeyboardInterrupt on every message."""
    seen: list[str] = []

    def sink(message: Any) -> None:
        seen.append(str(message.record["message"]))
        raise KeyboardInterrupt

    sink_id = logger.add(sink, catch=False, format="{message}")
    yield seen
    logger.remove(sink_id)


class TestLogSink:
    def test_exception_swallowed(self):
        """A sink raising an Exception never reaches the node; the counts are kept."""

        def sink(message: Any) -> None:
            raise OSError("disk full")

        sink_id = logger.add(sink, catch=False)
        try:
            c = NodeMetricsCollector(max_nodes=1)
            c.record_success("n", -1.0)  # a warning, before the count
            c.record_success("m", 1.0)  # the max_nodes warning, after it
        finally:
            logger.remove(sink_id)
        assert 1 == c.get_node_metrics("n").success_count
        assert 1 == c.get_node_metrics("__overflow__").success_count

    def test_stop_after_count_propagates(self, stopping_sink):
        """A sink's KeyboardInterrupt on a message logged after the count: counted, then raised."""
        c = NodeMetricsCollector(max_nodes=1)
        c.record_success("n", 1.0)
        with pytest.raises(KeyboardInterrupt):
            c.record_success("m", 1.0)
        assert any("nodemetrics.max_nodes" in m for m in stopping_sink)
        assert 1 == c.get_node_metrics("__overflow__").success_count
        assert_usable(c)

    def test_stop_is_never_swallowed(self, stopping_sink):
        """A sink's KeyboardInterrupt propagates from every message nodemetrics logs."""
        c = NodeMetricsCollector(classifier=raiser(RuntimeError, [], "classifier"))
        with pytest.raises(KeyboardInterrupt):
            c.record_success("n", -1.0)
        with pytest.raises(KeyboardInterrupt):
            c.record_failure("n", 1.0, NodeError())
        assert 2 == len(stopping_sink)
        assert_usable(c)

    def test_negative_duration_counted_first(self, stopping_sink):
        """A sink's KeyboardInterrupt on the negative-duration warning: counted first."""
        c = NodeMetricsCollector()
        with pytest.raises(KeyboardInterrupt):
            c.record_success("n", -1.0)
        assert 1 == c.get_node_metrics("n").success_count

    def test_classifier_failure_counted_first(self, stopping_sink):
        """A sink's KeyboardInterrupt on classifier_failed: the failure counted first."""
        c = NodeMetricsCollector(classifier=raiser(RuntimeError, [], "classifier"))
        with pytest.raises(KeyboardInterrupt):
            c.record_failure("n", 1.0, NodeError())
        assert 1 == c.get_node_metrics("n").timeout_errors

    def test_other_callbacks_still_run(self, stopping_sink):
        """A sink's KeyboardInterrupt on callback_failed: the other callbacks still run."""
        calls: list[str] = []
        c = NodeMetricsCollector(
            **both_thresholds(raiser(RuntimeError, calls, "rate"), recorder(calls, "latency"))
        )
        with pytest.raises(KeyboardInterrupt):
            c.record_failure("n", 5.0)
        assert ["rate", "latency"] == calls
