from __future__ import annotations

import subprocess
import sys

from collections.abc import Callable, Iterator

import pytest

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


@pytest.fixture
def broken_collector() -> NodeMetricsCollector:
    return _BrokenCollector()


@pytest.fixture
def fresh_python() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run a script in a new interpreter: no coverage tracer, no test-session heap."""

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 -- our own interpreter and script
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run
