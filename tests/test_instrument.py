from __future__ import annotations

import asyncio
import functools
import inspect
import traceback

import pytest

from nodemetrics import NodeMetricsCollector, get_default_collector, metered


class Boom(Exception):
    pass


# LangGraph's control-flow exceptions, rebuilt by name (the core never imports langgraph).
class GraphBubbleUp(Exception):
    pass


class GraphInterrupt(GraphBubbleUp):
    pass


class ParentCommand(GraphBubbleUp):
    pass


def outcome(c, node):
    m = c.get_node_metrics(node)
    return (m.success_count, m.failure_count, m.interrupted_count, m.cancelled_count)


class TestMeteredSync:
    def test_records_success_and_returns_result(self):
        """The result passes through and a success is recorded under the name."""
        c = NodeMetricsCollector()

        @metered("add", collector=c)
        def add(a, b=1):
            return a + b

        assert 5 == add(2, b=3)
        m = c.get_node_metrics("add")
        assert (1, 1) == (m.total_executions, m.success_count)

    def test_failure_unchanged(self):
        """The same exception object propagates, traceback intact, and is classified."""
        c = NodeMetricsCollector()
        err = ValueError("bad input")

        @metered("parse", collector=c)
        def parse():
            raise err

        with pytest.raises(ValueError) as info:
            parse()
        assert err is info.value
        assert "parse" == traceback.extract_tb(info.value.__traceback__)[-1].name
        assert info.value.__context__ is None
        assert 1 == c.get_node_metrics("parse").validation_errors

    def test_base_exception_is_cancellation(self):
        """KeyboardInterrupt propagates and counts as a cancellation only."""
        c = NodeMetricsCollector()

        @metered("n", collector=c)
        def interrupted():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        m = c.get_node_metrics("n")
        assert (0, 1) == (m.total_executions, m.cancelled_count)

    @pytest.mark.parametrize(
        ("exc_type", "expected"), [(GraphInterrupt, (0, 0, 1, 0)), (ParentCommand, (1, 0, 0, 0))]
    )
    def test_control_flow(self, exc_type, expected):
        """GraphInterrupt is an interruption, ParentCommand a success; both propagate unchanged."""
        c = NodeMetricsCollector()
        err = exc_type("control")

        @metered("n", collector=c)
        def node():
            raise err

        with pytest.raises(exc_type) as info:
            node()
        assert err is info.value
        assert info.value.__context__ is None
        assert expected == outcome(c, "n")

    def test_keeps_metadata(self):
        """Name, doc, __wrapped__ and signature are the function's."""

        def fetch(url: str, *, timeout: float = 1.0) -> bytes:
            """Fetch a URL."""
            return b""

        wrapped = metered(collector=NodeMetricsCollector())(fetch)
        assert "fetch" == wrapped.__name__
        assert "Fetch a URL." == wrapped.__doc__
        assert fetch is wrapped.__wrapped__  # type: ignore[attr-defined]
        assert inspect.signature(fetch) == inspect.signature(wrapped)
        assert not inspect.iscoroutinefunction(wrapped)

    def test_bare_and_called_forms(self):
        """@metered and @metered() both work and default to the __qualname__."""
        c = get_default_collector()

        @metered
        def bare_node():
            return 1

        @metered()
        def called_node():
            return 2

        before_bare = c.get_node_metrics(bare_node.__qualname__).total_executions
        before_called = c.get_node_metrics(called_node.__qualname__).total_executions
        assert (1, 2) == (bare_node(), called_node())
        assert "TestMeteredSync.test_bare_and_called_forms.<locals>.bare_node" == (
            bare_node.__qualname__
        )
        assert before_bare + 1 == c.get_node_metrics(bare_node.__qualname__).total_executions
        assert before_called + 1 == c.get_node_metrics(called_node.__qualname__).total_executions

    def test_methods(self):
        """Methods are decorated like functions and bind normally."""
        c = NodeMetricsCollector()

        class Pipeline:
            def __init__(self):
                self.factor = 3

            @metered(collector=c)
            def scale(self, x):
                return x * self.factor

        assert 6 == Pipeline().scale(2)
        assert ["TestMeteredSync.test_methods.<locals>.Pipeline.scale"] == list(
            c.get_all_node_metrics()
        )

    def test_partial_needs_a_name(self):
        """A callable with no __qualname__ needs an explicit name."""
        c = NodeMetricsCollector()
        part = functools.partial(int, base=2)
        with pytest.raises(TypeError, match="needs a name"):
            metered(collector=c)(part)
        assert 5 == metered("parse-binary", collector=c)(part)("101")

    @pytest.mark.parametrize(("bad", "error"), [(3, TypeError), ("", ValueError)])
    def test_bad_name_refused_when_decorating(self, bad, error):
        """A bad name is refused at decoration time, naming 'name'."""
        with pytest.raises(error, match="name"):
            metered(bad)

    def test_bad_collector(self):
        """collector must be a NodeMetricsCollector."""
        with pytest.raises(TypeError, match="collector"):
            metered("n", collector={})  # type: ignore[arg-type]

    def test_not_callable(self):
        """Decorating something that is not callable is a TypeError."""
        with pytest.raises(TypeError, match="callables"):
            metered("n")(42)  # type: ignore[arg-type]

    def test_generator_refused(self):
        """Generator functions are refused rather than timed at creation."""

        def gen():
            yield 1

        async def agen():
            yield 1

        with pytest.raises(TypeError, match="generator"):
            metered("n")(gen)
        with pytest.raises(TypeError, match="generator"):
            metered("n")(agen)

    def test_recording_failure_never_breaks_the_node(self, logs, broken_collector):
        """A collector that fails is logged; results and exceptions stand."""

        @metered("ok", collector=broken_collector)
        def ok():
            return "result"

        @metered("bad", collector=broken_collector)
        def bad():
            raise Boom

        @metered("stop", collector=broken_collector)
        def stop():
            raise SystemExit(3)

        assert "result" == ok()
        with pytest.raises(Boom):
            bad()
        with pytest.raises(SystemExit):
            stop()
        assert 3 == sum("nodemetrics.record_failed" in m for m in logs.of_level("ERROR"))


class TestMeteredAsync:
    async def test_records_success(self):
        """An async node stays a coroutine function and is timed across its awaits."""
        c = NodeMetricsCollector()

        @metered("fetch", collector=c)
        async def fetch(x):
            await asyncio.sleep(0.01)
            return x * 2

        assert inspect.iscoroutinefunction(fetch)
        assert 4 == await fetch(2)
        m = c.get_node_metrics("fetch")
        assert 1 == m.success_count
        assert m.last_execution_ms is not None
        assert m.last_execution_ms >= 5.0  # generous: it slept 10 ms

    async def test_failure(self):
        """The same exception propagates from an async node and is classified."""
        c = NodeMetricsCollector()
        err = TimeoutError()

        @metered("fetch", collector=c)
        async def fetch():
            await asyncio.sleep(0)
            raise err

        with pytest.raises(TimeoutError) as info:
            await fetch()
        assert err is info.value
        assert 1 == c.get_node_metrics("fetch").timeout_errors

    @pytest.mark.parametrize(
        ("exc_type", "expected"), [(GraphInterrupt, (0, 0, 1, 0)), (ParentCommand, (1, 0, 0, 0))]
    )
    async def test_control_flow(self, exc_type, expected):
        """An async node: GraphInterrupt is an interruption, ParentCommand a success."""
        c = NodeMetricsCollector()
        err = exc_type("control")

        @metered("n", collector=c)
        async def node():
            await asyncio.sleep(0)
            raise err

        with pytest.raises(exc_type) as info:
            await node()
        assert err is info.value
        assert expected == outcome(c, "n")

    async def test_cancellation(self):
        """A cancelled async node counts as a cancellation."""
        c = NodeMetricsCollector()
        started = asyncio.Event()

        @metered("wait", collector=c)
        async def wait():
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(wait())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        m = c.get_node_metrics("wait")
        assert (0, 1) == (m.total_executions, m.cancelled_count)

    async def test_keeps_metadata(self):
        """Signature and coroutine-ness survive."""

        async def node(state: dict, config: dict | None = None) -> dict:
            """A node."""
            return state

        wrapped = metered(collector=NodeMetricsCollector())(node)
        assert inspect.signature(node) == inspect.signature(wrapped)
        assert inspect.iscoroutinefunction(wrapped)
        assert "A node." == wrapped.__doc__

    async def test_recording_failure_never_breaks_the_node(self, logs, broken_collector):
        """A failing collector is logged; the async node's outcome stands."""

        @metered("ok", collector=broken_collector)
        async def ok():
            return 1

        @metered("bad", collector=broken_collector)
        async def bad():
            raise Boom

        @metered("cancel", collector=broken_collector)
        async def cancel():
            raise asyncio.CancelledError

        assert 1 == await ok()
        with pytest.raises(Boom):
            await bad()
        with pytest.raises(asyncio.CancelledError):
            await cancel()
        assert 3 == sum("nodemetrics.record_failed" in m for m in logs.of_level("ERROR"))
