"""A self-contained HTML report of a snapshot: inline CSS and SVG, no script, no network."""

from __future__ import annotations

import html

from collections.abc import Mapping

from ._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics
from ._table import _ms


_LATENCY_WIDTH = 280
_FAILURE_WIDTH = 200
_BAR = 10
_QUANTILE_COLOURS = {"p50": "#9ecae1", "p90": "#4292c6", "p99": "#08519c"}
_CATEGORY_COLOURS = {
    "timeout": "#e6550d",
    "validation": "#fdae6b",
    "network": "#756bb1",
    "other": "#969696",
}
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.meta { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; }
th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; font-weight: 600; vertical-align: bottom; white-space: normal; }
th.count { max-width: 5.5em; }
td.node, th.node { text-align: left; font-family: ui-monospace, monospace; }
td.node { min-width: 8em; max-width: 24em; white-space: normal; overflow-wrap: anywhere; }
td.chart, th.chart { text-align: left; }
.legend span { display: inline-block; margin-right: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #222; }
"""


def _legend(colours: Mapping[str, str]) -> str:
    return "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{html.escape(label)}</span>'
        for label, colour in colours.items()
    )


def _latency_svg(m: NodeMetrics, scale_ms: float) -> str:
    height = _BAR * len(QUANTILE_FIELDS) + 2 * (len(QUANTILE_FIELDS) - 1)
    parts = []
    for i, (_, field) in enumerate(QUANTILE_FIELDS):
        value = getattr(m, field)
        y = i * (_BAR + 2)
        width = 0.0 if value is None or scale_ms <= 0 else value / scale_ms * _LATENCY_WIDTH
        label = f"{field} {_ms(value)} ms" if value is not None else f"{field} -"
        parts.append(
            f'<rect x="0" y="{y}" width="{width:.1f}" height="{_BAR}" '
            f'fill="{_QUANTILE_COLOURS[field]}"><title>{label}</title></rect>'
        )
        parts.append(
            f'<text x="{min(width, _LATENCY_WIDTH) + 4:.1f}" y="{y + _BAR - 1}">{label}</text>'
        )
    return (
        f'<svg width="{_LATENCY_WIDTH + 110}" height="{height}" role="img" '
        f'aria-label="latency">{"".join(parts)}</svg>'
    )


def _failure_svg(m: NodeMetrics, scale: int) -> str:
    parts = []
    x = 0.0
    for category, field in FAILURE_FIELDS:
        count = getattr(m, field)
        if not count:
            continue
        width = count / scale * _FAILURE_WIDTH
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="{_BAR + 4}" '
            f'fill="{_CATEGORY_COLOURS[category]}"><title>{category}: {count}</title></rect>'
        )
        x += width
    parts.append(f'<text x="{x + 4:.1f}" y="{_BAR + 1}">{m.failure_count}</text>')
    return (
        f'<svg width="{_FAILURE_WIDTH + 60}" height="{_BAR + 4}" role="img" '
        f'aria-label="failures by category">{"".join(parts)}</svg>'
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return _ms(value)
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def render_html(snapshot: Mapping[str, NodeMetrics], *, title: str = "snapshot") -> str:
    """
    Render *snapshot* as one self-contained HTML page.

    One table row per node, sorted by name: a horizontal bar for each of
    p50, p90 and p99 on a scale shared by every node, the failures as one bar
    stacked by category on a shared scale, then every other field of
    :meth:`NodeMetrics.to_dict` (counts as integers, durations in ms), so a
    field added to :class:`NodeMetrics` shows up without a change here. The
    page has inline CSS and SVG only: no script, no font or image to fetch.

    Args:
        snapshot: Node names to their snapshots.
        title: What the report is of (a file name), shown under the heading.

    Returns:
        The HTML document.
    """
    nodes = sorted(snapshot.items())
    scale_ms = max(
        (v for _, m in nodes for _, f in QUANTILE_FIELDS if (v := getattr(m, f)) is not None),
        default=0.0,
    )
    failure_scale = max((m.failure_count for _, m in nodes), default=0) or 1
    # Every field but the percentiles, which the bars show: a new field appears by itself.
    shown_by_bars = {field for _, field in QUANTILE_FIELDS}
    fields = [f for f in NodeMetrics().to_dict() if f not in shown_by_bars]
    for _, m in nodes:
        fields.extend(f for f in m.to_dict() if f not in fields and f not in shown_by_bars)
    head = "".join(
        f'<th class="count">{html.escape(f.removesuffix("_ms").replace("_", " "))}'
        f"{' ms' if f.endswith('_ms') else ''}</th>"
        for f in fields
    )
    rows = []
    for node, m in nodes:
        values = m.to_dict()
        cells = "".join(f"<td>{_cell(values.get(f))}</td>" for f in fields)
        rows.append(
            f'<tr class="node"><td class="node">{html.escape(node)}</td>'
            f'<td class="chart">{_latency_svg(m, scale_ms)}</td>'
            f'<td class="chart">{_failure_svg(m, failure_scale)}</td>{cells}</tr>'
        )
    if not rows:
        rows.append(f'<tr><td colspan="{3 + len(fields)}">No nodes in this snapshot.</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nodemetrics report: {html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>nodemetrics report</h1>
<p class="meta">{html.escape(title)}: {len(nodes)} node{"" if len(nodes) == 1 else "s"}.
Latency bars share one scale, 0 to {_ms(scale_ms)} ms (p50/p90/p99 over each node's
rolling window); failure bars share one scale, 0 to {failure_scale:,}.</p>
<p class="legend">{_legend(_QUANTILE_COLOURS)} {_legend(_CATEGORY_COLOURS)}</p>
<table>
<thead><tr><th class="node">node</th><th class="chart">latency</th>
<th class="chart">failures by category</th>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>"""
