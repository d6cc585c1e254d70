"""Near the recursion limit, a node's outcome goes through; only its recording may be lost."""

from __future__ import annotations

import asyncio
import sys

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import tenacity

from nodemetrics import NodeMetricsCollector, _collector, _instrument, metered


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


def overflow(*_args: object) -> None:
    raise RecursionError("maximum recursion depth exceeded")


class Stop(BaseException):
    """What a node raises to be cancelled (as a KeyboardInterrupt would be)."""


def node_of(kind: str, outcome: str, c: NodeMetricsCollector) -> Callable[[], object]:
    """Call a metered node of *kind* (sync, async, or sync returning a coroutine) once."""

    def body() -> str:
        if outcome == "fail":
            raise ValueError("node failed")
        if outcome == "cancel":
            raise Stop
        return "ok"

    async def abody() -> str:
        return body()

    def returns_coroutine() -> Coroutine[Any, Any, str]:
        return abody()

    if kind == "sync":
        return metered("n", collector=c)(body)
    wrapped = metered("n", collector=c)(abody if kind == "async" else returns_coroutine)
    return lambda: asyncio.run(wrapped())  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sync", "async", "returned coroutine"])
@pytest.mark.parametrize("outcome", ["ok", "fail", "cancel"])
def test_every_fallback_lets_the_outcome_through_when_it_overflows(
    monkeypatch: pytest.MonkeyPatch, kind: str, outcome: str
) -> None:
    # Each call a wrapper makes after the node (to record, or to log that
    # recording failed) overflows, as it may at the recursion limit: the
    # node's own result or exception still reaches its caller.
    for name in ("_record_failure", "_record_cancellation", "record_timed", "log_record_failed"):
        monkeypatch.setattr(_instrument, name, overflow)
    c = NodeMetricsCollector()
    run = node_of(kind, outcome, c)
    if outcome == "ok":
        assert run() == "ok"
    elif outcome == "fail":
        with pytest.raises(ValueError, match="^node failed$"):
            run()
    else:
        with pytest.raises(Stop):
            run()
    # Nothing recorded: every recording overflowed.
    assert c.get_all_node_metrics() == {}


def test_a_returned_coroutine_goes_through_untimed_when_its_stand_in_overflows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Making the stand-in that times the await needs frames too: without
    # them, the caller gets the node's own coroutine, untimed.
    monkeypatch.setattr(_instrument, "_awaiting", overflow)
    c = NodeMetricsCollector()
    made: list[Coroutine[Any, Any, str]] = []

    async def work() -> str:
        return "ok"

    @metered("n", collector=c)
    def node() -> Coroutine[Any, Any, str]:
        made.append(work())
        return made[0]

    returned = node()
    assert returned is made[0]
    assert asyncio.run(returned) == "ok"  # type: ignore[arg-type]
    assert c.get_all_node_metrics() == {}


def test_the_retry_hook_lets_the_retrying_through_when_it_overflows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NodeMetricsCollector, "record_retry", overflow)
    monkeypatch.setattr(_collector, "log_record_failed", overflow)
    c = NodeMetricsCollector()
    attempts = [0]

    @tenacity.retry(stop=tenacity.stop_after_attempt(3), before_sleep=c.retry_hook("n"))
    def flaky() -> str:
        attempts[0] += 1
        if attempts[0] < 3:
            raise ConnectionError
        return "ok"

    assert flaky() == "ok"
    assert attempts[0] == 3
