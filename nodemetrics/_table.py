"""A plain-text table of node metrics, for people."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from ._collector import NodeMetricsCollector
from ._display import cut, ljust, printable, width
from ._metrics import NodeMetrics, counts_of
from ._validate import read_items, type_name


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


#: Where the columns of counts, then of durations, begin and end in a row.
_COUNTS = slice(1, 11)
_DURATIONS = slice(11, 14)
_SUFFIXES = "kMGTPE"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.3f}"
    if value < 1_000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _compact(value: float) -> str:
    # At most 5 characters for any count up to 2**63 - 1 ("9.22E") and any
    # duration up to 1e15 ms ("1P"): 3 significant digits and an SI prefix.
    # The prefix is chosen by comparing the value itself, an exact int for a
    # count, with 999.5 times a power of 1,000 (exact as a float for each of
    # them): a count above 2**53 divided first would be rounded, and one just
    # under a boundary could take the next prefix.
    scale = 1
    suffix = ""
    for prefix in _SUFFIXES:
        if value < 999.5 * scale:
            break
        scale *= 1000
        suffix = prefix
    # Below 999.5 the 3 digits are at most 999 (the division's rounding must
    # not make it 999.5, "1e+03"); past a boundary, at least 1.
    scaled = min(value / scale, 999.4)
    return f"{max(scaled, 1.0) if suffix else scaled:.3g}{suffix}"


def _row(node: str, m: NodeMetrics, compact: set[int]) -> list[str]:
    rate = f"{m.failure_count / m.total_executions:.1%}" if m.total_executions else "-"
    cells = [cut(printable(node), _MAX_NODE_WIDTH)]
    for i, count in enumerate(counts_of(m), start=_COUNTS.start):
        cells.append(_compact(count) if i in compact else str(count))
    for i, ms in enumerate((m.p50, m.p90, m.p99), start=_DURATIONS.start):
        cells.append(_compact(ms) if i in compact and ms is not None and ms >= 1_000 else _ms(ms))
    cells.append(rate)
    return cells


def _numbers_width(widths: list[int]) -> int:
    # The numbers' columns, and a blank before each of them.
    return sum(widths[1:]) + len(widths) - 1


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
    pairs = read_items("metrics", snapshots)
    # Plain copies of the names, so that no str subclass's own methods run.
    plain: dict[str, NodeMetrics] = {}
    for node, m in pairs:
        if not issubclass(type(node), str) or not issubclass(type(m), NodeMetrics):
            msg = (
                f"metrics must map node names to NodeMetrics, got {type_name(node)}: {type_name(m)}"
            )
            raise TypeError(msg)
        plain[str.__str__(cast("str", node))] = cast("NodeMetrics", m)

    names = sorted(plain)
    compact: set[int] = set()
    while True:
        rows = [_row(node, plain[node], compact) for node in names]
        widths = [max([len(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(_HEADERS)]
        # Values so large that the table would not fit (the largest counts,
        # durations near 1e15 ms) are shown compact, widest column first.
        # Every column compact fits with room to spare: 50 + 18 + 6 columns.
        # The three durations, read side by side, go compact together.
        units = [{i} for i in range(_COUNTS.start, _COUNTS.stop) if i not in compact]
        if _DURATIONS.start not in compact:
            units.append(set(range(_DURATIONS.start, _DURATIONS.stop)))
        if _numbers_width(widths) <= _WIDTH - _MIN_NODE_WIDTH or not units:
            break
        compact |= max(units, key=lambda unit: sum(widths[i] for i in unit))
    node_width = max(_MIN_NODE_WIDTH, min(_MAX_NODE_WIDTH, _WIDTH - _numbers_width(widths)))
    widths[0] = min(widths[0], node_width)

    def line(cells: list[str] | tuple[str, ...]) -> str:
        first = ljust(cut(cells[0], widths[0]), widths[0])
        rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
        return " ".join([first, *rest]).rstrip()

    out = [line(_HEADERS), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    if not rows:
        out.append("(no nodes)")
    return "\n".join(out)
