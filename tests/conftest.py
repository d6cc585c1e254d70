from __future__ import annotations

import subprocess
import sys

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from _internals import holding_lock
from loguru import logger

from nodemetrics import NodeMetricsCollector


class LogCapture:
    """Records every loguru message emitted while installed."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def __call__(self, message: object) -> None:
        self.records.append(message.record)  # type: ignore[attr-defined]

    @property
    def messages(self) -> list[str]:
        return [str(r["message"]) for r in self.records]

    def of_level(self, level: str) -> list[str]:
        return [str(r["message"]) for r in self.records if r["level"].name == level]  # type: ignore[attr-defined]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    sink_id = logger.add(capture, level="DEBUG", format="{message}")
    yield capture
    logger.remove(sink_id)


class _BrokenCollector(NodeMetricsCollector):
    """A collector whose every recording raises, as a collector bug would."""

    def record_success(self, node, duration_ms):
        raise RuntimeError("collector bug")

    def record_failure(self, node, duration_ms, error=None, category=None):
        raise RuntimeError("collector bug")

    def record_cancellation(self, node):
        raise RuntimeError("collector bug")

    def record_interruption(self, node):
        raise RuntimeError("collector bug")


@pytest.fixture
def broken_collector() -> NodeMetricsCollector:
    return _BrokenCollector()


@pytest.fixture
def fresh_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a script in a new interpreter: no coverage tracer, no test-session heap."""

    def run(script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 -- our own interpreter and script
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def broken_invariants(m: object) -> list[str]:
    """What a snapshot says that contradicts itself (nothing, for a sound one)."""
    problems = []
    if m.total_executions != m.success_count + m.failure_count:  # type: ignore[attr-defined]
        problems.append("total != success + failure")
    categories = m.timeout_errors + m.validation_errors + m.network_errors + m.other_errors  # type: ignore[attr-defined]
    if categories != m.failure_count:  # type: ignore[attr-defined]
        problems.append("categories do not sum to failure_count")
    empty = m.total_executions == 0  # type: ignore[attr-defined]
    for name in ("p50", "p90", "p99", "last_execution_ms"):
        if (getattr(m, name) is None) != empty:
            problems.append(f"{name} is {getattr(m, name)!r} with {m.total_executions} executions")  # type: ignore[attr-defined]
    if empty and m.avg_execution_ms != 0.0:  # type: ignore[attr-defined]
        problems.append("avg without executions")
    percentiles = (m.p50, m.p90, m.p99)  # type: ignore[attr-defined]
    if None not in percentiles and not percentiles[0] <= percentiles[1] <= percentiles[2]:
        problems.append("percentiles out of order")
    return problems


@pytest.fixture
def invariants() -> Callable[[object], list[str]]:
    """The snapshot invariants README promises, as a checker returning what is broken."""
    return broken_invariants


@contextmanager
def inside_a_change(c: NodeMetricsCollector) -> Iterator[None]:
    """Hold *c*'s lock as a call that is changing a node does, as a signal handler or
    finalizer that interrupted it would find it."""
    with holding_lock(c):
        yield


@pytest.fixture
def interrupted() -> Callable[[NodeMetricsCollector], AbstractContextManager[None]]:
    """``with interrupted(c):`` runs its block as if inside a change of *c* in this thread."""
    return inside_a_change


def outcome(c: NodeMetricsCollector, node: str) -> tuple[int, int, int, int, int, int]:
    """(executions, successes, failures, retries, cancellations, interruptions) of *node*."""
    m = c.get_node_metrics(node)
    return (
        m.total_executions,
        m.success_count,
        m.failure_count,
        m.retry_count,
        m.cancelled_count,
        m.interrupted_count,
    )
