"""Where an asyncio timeout sits decides whether it counts as a timeout failure."""

from __future__ import annotations

import asyncio
import sys

import pytest

from nodemetrics import NodeMetricsCollector, metered


def collector_with_alarm():
    fired = []
    c = NodeMetricsCollector(
        min_samples=1,
        failure_rate_threshold=0.5,
        on_failure_rate_threshold=lambda node, rate: fired.append((node, rate)),
    )
    return c, fired


async def never() -> None:
    await asyncio.Event().wait()  # a server that never answers


async def inside_wait_for(c):
    @metered("fetch", collector=c)
    async def fetch():
        await asyncio.wait_for(never(), timeout=0.01)

    await fetch()


async def inside_timeout(c):
    @metered("fetch", collector=c)
    async def fetch():
        async with asyncio.timeout(0.01):  # type: ignore[attr-defined]
            await never()

    await fetch()


async def outside_wait_for(c):
    @metered("fetch", collector=c)
    async def fetch():
        await never()

    await asyncio.wait_for(fetch(), timeout=0.01)


async def outside_timeout(c):
    @metered("fetch", collector=c)
    async def fetch():
        await never()

    async with asyncio.timeout(0.01):  # type: ignore[attr-defined]
        await fetch()


needs_timeout = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.timeout() is new in Python 3.11"
)


class TestInside:
    @pytest.mark.parametrize(
        "run",
        [inside_wait_for, pytest.param(inside_timeout, marks=needs_timeout)],
        ids=["wait_for", "timeout"],
    )
    async def test_counts_as_timeout_failure(self, run):
        """Inside the metered function, the TimeoutError is a timeout failure; the alarm fires."""
        c, fired = collector_with_alarm()
        with pytest.raises(asyncio.TimeoutError):
            await run(c)
        m = c.get_node_metrics("fetch")
        assert (1, 1, 1, 0) == (
            m.total_executions,
            m.failure_count,
            m.timeout_errors,
            m.cancelled_count,
        )
        assert [("fetch", 1.0)] == fired


class TestOutside:
    @pytest.mark.parametrize(
        "run",
        [outside_wait_for, pytest.param(outside_timeout, marks=needs_timeout)],
        ids=["wait_for", "timeout"],
    )
    async def test_counts_as_cancellation(self, run):
        """Around the call, the node is cancelled: no execution, no failure, no alarm."""
        c, fired = collector_with_alarm()
        with pytest.raises(asyncio.TimeoutError):
            await run(c)
        m = c.get_node_metrics("fetch")
        assert (0, 0, 0, 1) == (
            m.total_executions,
            m.failure_count,
            m.timeout_errors,
            m.cancelled_count,
        )
        assert [] == fired
