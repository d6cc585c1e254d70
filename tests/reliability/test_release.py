"""
Every call that is not a recording (reads, listeners, the OpenTelemetry exporter) releases
its lock in a ``finally`` that lets pass only the lock's own refusal of a lock it never
acquired, as the recordings do (``TestHotPathRelease`` in ``test_interrupts.py``; see
``nodemetrics/_sync.py`` for why none of them uses ``with``).
"""

from __future__ import annotations

import signal
import threading

from collections.abc import Callable

import pytest

from _internals import lock_of, owns_lock, raising_after_release
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.otel import OpenTelemetryExporter
from nodemetrics.exporters.prometheus import PrometheusExporter


class Interrupt(Exception):
    pass


def _listener(node: str, duration_ms: float) -> None:
    pass


#: Each call of a collector that takes its lock and is not a recording.
_CALLS: dict[str, Callable[[NodeMetricsCollector], object]] = {
    "get_node_metrics": lambda c: c.get_node_metrics("n"),
    "get_all_node_metrics": lambda c: c.get_all_node_metrics(),
    "get_node_histogram": lambda c: c.get_node_histogram("n"),
    "a Prometheus scrape": lambda c: list(PrometheusExporter(c).collect()),
    "adding a listener": lambda c: c._add_listener(_listener),
    "removing a listener": lambda c: c._remove_listener(_listener),
}
_EVERY_CALL = pytest.mark.parametrize("call", list(_CALLS.values()), ids=list(_CALLS))


def _collector() -> NodeMetricsCollector:
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    # A timed success in the batch, for a read to fold.
    with c.track("n"):
        pass
    return c


def _interrupted_while_waiting(guarded: object, call: Callable[[], object]) -> BaseException:
    """
    Run *call* while another thread holds the lock of *guarded*, with a signal handler
    that raises :class:`Interrupt` 50 ms in, and return what *call* raised.
    """
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock_of(guarded):
            held.set()
            done.wait(10)

    def handler(signum: int, frame: object) -> None:
        raise Interrupt

    thread = threading.Thread(target=holder)
    thread.start()
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        assert held.wait(10)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupt) as raised:
            call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        done.set()
        thread.join(10)
    assert not thread.is_alive()
    return raised.value


class TestEveryCallRelease:
    @_EVERY_CALL
    @pytest.mark.parametrize("message", ["from a handler", "cannot release un-acquired lock"])
    def test_a_runtime_error_raised_just_after_the_release_propagates(self, call, message):
        """A RuntimeError that a signal handler raises just after the release propagates,
        even with the lock's own message; the lock is free and the collector as it was."""
        c = _collector()
        with raising_after_release(c, RuntimeError(message)), pytest.raises(RuntimeError) as raised:
            call(c)
        assert raised.value.args == (message,)
        assert not owns_lock(c)
        assert c.get_node_metrics("n").total_executions == 2

    @_EVERY_CALL
    def test_a_wait_interrupted_by_a_handler_raises_its_exception(self, call):
        """Waiting for a lock that another thread holds, a call interrupted by a signal
        handler that raises propagates that exception (not the lock's refusal to release
        what it never acquired), holds nothing, and the collector works on."""
        c = _collector()
        raised = _interrupted_while_waiting(c, lambda: call(c))
        assert not isinstance(raised.__context__, RuntimeError)
        assert not owns_lock(c)
        c.record_success("n", 3.0)
        m = c.get_node_metrics("n")
        assert (m.total_executions, m.last_execution_ms) == (3, 3.0)


@pytest.fixture
def exported():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    c = _collector()
    exporter = OpenTelemetryExporter(c, meter_provider=provider)
    yield c, exporter, reader
    provider.shutdown()


#: Each call that takes the OpenTelemetry exporter's own lock.
_EXPORTER_CALLS = pytest.mark.parametrize(
    "call",
    [
        lambda c, exporter, reader: c.record_success("n", 1.0),
        lambda c, exporter, reader: reader.get_metrics_data(),
        lambda c, exporter, reader: exporter.close(),
    ],
    ids=["an exported recording", "a collection", "close()"],
)


class TestExporterRelease:
    @_EXPORTER_CALLS
    def test_a_runtime_error_raised_just_after_the_release_propagates(self, exported, call):
        """A RuntimeError raised just after the exporter's lock is released propagates
        (a collection's through the SDK, which logs it and reports no points; a
        recording's through the collector's listener hook, which logs it), and the lock is
        free afterwards."""
        c, exporter, reader = exported
        seen: list[BaseException] = []
        with raising_after_release(exporter, RuntimeError("from a handler")):
            try:
                call(c, exporter, reader)
            except RuntimeError as exc:
                seen.append(exc)
        assert not owns_lock(exporter)
        if seen:
            assert seen[0].args == ("from a handler",)
        assert c.get_node_metrics("n").total_executions >= 2

    @pytest.mark.parametrize(
        "call",
        [
            lambda c, exporter: c.record_success("n", 1.0),
            lambda c, exporter: exporter.close(),
        ],
        ids=["an exported recording", "close()"],
    )
    def test_a_wait_interrupted_by_a_handler_leaves_the_lock_free(self, exported, call):
        """Waiting for the exporter's lock that another thread holds, a call interrupted by
        a signal handler that raises lets the handler's exception go where the call sends
        its errors (close() raises it; a recording's listener hook logs it), holds nothing,
        and the collector records afterwards. (A collection waits once per instrument, and
        the SDK gives up on it by its own timeout: not a wait a single signal can show.)"""
        c, exporter, _reader = exported

        def interrupted() -> None:
            call(c, exporter)
            raise Interrupt  # logged on the way (a recording): raise one for the helper

        raised = _interrupted_while_waiting(exporter, interrupted)
        assert not isinstance(raised.__context__, RuntimeError)
        assert not owns_lock(exporter)
        c.record_success("n", 4.0)
        assert c.get_node_metrics("n").last_execution_ms == 4.0
