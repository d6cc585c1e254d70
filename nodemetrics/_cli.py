"""
The ``nodemetrics`` command (also ``python -m nodemetrics``).

``show`` prints a saved :meth:`NodeMetricsCollector.to_json` snapshot as a
table, JSON or a self-contained HTML report; ``watch`` is a live view of a
running process, read from its Prometheus endpoint. Whatever the input, a
problem with it is one line on standard error and exit status 2, never a
traceback; so is an output that cannot be written (standard output closed,
a full disk). Text from the input in that line has its control characters
escaped, so that it stays one line and cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys

from collections.abc import Sequence
from typing import IO, Any, NoReturn

from ._display import printable
from ._metrics import NodeMetrics
from ._table import format_table


#: A snapshot of the default ``max_nodes`` (10,000) nodes is about 6 MB;
#: anything past this is not a snapshot (or is ``/dev/zero``).
MAX_SNAPSHOT_BYTES = 128 * 1024 * 1024
#: CPython's own default limit on int digits (3.11+), applied on every version.
_MAX_INT_DIGITS = 4300
_MAX_NAME_IN_MESSAGE = 60
_MAX_MESSAGE = 400


class SnapshotError(Exception):
    """A snapshot file that cannot be read or is not a snapshot."""


class _JSONLiteralError(ValueError):
    pass


def _parse_constant(literal: str) -> Any:
    msg = f"{literal} is not a number in JSON"
    raise _JSONLiteralError(msg)


def _parse_int(digits: str) -> int:
    if len(digits) > _MAX_INT_DIGITS:
        msg = f"an integer of {len(digits):,} digits is too long"
        raise _JSONLiteralError(msg)
    return int(digits)


def _name(node: str) -> str:
    shown = repr(node)
    if len(shown) > _MAX_NAME_IN_MESSAGE:
        shown = shown[: _MAX_NAME_IN_MESSAGE - 4] + "...'"
    return shown


def parse_snapshot(data: bytes, name: str) -> dict[str, NodeMetrics]:
    """
    Parse and validate the bytes of a :meth:`NodeMetricsCollector.to_json` snapshot.

    Args:
        data: The file's contents (UTF-8, a byte order mark allowed).
        name: What to call the input in messages (its path, or ``<stdin>``).

    Returns:
        The snapshot of each node, by name, in the file's order.

    Raises:
        SnapshotError: The bytes are not UTF-8, not JSON (``NaN``, ``Infinity``
            and integers of more than 4,300 digits included), nested too
            deeply, or not an object of node names to valid
            :class:`NodeMetrics` fields; the message names the problem.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        msg = f"{name}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}"
        raise SnapshotError(msg) from None
    if not text.strip():
        msg = f"{name}: empty, not a snapshot"
        raise SnapshotError(msg)
    try:
        parsed = json.loads(text, parse_constant=_parse_constant, parse_int=_parse_int)
        # A deep value that parsed may still be too deep for repr() in from_dict's message.
        return _validate(parsed, name)
    except _JSONLiteralError as e:
        msg = f"{name}: not a snapshot: {e}"
        raise SnapshotError(msg) from None
    except json.JSONDecodeError as e:
        msg = f"{name}: not valid JSON: {e}"
        raise SnapshotError(msg) from None
    except RecursionError:
        msg = f"{name}: not a snapshot: nested too deeply"
        raise SnapshotError(msg) from None


def _validate(data: object, name: str) -> dict[str, NodeMetrics]:
    if not isinstance(data, dict):
        msg = f"{name}: expected an object of node names to metrics, got {type(data).__name__}"
        raise SnapshotError(msg)
    if data and not any(isinstance(v, dict) for v in data.values()):
        fields = set(NodeMetrics().to_dict())
        if fields & set(data):
            msg = (
                f"{name}: this is one node's NodeMetrics.to_dict(), not a snapshot: "
                "save collector.to_json() instead"
            )
            raise SnapshotError(msg)
    snapshot = {}
    for node, fields in data.items():
        if not node:
            msg = f"{name}: a node name is empty"
            raise SnapshotError(msg)
        try:
            snapshot[node] = NodeMetrics.from_dict(fields)
        except (TypeError, ValueError) as e:
            msg = f"{name}: node {_name(node)}: {e}"
            raise SnapshotError(msg) from None
    return snapshot


def _read_limited(stream: IO[bytes], name: str) -> bytes:
    data = stream.read(MAX_SNAPSHOT_BYTES + 1)
    if len(data) > MAX_SNAPSHOT_BYTES:
        msg = f"{name}: larger than {MAX_SNAPSHOT_BYTES // 2**20} MiB, not a snapshot"
        raise SnapshotError(msg)
    return data


def _read_stdin() -> bytes:
    # Started with standard input closed (`<&-`), Python sets sys.stdin to
    # None; opened for writing only (`0>file`), reading it fails.
    stdin = sys.stdin
    if stdin is None:
        msg = "<stdin>: cannot read: standard input is closed"
        raise SnapshotError(msg)
    try:
        return _read_limited(stdin.buffer, "<stdin>")
    except OSError as e:
        msg = f"<stdin>: cannot read: {e.strerror or e}"
        raise SnapshotError(msg) from None


def read_snapshot(path: str) -> dict[str, NodeMetrics]:
    """
    Read and validate the snapshot at *path* (``-`` for standard input).

    A FIFO is read without waiting for a writer that never comes: with none,
    it reads as empty.

    Raises:
        SnapshotError: The file (or standard input: closed, or not open for
            reading) cannot be read, or is not a snapshot (see
            :func:`parse_snapshot`); the message names the problem.
    """
    if path == "-":
        return parse_snapshot(_read_stdin(), "<stdin>")
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):  # noqa: PTH116 -- a str path, as given
            msg = f"{path}: is a directory, not a snapshot"
            raise SnapshotError(msg)
        # O_NONBLOCK: opening a FIFO must not wait for a writer; reads then block again.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # (none on Windows)
        with contextlib.suppress(AttributeError, OSError):  # (nor, before 3.12, this)
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            data = _read_limited(f, path)
    except OSError as e:
        msg = f"{path}: cannot read: {e.strerror or e}"
        raise SnapshotError(msg) from None
    return parse_snapshot(data, path)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _version() -> str:
    from . import __version__  # noqa: PLC0415 -- read from the metadata only when asked

    return f"nodemetrics {__version__}"


class _Parser(argparse.ArgumentParser):
    # argparse quotes the arguments it refuses in its error line: escaped,
    # as any text from outside is (see printable), so that one cannot drive
    # the terminal. Its subcommands' parsers are of this class too.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nodemetrics",
        description=(
            "Look at nodemetrics: a saved snapshot (show) or a running process's "
            "Prometheus endpoint (watch)."
        ),
        epilog="A bad input gives one line naming the problem and exit status 2.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = commands.add_parser(
        "show",
        help="print a saved collector.to_json() snapshot as a table, JSON or HTML",
        description="Print a saved collector.to_json() snapshot.",
    )
    show.add_argument("snapshot", help="a file written from collector.to_json(), or - for stdin")
    show.add_argument(
        "--format",
        choices=["table", "json", "html"],
        default="table",
        help="table (default), json, or html: a self-contained report (> report.html)",
    )
    watch = commands.add_parser(
        "watch",
        help="a live view of a running process, read from its Prometheus endpoint",
        description=(
            "Poll a PrometheusExporter's /metrics and show, per node, executions per "
            "second and failure rate over the last interval, failures by category, "
            "retries, cancellations and p50/p90/p99 over the window (and p99 over the "
            "interval when the endpoint has histograms). Ctrl+C exits."
        ),
    )
    watch.add_argument("url", help="the /metrics URL, e.g. http://127.0.0.1:9464/metrics")
    watch.add_argument(
        "--interval",
        type=_positive_seconds,
        default=2.0,
        help="seconds between polls (default: 2)",
    )
    watch.add_argument("--once", action="store_true", help="print one table and exit")
    watch.add_argument(
        "--namespace",
        default="nodemetrics",
        help="the exporter's namespace= (default: nodemetrics)",
    )
    return parser


def _show(path: str, output_format: str) -> int:
    try:
        snapshot = read_snapshot(path)
    except SnapshotError as e:
        _error(str(e))
        return 2
    if output_format == "json":
        out = json.dumps({node: m.to_dict() for node, m in snapshot.items()}, indent=2)
    elif output_format == "html":
        from ._html import render_html  # noqa: PLC0415 -- only this format needs it

        out = render_html(snapshot, title=path if path != "-" else "stdin")
    else:
        out = format_table(snapshot)
    try:
        _write(sys.stdout, out + "\n")
    except BrokenPipeError:
        raise
    except OSError as e:  # a full disk, or standard output opened read-only
        _error(f"cannot write: {e.strerror or e}")
        _silence_stdout()
        return 2
    return 0


def _silence_stdout() -> None:
    # What stays in the buffer would fail again (and be reported, exit
    # status 120) when the interpreter flushes standard output at exit.
    with contextlib.suppress(OSError, ValueError):
        stdout = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != stdout:
            os.dup2(devnull, stdout)
            os.close(devnull)


def _write(stream: IO[str], text: str) -> None:
    # A node name may hold lone surrogates (JSON allows "\ud800"): never fail to print it.
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


def _error(message: str) -> None:
    # Whatever the message quotes from the input, escaped, stays one line
    # that cannot move the cursor. Without a standard error there is no one to tell.
    text = "nodemetrics: error: " + printable(message)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    if sys.stderr is not None:
        with contextlib.suppress(OSError):
            _write(sys.stderr, text + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``nodemetrics`` command line.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        The exit status: 0, or 2 for a bad input or an output that cannot be
        written (argparse's usage errors exit with 2 too), 130 after Ctrl+C
        while reading a snapshot.
    """
    args = _parser().parse_args(argv)
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        _error("cannot write: standard output is closed")
        return 2
    try:
        if args.command == "watch":
            from ._watch import watch  # noqa: PLC0415 -- needs prometheus_client

            return watch(args.url, interval=args.interval, once=args.once, namespace=args.namespace)
        return _show(args.snapshot, args.format)
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, as cat does.
        _silence_stdout()
        return 0
    except OSError as e:
        # What reaches here is a write that failed (watch's frames on a full
        # disk, say): reading and the network are handled where they happen.
        _error(f"cannot write: {e.strerror or e}")
        _silence_stdout()
        return 2
    except KeyboardInterrupt:
        return 130
