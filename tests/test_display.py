from __future__ import annotations

import pytest

from nodemetrics._display import cut, ljust, printable, width


class TestPrintable:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("fetch", "fetch"),
            ("数据 é", "数据 é"),
            ("a\nb", "a\\nb"),
            ("\x1b[2J", "\\x1b[2J"),
            ("x\u200by", "x\\u200by"),
            ("\ud800", "\\ud800"),
            ("back\\slash\t", "back\\\\slash\\t"),
        ],
    )
    def test_escapes_only_what_is_not_printable(self, text, shown):
        """Printable text is kept; text with a control character is escaped as repr() does."""
        assert shown == printable(text)
        assert printable(text).isprintable()


class TestWidth:
    @pytest.mark.parametrize(
        ("text", "columns"),
        [
            ("", 0),
            ("abc", 3),
            ("数据", 4),
            ("\uff46\uff55\uff4c\uff4c", 8),
            ("e\u0301", 1),
            ("\u20dd", 0),
            ("\u1100\u1161\u11a8\u1100\u1161", 4),
            ("\u1100\ud7b0", 2),
        ],
        ids=["empty", "ascii", "wide", "fullwidth", "combining", "enclosing", "jamo", "jamo-ext"],
    )
    def test_columns_on_a_terminal(self, text, columns):
        """Wide and fullwidth characters take two columns, combining marks none."""
        assert columns == width(text)


class TestCut:
    @pytest.mark.parametrize(
        ("text", "columns", "shown"),
        [
            ("abc", 3, "abc"),
            ("abcd", 3, "ab…"),
            ("abc", 1, "…"),
            ("abc", 0, ""),
            ("abc", -5, ""),
            ("数据处理", 8, "数据处理"),
            ("数据处理", 7, "数据处…"),
            ("数据处理", 6, "数据…"),
            ("数据处理", 2, "…"),
            ("e\u0301e\u0301e\u0301", 3, "e\u0301e\u0301e\u0301"),
            ("e\u0301e\u0301e\u0301e", 3, "e\u0301e\u0301…"),
            # A Hangul syllable in jamo is cut whole, never between its jamo.
            ("\u1100\u1161\u11a8\u1100\u1161\u11a8", 3, "\u1100\u1161\u11a8…"),
        ],
    )
    def test_cut_to_columns(self, text, columns, shown):
        """A text too wide is cut to its longest start that fits with the ellipsis."""
        assert shown == cut(text, columns)
        assert width(cut(text, columns)) <= max(columns, 0)

    def test_pads_by_columns(self):
        """Padding counts columns on screen, not characters."""
        assert "数据  " == ljust("数据", 6)
