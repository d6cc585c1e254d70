from __future__ import annotations

import asyncio
import traceback

import pytest

from nodemetrics import NodeMetricsCollector, Tracker


class Boom(Exception):
    pass


# LangGraph's control-flow exceptions, rebuilt by name (the core never imports langgraph).
class GraphBubbleUp(Exception):
    pass


class GraphInterrupt(GraphBubbleUp):
    pass


class ParentCommand(GraphBubbleUp):
    pass


def raise_boom():
    raise Boom("deep")


class TestTrackSync:
    def test_success(self):
        """A normal exit records one success with a duration."""
        c = NodeMetricsCollector()
        with c.track("n") as t:
            assert isinstance(t, Tracker)
        m = c.get_node_metrics("n")
        assert (1, 1) == (m.total_executions, m.success_count)
        assert m.last_execution_ms is not None
        assert m.last_execution_ms >= 0.0

    def test_failure_reraised_unchanged(self):
        """An Exception records a classified failure and propagates unchanged."""
        c = NodeMetricsCollector()
        err = TimeoutError("slow")
        with pytest.raises(TimeoutError) as info, c.track("n"):
            raise err
        assert err is info.value
        m = c.get_node_metrics("n")
        assert (1, 1, 1) == (m.total_executions, m.failure_count, m.timeout_errors)

    def test_traceback_intact(self):
        """The traceback still reaches the frame that raised."""
        c = NodeMetricsCollector()
        with pytest.raises(Boom) as info, c.track("n"):
            raise_boom()
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "raise_boom" == frames[-1]
        assert info.value.__context__ is None
        assert info.value.__cause__ is None

    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
    def test_base_exception_is_cancellation(self, exc_type):
        """A BaseException that is not an Exception counts only as a cancellation."""
        c = NodeMetricsCollector()
        with pytest.raises(exc_type), c.track("n"):
            raise exc_type
        m = c.get_node_metrics("n")
        assert (0, 0, 1) == (m.total_executions, m.failure_count, m.cancelled_count)

    def test_graph_interrupt_is_an_interruption(self):
        """GraphInterrupt propagates unchanged and counts as an interruption only."""
        c = NodeMetricsCollector()
        err = GraphInterrupt("approve?")
        with pytest.raises(GraphInterrupt) as info, c.track("n"):
            raise err
        assert err is info.value
        m = c.get_node_metrics("n")
        assert (0, 0, 1, 0) == (
            m.total_executions,
            m.failure_count,
            m.interrupted_count,
            m.cancelled_count,
        )

    def test_parent_command_is_a_success(self):
        """Another GraphBubbleUp (ParentCommand) propagates unchanged and counts as a success."""
        c = NodeMetricsCollector()
        err = ParentCommand("to the parent")
        with pytest.raises(ParentCommand) as info, c.track("n"):
            raise err
        assert err is info.value
        m = c.get_node_metrics("n")
        assert (1, 1, 0) == (m.total_executions, m.success_count, m.failure_count)
        assert m.last_execution_ms is not None

    def test_fresh_tracker_each_time(self):
        """track() returns a new tracker per use, so nesting and reuse are safe."""
        c = NodeMetricsCollector()
        assert c.track("n") is not c.track("n")
        with c.track("outer"), c.track("inner"):
            pass
        assert 1 == c.get_node_metrics("outer").total_executions
        assert 1 == c.get_node_metrics("inner").total_executions
        assert "<Tracker(node='outer')>" == repr(c.track("outer"))

    def test_recording_failure_never_breaks_the_block(self, logs, broken_collector):
        """If recording itself fails, it is logged and the block's outcome stands."""
        c = broken_collector
        with c.track("n"):
            pass
        with pytest.raises(Boom), c.track("n"):
            raise Boom
        with pytest.raises(KeyboardInterrupt), c.track("n"):
            raise KeyboardInterrupt
        assert 3 == sum("nodemetrics.record_failed" in m for m in logs.of_level("ERROR"))


class TestTrackAsync:
    async def test_success(self):
        """async with records a success."""
        c = NodeMetricsCollector()
        async with c.track("n"):
            await asyncio.sleep(0)
        assert 1 == c.get_node_metrics("n").success_count

    async def test_failure(self):
        """async with records a failure and re-raises the same exception."""
        c = NodeMetricsCollector()
        err = ConnectionResetError()
        with pytest.raises(ConnectionResetError) as info:
            async with c.track("n"):
                raise err
        assert err is info.value
        assert 1 == c.get_node_metrics("n").network_errors

    async def test_control_flow(self):
        """async with: GraphInterrupt is an interruption, ParentCommand a success."""
        c = NodeMetricsCollector()
        with pytest.raises(GraphInterrupt):
            async with c.track("n"):
                raise GraphInterrupt
        with pytest.raises(ParentCommand):
            async with c.track("n"):
                raise ParentCommand
        m = c.get_node_metrics("n")
        assert (1, 1, 0, 1) == (
            m.total_executions,
            m.success_count,
            m.failure_count,
            m.interrupted_count,
        )

    async def test_cancelled(self):
        """A cancelled task counts as a cancellation, not a failure."""
        c = NodeMetricsCollector()
        started = asyncio.Event()

        async def node():
            async with c.track("n"):
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(node())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        m = c.get_node_metrics("n")
        assert (0, 1) == (m.total_executions, m.cancelled_count)

    async def test_timed_across_awaits(self):
        """The duration covers the awaited work, not only the synchronous part."""
        c = NodeMetricsCollector()
        loop = asyncio.get_running_loop()
        async with c.track("n"):
            start = loop.time()
            await asyncio.sleep(0.02)
            elapsed_ms = (loop.time() - start) * 1000
        last = c.get_node_metrics("n").last_execution_ms
        assert last is not None
        # Generous bound: at least what the loop's clock saw pass inside.
        assert last >= elapsed_ms * 0.9
