"""How every exporter writes a node's name where only UTF-8 text can go."""

from __future__ import annotations


def label_value(node: str) -> str:
    r"""
    Return *node* as a label or attribute value: itself, if it can be UTF-8.

    A name holding a lone surrogate (what ``os.fsdecode()``, ``os.listdir()``
    or ``os.environ`` make of bytes that are not UTF-8) cannot be written in
    a scrape or an OTLP export, and would fail the whole page or lose the
    attribute: such a surrogate is written as its ``\udcxx`` escape instead,
    as ``python -m nodemetrics show`` prints it.
    """
    if node.isascii():
        return node
    try:
        node.encode("utf-8")
    except UnicodeEncodeError:
        return node.encode("utf-8", "backslashreplace").decode("utf-8")
    return node
