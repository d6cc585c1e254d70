"""``python -m nodemetrics``: look at a snapshot without writing code."""

from __future__ import annotations

import argparse
import json
import sys

from collections.abc import Sequence
from typing import IO

from ._metrics import NodeMetrics
from ._table import format_table


class SnapshotError(Exception):
    """A snapshot file that cannot be read or is not a snapshot."""


def load_snapshot(source: IO[str], name: str) -> dict[str, NodeMetrics]:
    """
    Read and validate a :meth:`NodeMetricsCollector.to_json` snapshot.

    Raises:
        SnapshotError: The text is not JSON, or not an object of node names
            to valid :class:`NodeMetrics` fields; the message says where.
    """
    try:
        data = json.load(source)
    except json.JSONDecodeError as e:
        msg = f"{name}: not valid JSON: {e}"
        raise SnapshotError(msg) from None
    except (OSError, UnicodeDecodeError) as e:
        msg = f"{name}: cannot read: {e}"
        raise SnapshotError(msg) from None
    if not isinstance(data, dict):
        msg = f"{name}: expected an object of node names to metrics, got {type(data).__name__}"
        raise SnapshotError(msg)
    snapshot = {}
    for node, fields in data.items():
        if not node:
            msg = f"{name}: a node name is empty"
            raise SnapshotError(msg)
        try:
            snapshot[node] = NodeMetrics.from_dict(fields)
        except (TypeError, ValueError) as e:
            msg = f"{name}: node {node!r}: {e}"
            raise SnapshotError(msg) from None
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a bad snapshot)."""
    parser = argparse.ArgumentParser(
        prog="python -m nodemetrics", description="Look at nodemetrics snapshots."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "show", help="print a to_json() snapshot as a table", description="Print a snapshot."
    )
    show.add_argument("snapshot", help="a file written from collector.to_json(), or - for stdin")
    show.add_argument("--format", choices=["table", "json"], default="table", help="default: table")
    args = parser.parse_args(argv)

    try:
        if args.snapshot == "-":
            snapshot = load_snapshot(sys.stdin, "<stdin>")
        else:
            try:
                with open(args.snapshot, encoding="utf-8") as f:  # noqa: PTH123
                    snapshot = load_snapshot(f, args.snapshot)
            except OSError as e:
                msg = f"{args.snapshot}: cannot read: {e.strerror}"
                raise SnapshotError(msg) from None
    except SnapshotError as e:
        print(f"nodemetrics: error: {e}".replace("\n", " "), file=sys.stderr)  # noqa: T201
        return 2

    if args.format == "json":
        out = json.dumps({node: m.to_dict() for node, m in snapshot.items()}, indent=2)
    else:
        out = format_table(snapshot)
    print(out)  # noqa: T201
    return 0
