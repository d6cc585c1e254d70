"""
``nodemetrics watch URL``: a live table of a running process's nodes.

It polls the Prometheus text exposition that
:class:`~nodemetrics.exporters.prometheus.PrometheusExporter` serves, parses
it with prometheus_client's own parser, and compares each poll with the one
before. It reads both generations of the exporter's families: the window
quantiles from ``<ns>_node_window_duration_seconds`` if present, else from
the summary ``<ns>_node_duration_seconds``; the interval's p99 from the
histogram ``<ns>_node_duration_seconds_bucket`` when there is one; and
``<ns>_node_interruptions_total`` when it exists. Series that differ only in
other labels (a multiprocess scrape's ``pid``) are added up per node, except
the window quantiles, of which the largest is shown.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import math
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

import attrs

from ._display import cut, ljust, printable, width
from ._metrics import FAILURE_FIELDS
from ._table import _ms


if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_MAX_BODY_BYTES = 64 * 1024 * 1024
_TIMEOUT_S = 5.0
_MAX_NODE_WIDTH = 32
_MAX_PROBLEM = 300
_QUANTILES = ("0.5", "0.9", "0.99")
_CATEGORIES = tuple(category for category, _ in FAILURE_FIELDS)
_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"
# Terminal control: home, clear to end of line / of screen, hide / show the cursor.
_HOME, _EOL, _EOS, _HIDE, _SHOW = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[?25l", "\x1b[?25h"


class WatchError(Exception):
    """A poll that gave no nodemetrics data; the message names the problem in one line."""


@attrs.define
class NodeSample:
    """What one poll says about one node (counters as floats, as exposed)."""

    success: float = 0.0
    failure: float = 0.0
    failures: dict[str, float] = attrs.field(factory=dict)
    retries: float = 0.0
    cancellations: float = 0.0
    interruptions: float = 0.0
    window: dict[str, float] = attrs.field(factory=dict)
    old_window: dict[str, float] = attrs.field(factory=dict)
    buckets: dict[float, float] = attrs.field(factory=dict)


@attrs.frozen
class Scrape:
    """One poll of an endpoint: the nodes, which families exist, and when (monotonic s)."""

    nodes: dict[str, NodeSample]
    has_interruptions: bool
    has_histogram: bool
    at: float


def fetch(url: str, timeout: float = _TIMEOUT_S) -> str:
    """
    GET *url* and return its body as text, all within *timeout* seconds.

    The timeout bounds the whole request (connecting, the headers and the
    body, redirects included), not each read: a server that trickles its
    answer a byte at a time cannot hold a poll for longer.

    Raises:
        WatchError: Not an http(s) URL, unreachable, an HTTP error status, no
            complete answer within *timeout* seconds, a body over 64 MiB, or
            not UTF-8.
    """
    deadline = time.monotonic() + timeout
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as e:
        msg = f"{url}: not a valid URL: {e}"
        raise WatchError(msg) from None
    if scheme not in {"http", "https"}:
        msg = f"{url}: not an http:// or https:// URL"
        raise WatchError(msg)
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})  # noqa: S310 -- checked
    opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_body(response, url)
    except _Overdue:
        msg = f"{url}: cannot read: timed out, no complete answer arrived within {timeout:g} s"
        raise WatchError(msg) from None
    except urllib.error.HTTPError as e:
        msg = f"{url}: HTTP {e.code} {e.reason}"
        raise WatchError(msg) from None
    except urllib.error.URLError as e:
        msg = f"{url}: cannot connect: {e.reason}"
        raise WatchError(msg) from None
    except http.client.InvalidURL as e:
        msg = f"{url}: not a valid URL: {e}"
        raise WatchError(msg) from None
    except (http.client.HTTPException, ValueError) as e:
        msg = f"{url}: not an HTTP server's answer: {type(e).__name__}: {e}"
        raise WatchError(msg) from None
    except OSError as e:  # a reset while reading the body
        msg = f"{url}: cannot read: {e.strerror or e}"
        raise WatchError(msg) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        msg = f"{url}: not a Prometheus text exposition (not UTF-8 text)"
        raise WatchError(msg) from None


def _read_body(response: http.client.HTTPResponse, url: str) -> bytes:
    chunks = []
    size = 0
    while chunk := response.read(1 << 16):
        size += len(chunk)
        if size > _MAX_BODY_BYTES:
            msg = f"{url}: the page is larger than 64 MiB, not a metrics exposition"
            raise WatchError(msg)
        chunks.append(chunk)
    if response.length:  # the server closed before its Content-Length
        msg = f"{url}: cannot read: the page was cut short"
        raise WatchError(msg)
    return b"".join(chunks)


# urlopen's timeout= bounds each socket operation, not the request: a server
# that sends a byte within every timeout (of its headers or of its body) would
# hold a poll for as long as it likes. So every connection that fetch() opens
# connects within the time left before the poll's deadline, and its response
# reads through _DeadlineReader, which gives each wait for data only the time
# left and gives up once none is.


class _Overdue(Exception):  # noqa: N818 -- fetch() turns it into its WatchError
    """The poll's deadline passed before its answer was complete."""


class _DeadlineReader(io.RawIOBase):
    """A response's socket, read so that no read waits past *deadline* (monotonic s)."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        left = self._deadline - time.monotonic()
        if not left > 0:  # (settimeout(0) would mean "never wait", not "give up")
            raise _Overdue
        self._sock.settimeout(left)
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            raise _Overdue from None

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _response_class(deadline: float) -> type[http.client.HTTPResponse]:
    class Response(http.client.HTTPResponse):
        def __init__(
            self,
            sock: socket.socket,
            debuglevel: int = 0,
            method: str | None = None,
            url: str | None = None,
        ) -> None:
            super().__init__(sock, debuglevel, method, url)
            # Nothing was read yet: the buffer is empty, and detach() keeps the socket open.
            self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))

    return Response


class _DeadlineOpen(urllib.request.AbstractHTTPHandler):
    """Opens each connection within the time left, and bounds the reads of its answer."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self._deadline = deadline
        self._response = _response_class(deadline)

    def do_open(
        self,
        http_class: Callable[..., http.client.HTTPConnection],
        req: urllib.request.Request,
        **http_conn_args: Any,
    ) -> http.client.HTTPResponse:
        def connection(host: str, /, **kwargs: Any) -> http.client.HTTPConnection:
            left = self._deadline - time.monotonic()
            if not left > 0:  # a redirect that came too late, or no timeout at all
                raise _Overdue
            conn: http.client.HTTPConnection = http_class(host, **{**kwargs, "timeout": left})
            conn.response_class = self._response
            return conn

        return super().do_open(connection, req, **http_conn_args)


class _HTTPHandler(_DeadlineOpen, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_DeadlineOpen, urllib.request.HTTPSHandler):
    pass


def parse(text: str, *, url: str, namespace: str, at: float) -> Scrape:
    """
    Parse a Prometheus text exposition into the nodemetrics nodes it holds.

    Args:
        text: The page.
        url: Where it came from, for messages.
        namespace: The exporter's ``namespace=``.
        at: When it was fetched (``time.monotonic()``).

    Raises:
        WatchError: prometheus_client is missing, the page is not a Prometheus
            exposition, or it has no ``<namespace>_node_*`` family.
    """
    try:
        from prometheus_client.parser import (  # noqa: PLC0415 -- an optional dependency
            text_string_to_metric_families,
        )
    except ImportError:
        msg = "watch needs prometheus_client: pip install 'nodemetrics[prometheus]'"
        raise WatchError(msg) from None
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # noqa: BLE001 -- the parser raises several kinds on a bad page
        msg = f"{url}: not a Prometheus text exposition: {e}"
        raise WatchError(msg) from None
    prefix = f"{namespace}_node_"
    # A family without a TYPE line keeps its _total in the parser's name.
    names = {family.name.removesuffix("_total") for family in families}
    if not any(name.startswith(prefix) for name in names):
        msg = (
            f"{url}: no {prefix}* metrics there (not a nodemetrics PrometheusExporter, "
            "or another --namespace?)"
        )
        raise WatchError(msg)
    nodes: dict[str, NodeSample] = {}
    for family in families:
        for sample in family.samples:
            node = sample.labels.get("node")
            if node is not None and sample.name.startswith(prefix):
                _add(nodes.setdefault(node, NodeSample()), sample.name[len(prefix) :], sample)
    return Scrape(
        nodes=nodes,
        has_interruptions=f"{prefix}interruptions" in names,
        has_histogram=any(s.buckets for s in nodes.values()),
        at=at,
    )


_PER_NODE = {
    "retries_total": "retries",
    "cancellations_total": "cancellations",
    "interruptions_total": "interruptions",
}
_OUTCOMES = {"success": "success", "failure": "failure"}


def _add(node: NodeSample, name: str, sample: object) -> None:
    labels: dict[str, str] = sample.labels  # type: ignore[attr-defined]
    value = float(sample.value)  # type: ignore[attr-defined]
    field = _PER_NODE.get(name)
    if name == "executions_total":
        field = _OUTCOMES.get(labels.get("outcome", ""))
    if field is not None:
        setattr(node, field, getattr(node, field) + value)
    elif name == "failures_total":
        category = labels.get("category", "other")
        node.failures[category] = node.failures.get(category, 0.0) + value
    elif name in {"window_duration_seconds", "duration_seconds"} and "quantile" in labels:
        into = node.window if name == "window_duration_seconds" else node.old_window
        quantile = labels["quantile"]
        into[quantile] = max(into.get(quantile, -math.inf), value)
    elif name == "duration_seconds_bucket" and "le" in labels:
        try:
            le = float(labels["le"])
        except ValueError:
            return  # not a bucket bound: nothing a histogram_quantile could use
        node.buckets[le] = node.buckets.get(le, 0.0) + value


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """
    Estimate the *q* quantile from cumulative histogram buckets, as PromQL does.

    Linear interpolation inside the bucket holding the rank; the lowest
    bucket starts at 0 (when its bound is positive); a rank in the ``+Inf``
    bucket gives the highest finite bound.

    Args:
        q: The quantile, in [0, 1].
        buckets: ``(upper bound, cumulative count)`` pairs, in any order.

    Returns:
        The estimate, or None without observations or without a ``+Inf`` bucket.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    # Counts read at slightly different moments can dip; PromQL evens them out too.
    counts = []
    highest = 0.0
    for _, count in ordered:
        highest = max(highest, count)
        counts.append(highest)
    rank = q * counts[-1]
    # (A NaN count matches no rank: then, as past the last bound, the last bucket.)
    i = next((i for i, count in enumerate(counts) if count >= rank), len(counts) - 1)
    if i == len(ordered) - 1:
        return ordered[-2][0]
    end = ordered[i][0]
    if i == 0:
        if end <= 0:
            return end
        start, below = 0.0, 0.0
    else:
        start, below = ordered[i - 1][0], counts[i - 1]
    inside = counts[i] - below
    return end if inside <= 0 else start + (end - start) * (rank - below) / inside


def _delta(now: float, before: float) -> float:
    # A counter that went down was reset (a node reset, a restart): count from 0, as rate() does.
    return now - before if now >= before else now


def _bucket_deltas(
    now: dict[float, float], before: dict[float, float]
) -> list[tuple[float, float]]:
    if now.get(math.inf, 0.0) < before.get(math.inf, 0.0):
        return list(now.items())  # reset since the last poll: every bucket restarted
    return [(le, count - before.get(le, 0.0)) for le, count in now.items()]


def _count(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"


def _row(
    node: str, cur: NodeSample, prev: NodeSample | None, dt: float, scrape: Scrape
) -> list[str]:
    runs = cur.success + cur.failure
    rate = fail = p99_interval = "-"
    if prev is not None and dt > 0:
        done = _delta(cur.success, prev.success) + _delta(cur.failure, prev.failure)
        rate = f"{done / dt:,.1f}"
        if done:
            fail = f"{_delta(cur.failure, prev.failure) / done:.1%}"
        if scrape.has_histogram:
            seconds = histogram_quantile(0.99, _bucket_deltas(cur.buckets, prev.buckets))
            p99_interval = _ms(None if seconds is None else seconds * 1000)
    window = cur.window or cur.old_window
    row = [
        cut(printable(node), _MAX_NODE_WIDTH),
        _count(runs),
        rate,
        fail,
        *(_count(cur.failures.get(category, 0.0)) for category in _CATEGORIES),
        _count(cur.retries),
        _count(cur.cancellations),
    ]
    if scrape.has_interruptions:
        row.append(_count(cur.interruptions))
    row.extend(_ms(window[q] * 1000 if q in window else None) for q in _QUANTILES)
    if scrape.has_histogram:
        row.append(p99_interval)
    return row


def render(scrape: Scrape, previous: Scrape | None) -> str:
    """
    Return the table for *scrape*, with rates over the time since *previous*.

    Rows are sorted by node name. Without a previous poll the interval
    columns show ``-``.
    """
    headers = ["node", "runs", "exec/s", "fail%", "tmo", "val", "net", "oth", "retry", "canc"]
    if scrape.has_interruptions:
        headers.append("intr")
    headers += ["p50 ms", "p90 ms", "p99 ms"]
    if scrape.has_histogram:
        headers.append("p99 int")
    dt = scrape.at - previous.at if previous is not None else 0.0
    rows = [
        _row(
            node,
            sample,
            None if previous is None else previous.nodes.get(node, NodeSample()),
            dt,
            scrape,
        )
        for node, sample in sorted(scrape.nodes.items())
    ]
    if not rows:
        return "(no node has recorded anything yet)"
    widths = [max(len(h), *(width(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = ljust(cells[0], widths[0])
        rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
        return " ".join([first, *rest])

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _one_line(problem: str) -> str:
    # A server's text (a reason phrase, a status line) may hold terminal
    # escapes: escaped, they can neither redraw the screen nor break the line.
    text = printable(problem)
    return text if len(text) <= _MAX_PROBLEM else text[: _MAX_PROBLEM - 3] + "..."


def watch(  # noqa: PLR0913 -- the command's options, plus what tests replace
    url: str,
    *,
    interval: float = 2.0,
    once: bool = False,
    namespace: str = "nodemetrics",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """
    Poll *url* every *interval* seconds and show its nodes until Ctrl+C.

    On a terminal the view is redrawn in place; otherwise each poll prints
    one table (failed polls after the first go to *err*). The first poll
    must work: if it does not, one line on *err* names the problem. Later
    failed polls are shown and retried.

    Args:
        url: The exporter's endpoint; ``http://`` is assumed without a scheme.
        interval: Seconds between polls.
        once: Print one table (without the interval columns) and return.
        namespace: The exporter's ``namespace=``.
        out: Where the view goes (standard output by default).
        err: Where problems go (standard error by default).
        clock: A monotonic clock in seconds.
        sleep: Waits the given seconds.

    Returns:
        0 (after Ctrl+C, or with *once*), or 2 when the first poll failed.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if err is None:  # started without standard error (pythonw): no one to tell
        err = io.StringIO()
    if "://" not in url:
        url = f"http://{url}"

    def poll() -> Scrape:
        at = clock()
        return parse(
            fetch(url, timeout=min(_TIMEOUT_S, max(interval, 1.0))),
            url=url,
            namespace=namespace,
            at=at,
        )

    try:
        current = poll()
    except WatchError as e:
        err.write(f"nodemetrics: error: {_one_line(str(e))}\n")
        return 2
    except KeyboardInterrupt:  # while waiting for the first answer
        return 0
    if once:
        out.write(render(current, None) + "\n")
        return 0
    return _follow(
        current, poll, interval=interval, url=url, out=out, err=err, clock=clock, sleep=sleep
    )


def _follow(  # noqa: PLR0913 -- watch()'s state, passed down whole
    current: Scrape,
    poll: Callable[[], Scrape],
    *,
    interval: float,
    url: str,
    out: IO[str],
    err: IO[str],
    clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> int:
    terminal = out.isatty()
    previous: Scrape | None = None
    problem: str | None = None
    try:
        with _terminal_view(out) if terminal else contextlib.nullcontext():
            due = clock()
            while True:
                if terminal:
                    _draw(out, url, interval, render(current, previous), problem)
                elif problem is None:
                    table = render(current, previous)
                    out.write(f"# {time.strftime('%H:%M:%S')} {url}\n{table}\n\n")
                else:
                    err.write(f"nodemetrics: poll failed: {problem}\n")
                out.flush()
                # Polls keep to the interval; one slower than it (a big page: prometheus_client
                # parses 1,000 nodes in about a second) delays the next, and no burst follows.
                now = clock()
                due = max(due + interval, now)
                sleep(due - now)
                try:
                    previous, current, problem = current, poll(), None
                except WatchError as e:
                    problem = _one_line(str(e))
    except KeyboardInterrupt:
        return 0
    except _Terminated:
        return 128 + signal.SIGTERM


class _Terminated(BaseException):
    """SIGTERM arrived while the view had the terminal."""


def _terminate(_signum: int, _frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _terminal_view(out: IO[str]) -> Iterator[None]:
    # The cursor is hidden while the view is drawn: show it again however the
    # view ends, a `kill` included, or the user's shell is left without one.
    installed = threading.current_thread() is threading.main_thread()
    if installed:
        before = signal.signal(signal.SIGTERM, _terminate)
    out.write(_HIDE + _HOME + "\x1b[2J")
    try:
        yield
    finally:
        out.write(_SHOW + "\n")
        out.flush()
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _draw(out: IO[str], url: str, interval: float, table: str, problem: str | None) -> None:
    # A line wider than the terminal wraps, and a frame taller than it scrolls:
    # either would break drawing over the last frame, so cut both to size.
    # Every line ends in a newline, so the frame leaves its last row free
    # (but a terminal of one row gets one line), and its last column too.
    columns, rows = shutil.get_terminal_size()
    room = max(rows - 1, 1)
    lines = [
        f"nodemetrics watch {url}  every {interval:g}s  {time.strftime('%H:%M:%S')}  Ctrl+C quits",
        "exec/s, fail%, p99 int: over the last interval; p50/p90/p99: over each node's window",
        f"last poll failed, retrying: {problem}" if problem else "",
        "",
        *table.splitlines(),
    ]
    if room == 1:
        lines = lines[:1]
    elif len(lines) > room:
        hidden = len(lines) - (room - 1)
        lines = [*lines[: room - 1], f"... and {hidden} more node{'s' if hidden > 1 else ''}"]
    lines = [cut(line, columns - 1) for line in lines]
    out.write(_HOME + "".join(f"{line}{_EOL}\n" for line in lines) + _EOS)
