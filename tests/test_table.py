from __future__ import annotations

import itertools
import unicodedata

import pytest

from nodemetrics import NodeMetrics, NodeMetricsCollector, format_table
from nodemetrics._table import _compact


def display_width(text: str) -> int:
    """Columns on a terminal: wide East Asian characters take 2, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def columns(rule: str) -> list[tuple[int, int]]:
    """The (start, end) of each column, from the rule of dashes under the header."""
    spans = []
    start = None
    for i, char in enumerate(rule + " "):
        if char == "-" and start is None:
            start = i
        elif char != "-" and start is not None:
            spans.append((start, i))
            start = None
    return spans


def assert_aligned(table: str) -> None:
    """
    Every line is as wide as the rule, fits in 100 columns, and keeps its
    cells inside the rule's columns: a blank between every two columns, and
    no cell that starts or ends in a gap. Whatever the columns are.
    """
    lines = table.splitlines()
    rule = lines[1]
    assert set(rule) <= {"-", " "}
    spans = columns(rule)
    assert len(spans) >= 2
    gaps = [i for (_, end), (start, _) in itertools.pairwise(spans) for i in range(end, start)]
    for line in lines:
        assert len(rule) == len(line), line
        assert len(line) <= 100, line
        assert all(line[i] == " " for i in gaps), line
        # Each column holds one cell, text that does not run into the next.
        assert len(spans) <= len(line.split()) or line.endswith("(no nodes)"), line


def populated() -> NodeMetricsCollector:
    c = NodeMetricsCollector()
    for d in [1.0, 2.0, 3.0, 4.0]:
        c.record_success("fetch", d)
    c.record_failure("fetch", 5.0, TimeoutError())
    c.record_failure("parse", 12.5, ValueError())
    c.record_retry("fetch")
    c.record_cancellation("parse")
    c.record_interruption("parse")
    c.record_interruption("parse")
    c.record_retry("only-retries")
    return c


class TestFormatTable:
    def test_rows_sorted_and_aligned(self):
        """One row per node, sorted by name; every line the same width."""
        table = format_table(populated())
        lines = table.splitlines()
        assert lines[0].split() == [
            "node", "runs", "ok", "fail", "tmo", "val", "net", "oth",
            "retry", "canc", "intr", "p50", "ms", "p90", "ms", "p99", "ms", "fail%",
        ]  # fmt: skip
        assert ["fetch", "only-retries", "parse"] == [line.split()[0] for line in lines[2:]]
        assert_aligned(table)

    def test_every_line_aligned_whatever_the_values(self):
        """Wide numbers, long and short names: every line keeps to the rule's columns."""
        c = populated()
        c.record_success("x" * 300, 123_456.0)
        c.record_success("s", 0.001)
        for _ in range(12_345):
            c.record_retry("retried-a-lot")
        c.record_failure("big", 9_999_999.0, ConnectionError())
        assert_aligned(format_table(c))

    def test_values(self):
        """The cells are the snapshot's numbers."""
        rows = {
            line.split()[0]: line.split()[1:] for line in format_table(populated()).splitlines()[2:]
        }
        assert [
            "5",
            "4",
            "1",
            "1",
            "0",
            "0",
            "0",
            "1",
            "0",
            "0",
            "3.000",
            "4.600",
            "4.960",
            "20.0%",
        ] == (rows["fetch"])
        assert [
            "1",
            "0",
            "1",
            "0",
            "1",
            "0",
            "0",
            "0",
            "1",
            "2",
            "12.5",
            "12.5",
            "12.5",
            "100.0%",
        ] == (rows["parse"])
        assert ["0", "0", "0", "0", "0", "0", "0", "1", "0", "0", "-", "-", "-", "-"] == rows[
            "only-retries"
        ]

    def test_mapping_and_collector_agree(self):
        """A collector and its get_all_node_metrics() give the same table."""
        c = populated()
        assert format_table(c) == format_table(c.get_all_node_metrics())

    def test_fits_in_100_columns(self):
        """Long node names are shortened with an ellipsis to keep 100 columns."""
        c = NodeMetricsCollector()
        c.record_success("x" * 300, 123_456.0)
        c.record_success("short", 0.001)
        lines = format_table(c).splitlines()
        assert_aligned(format_table(c))
        assert "…" in lines[3]
        assert "123,456" in lines[3]

    def test_control_characters_escaped(self):
        """A name with a newline cannot break the table."""
        c = NodeMetricsCollector()
        c.record_success("a\nb", 1.0)
        lines = format_table(c).splitlines()
        assert 3 == len(lines)
        assert lines[2].startswith("a\\nb ")

    def test_empty(self):
        """An empty collector gives headers and a note."""
        assert format_table({}).endswith("(no nodes)")

    @pytest.mark.parametrize("bad", [None, [1, 2], {"n": {"p50": 1.0}}, {1: NodeMetrics()}])
    def test_bad_input(self, bad):
        """Anything but a collector or a mapping of names to NodeMetrics is a TypeError."""
        with pytest.raises(TypeError, match="metrics"):
            format_table(bad)


class TestDisplayWidth:
    def test_wide_and_combining_names_fit_and_align(self):
        """Names of wide or combining characters are cut by columns on screen, and align."""
        c = NodeMetricsCollector()
        c.record_success("数据处理节点" * 10, 1.0)
        c.record_success("e\u0301" * 40, 1.0)
        c.record_success("x\u200by", 1.0)  # a zero-width space: not printable, so escaped
        lines = format_table(c).splitlines()
        assert [100] * 5 == [display_width(line) for line in lines]
        assert lines[2].startswith("e\u0301" * 27 + "… ")
        assert lines[3].startswith("x\\u200by ")
        assert lines[4].startswith("数据处理节点" * 2 + "数…  ")

    def test_wide_name_that_fits_is_padded_by_columns(self):
        """A short wide name is padded to the column by its width on screen."""
        lines = format_table({"节点": NodeMetrics(), "n": NodeMetrics()}).splitlines()
        assert 1 == len({display_width(line) for line in lines[:2]})
        assert lines[2].startswith("n       0 ")
        assert lines[3].startswith("节点    0 ")

    def test_largest_values_still_fit(self):
        """The largest durations and counts a snapshot may hold still fit in 100 columns."""
        big = 2**63 - 1
        m = NodeMetrics(
            total_executions=big,
            success_count=big - 4,
            failure_count=4,
            retry_count=big,
            last_execution_ms=1e15,
            avg_execution_ms=1e15,
            p50=1e15,
            p90=1e15,
            p99=1e15,
            timeout_errors=1,
            validation_errors=1,
            network_errors=1,
            other_errors=1,
            cancelled_count=big,
            interrupted_count=big,
        )
        table = format_table({"n" * 40: m, "small": NodeMetrics()})
        assert_aligned(table)
        header, _, first, _ = table.splitlines()
        row = dict(zip(header.replace(" ms", "_ms").split(), first.split(), strict=True))
        assert "9.22E" == row["runs"]
        assert "1P" == row["p50_ms"]
        assert "0.0%" == row["fail%"]

    def test_one_huge_duration_compacts_only_its_columns(self):
        """A duration of 1e15 ms turns the duration columns compact, and leaves counts exact."""
        c = NodeMetricsCollector()
        c.record_success("fetch", 1e15)
        c.record_success("fetch", 999_499.0)
        for _ in range(1234):
            c.record_retry("fetch")
        table = format_table(c)
        assert_aligned(table)
        assert table.splitlines()[2].split() == [
            "fetch",
            "2",
            "2",
            "0",
            "0",
            "0",
            "0",
            "0",
            "1234",
            "0",
            "0",
            "500T",
            "900T",
            "990T",
            "0.0%",
        ]

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            (0, "0"),
            (999, "999"),
            (1_234, "1.23k"),
            (999_499, "999k"),
            (999_500, "1M"),
            (12_345_678, "12.3M"),
            (2**63 - 1, "9.22E"),
            (1e15, "1P"),
            (5.5e14, "550T"),
            # Above 2**53: exact ints just under a boundary keep their prefix.
            (999_499_999_999_999_938, "999P"),
            (999_499_999_999_999_999, "999P"),
            (999_500_000_000_000_000, "1E"),
            (999.4999999999999, "999"),
            (999.5, "1k"),
        ],
    )
    def test_compact_notation(self, value, shown):
        """Compact numbers: 3 significant digits and an SI prefix, at most 5 characters."""
        assert shown == _compact(value)
