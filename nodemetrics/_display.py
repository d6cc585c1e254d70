"""
Text as a terminal shows it: control characters escaped, width in columns, cut to a width.

A terminal gives a wide East Asian character (``east_asian_width`` ``W`` or
``F``) two columns, and a combining mark (category ``Mn`` or ``Me``) or a
Hangul vowel or final consonant jamo none (a character of ambiguous width,
``A``, takes one, as terminals outside CJK locales show it),
so ``len()`` says nothing about how wide a cell is. Other zero-width
characters (``Cf``: a zero-width space, a soft hyphen) are not printable,
so :func:`printable` escapes them first. These helpers are what the table
and ``watch`` measure and cut with.
"""

from __future__ import annotations

import unicodedata


#: What a cut text ends with (one column).
ELLIPSIS = "…"
_COMBINING = frozenset({"Mn", "Me"})


def printable(text: str) -> str:
    r"""
    Return *text*, or its escaped twin if it holds a non-printable character.

    The escapes are ``repr()``'s (``\n``, ``\x1b``, ``\u2028``, ``\ud800``),
    so that text from outside (a node name, a field name, a server's answer)
    can neither move the cursor nor break a line.
    """
    return text if text.isprintable() else repr(text)[1:-1]


def _columns(char: str) -> int:
    if unicodedata.east_asian_width(char) in "WF":
        return 2
    # A Hangul syllable spelled out in jamo (as macOS writes file names)
    # takes the two columns of its leading consonant: its vowel and final
    # consonant, letters of their own to unicodedata, take none.
    if unicodedata.category(char) in _COMBINING or "\u1160" <= char <= "\u11ff":
        return 0
    if "\ud7b0" <= char <= "\ud7ff":
        return 0
    return 1


def width(text: str) -> int:
    """Return how many columns *text* (printable, see :func:`printable`) takes on a terminal."""
    if text.isascii():
        return len(text)
    return sum(_columns(char) for char in text)


def cut(text: str, columns: int) -> str:
    """
    Return *text* if it fits in *columns*, else its longest start that fits with ``…`` added.

    A combining mark stays with the character it follows; nothing fits in 0
    columns or fewer, so that gives ``""``.
    """
    if columns <= 0:
        return ""
    if text.isascii():
        return text if len(text) <= columns else text[: columns - 1] + ELLIPSIS
    room = columns - 1  # for the ellipsis, should one be needed
    used = 0
    end = None
    for i, char in enumerate(text):
        used += _columns(char)
        if end is None and used > room:
            end = i
        if used > columns:
            return text[:end] + ELLIPSIS
    return text


def ljust(text: str, columns: int) -> str:
    """Return *text* padded with spaces on the right to *columns* columns on a terminal."""
    return text + " " * (columns - width(text))
