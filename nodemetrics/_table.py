"""A plain-text table of node metrics, for people."""

from __future__ import annotations

from collections.abc import Mapping

from ._collector import NodeMetricsCollector
from ._metrics import NodeMetrics
from ._validate import safe_repr, type_name


_WIDTH = 100
_MIN_NODE_WIDTH = 8
_MAX_NODE_WIDTH = 32
_HEADERS = (
    "node",
    "runs",
    "ok",
    "fail",
    "tmo",
    "val",
    "net",
    "oth",
    "retry",
    "canc",
    "intr",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "fail%",
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.3f}"
    if value < 1_000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(node: str, m: NodeMetrics) -> list[str]:
    rate = f"{m.failure_count / m.total_executions:.1%}" if m.total_executions else "-"
    return [
        node if node.isprintable() else repr(node)[1:-1],
        str(m.total_executions),
        str(m.success_count),
        str(m.failure_count),
        str(m.timeout_errors),
        str(m.validation_errors),
        str(m.network_errors),
        str(m.other_errors),
        str(m.retry_count),
        str(m.cancelled_count),
        str(m.interrupted_count),
        _ms(m.p50),
        _ms(m.p90),
        _ms(m.p99),
        rate,
    ]


def format_table(metrics: NodeMetricsCollector | Mapping[str, NodeMetrics]) -> str:
    """
    Return an aligned text table of node metrics, one row per node.

    Columns: executions (``runs``), successes (``ok``), failures (``fail``)
    and by category (``tmo``, ``val``, ``net``, ``oth``), retries,
    cancellations (``canc``), interruptions (``intr``), p50/p90/p99 in milliseconds, and the failure
    rate over all executions. Rows are sorted by node name; long names are
    shortened with ``…`` so that the table fits in 100 columns, and names
    with control characters are shown escaped.

    Args:
        metrics: A collector (read at one instant) or a mapping of node
            names to snapshots, as from :meth:`NodeMetricsCollector.get_all_node_metrics`.

    Raises:
        TypeError: *metrics* is neither, is a mapping that could not be read,
            or holds something that is not a :class:`NodeMetrics`.
    """
    # type(), not isinstance(): an object's own __class__ may say anything, or raise.
    kind = type(metrics)
    if issubclass(kind, NodeMetricsCollector):
        snapshots: Mapping[str, NodeMetrics] = metrics.get_all_node_metrics()  # type: ignore[union-attr]
    elif issubclass(kind, Mapping):
        snapshots = metrics  # type: ignore[assignment]
    else:
        msg = f"metrics must be a collector or a mapping, got {type_name(metrics)}"
        raise TypeError(msg)
    # Read at once, as NodeMetrics.from_dict reads a mapping: whatever a
    # foreign mapping raises becomes the documented error.
    try:
        pairs = list(snapshots.items())
    except Exception as exc:  # noqa: BLE001 -- a foreign mapping may raise anything
        msg = f"metrics could not be read: {safe_repr(exc)}"
        raise TypeError(msg) from None
    # Plain copies of the names, so that no str subclass's own methods run.
    plain: dict[str, NodeMetrics] = {}
    for node, m in pairs:
        if not issubclass(type(node), str) or not issubclass(type(m), NodeMetrics):
            msg = (
                f"metrics must map node names to NodeMetrics, got {type_name(node)}: {type_name(m)}"
            )
            raise TypeError(msg)
        plain[str.__str__(node)] = m

    rows = [_row(node, plain[node]) for node in sorted(plain)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(_HEADERS)]
    numbers_width = sum(widths[1:]) + len(widths) - 1
    node_width = max(_MIN_NODE_WIDTH, min(_MAX_NODE_WIDTH, _WIDTH - numbers_width))
    widths[0] = min(widths[0], node_width)

    def line(cells: list[str] | tuple[str, ...]) -> str:
        first = _shorten(cells[0], widths[0]).ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return " ".join([first, *rest]).rstrip()

    out = [line(_HEADERS), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    if not rows:
        out.append("(no nodes)")
    return "\n".join(out)
