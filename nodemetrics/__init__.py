"""
Per-node execution metrics for workflows and graphs.

Decorate a node with :func:`metered` or wrap a block in
:meth:`NodeMetricsCollector.track`, then read counts, failures by category,
retries, cancellations and p50/p90/p99 durations with
:meth:`NodeMetricsCollector.get_node_metrics`.
"""

from __future__ import annotations

from ._classify import ErrorCategory, classify_error
from ._collector import OVERFLOW_NODE, NodeMetricsCollector, get_default_collector
from ._histogram import NodeHistogram
from ._instrument import metered
from ._metrics import NodeMetrics
from ._table import format_table
from ._tracker import Tracker


__all__ = [
    "ErrorCategory",
    "NodeHistogram",
    "NodeMetrics",
    "NodeMetricsCollector",
    "OVERFLOW_NODE",
    "Tracker",
    "classify_error",
    "format_table",
    "get_default_collector",
    "metered",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 -- only when asked

        return version("nodemetrics")

    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
