"""Near the recursion limit, a node's outcome goes through; only its recording may be lost."""

from __future__ import annotations

import asyncio
import sys

from collections.abc import Callable, Iterator

import pytest

from nodemetrics import NodeMetricsCollector, metered


LIMIT = 300


@pytest.fixture
def low_limit() -> Iterator[int]:
    """Set a low recursion limit, so that every depth is cheap to try; yield the free frames."""
    old = sys.getrecursionlimit()
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    sys.setrecursionlimit(depth + LIMIT)
    try:
        yield LIMIT
    finally:
        sys.setrecursionlimit(old)


def dive(k: int, leaf: Callable[[], object]) -> object:
    return leaf() if k == 0 else dive(k - 1, leaf)


def outcomes(leaf: Callable[[], object], body_ran: list[int], free: int) -> list[tuple[int, str]]:
    """Each depth at which the node's body returned but its caller got an exception."""
    changed = []
    for k in range(free, 0, -1):
        body_ran.clear()
        try:
            result = dive(k, leaf)
        except RecursionError:
            if body_ran:
                changed.append((k, "raised"))
        else:
            if result != "ok":
                changed.append((k, f"returned {result!r}"))
    return changed


def test_metered_result_goes_through_at_every_depth(low_limit: int) -> None:
    c = NodeMetricsCollector()
    ran: list[int] = []

    @metered("leaf", collector=c)
    def leaf() -> str:
        ran.append(1)
        return "ok"

    assert outcomes(leaf, ran, low_limit) == []
    # Far from the limit, every call was counted.
    assert c.get_node_metrics("leaf").success_count >= low_limit - 20


def test_track_result_goes_through_at_every_depth(low_limit: int) -> None:
    c = NodeMetricsCollector()
    ran: list[int] = []

    def leaf() -> str:
        with c.track("leaf"):
            ran.append(1)
            return "ok"

    assert outcomes(leaf, ran, low_limit) == []
    assert c.get_node_metrics("leaf").success_count >= low_limit - 20


def test_metered_unbounded_recursion_raises_the_nodes_own_error(low_limit: int) -> None:
    c = NodeMetricsCollector()
    first: list[RecursionError] = []
    calls = [0]

    @metered("walk", collector=c)
    def walk() -> None:
        calls[0] += 1
        try:
            walk()
        except RecursionError as exc:
            if not first:
                first.append(exc)
            raise

    with pytest.raises(RecursionError) as caught:
        walk()
    # The very object the deepest node raised (its __context__ is what the
    # interpreter gave it: on 3.10, the error of the call that overflowed).
    assert caught.value is first[0]
    m = c.get_node_metrics("walk")
    assert m.success_count == 0
    # Only the recordings made with no frames to spare may be lost.
    assert calls[0] - 20 <= m.failure_count <= calls[0]


def test_async_metered_unbounded_recursion_raises_the_nodes_own_error(low_limit: int) -> None:
    c = NodeMetricsCollector()
    first: list[RecursionError] = []
    calls = [0]

    @metered("walk", collector=c)
    async def walk() -> None:
        calls[0] += 1
        try:
            await walk()
        except RecursionError as exc:
            if not first:
                first.append(exc)
            raise

    with pytest.raises(RecursionError) as caught:
        asyncio.run(walk())
    assert caught.value is first[0]
    m = c.get_node_metrics("walk")
    assert calls[0] - 20 <= m.failure_count <= calls[0]
