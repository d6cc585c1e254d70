"""
A poll of ``nodemetrics watch`` ends within its timeout, however slowly the server answers.

urlopen's ``timeout=`` bounds each socket operation: a server that sends a
byte of its headers or of its body within every timeout held a poll (and
``watch --once``) for as long as it kept sending. The servers here are real
sockets on 127.0.0.1, in this process's threads. Each trickles for at most
``GIVE_UP_S`` and then hangs up, so that a poll without a deadline fails these
tests (by its time and its message) instead of hanging them.
"""

from __future__ import annotations

import io
import itertools
import socket
import socketserver
import struct
import threading
import time

from collections.abc import Callable, Iterable, Iterator

import pytest

from nodemetrics._cli import main
from nodemetrics._watch import WatchError, fetch, watch


PACE_S = 0.2  # between two pieces of a trickled answer
GIVE_UP_S = 10.0  # a trickling server hangs up after this long
BOUND_S = 5.0  # a poll with a 1 s timeout must have failed by then
PAGE = b'nodemetrics_node_retries_total{node="n"} 1\n'


def body_forever() -> Iterator[bytes]:
    """The headers at once, then a body of one byte at a time that never ends."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    yield from itertools.repeat(b"#")


def headers_forever() -> Iterator[bytes]:
    """The status line and then headers, one byte at a time, never the blank line."""
    lines = itertools.chain([b"HTTP/1.1 200 OK\r\n"], itertools.repeat(b"X-Pad: 1\r\n"))
    return (bytes([byte]) for line in lines for byte in line)


def fast_body_forever() -> Iterator[bytes]:
    """The headers, then 511-byte pieces: every read gets data at once, the body never ends."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    yield from itertools.repeat(b"# more\n" * 73)


class Handler(socketserver.StreamRequestHandler):
    timeout = GIVE_UP_S  # reading the request, and each send

    server: Trickler

    def handle(self) -> None:
        with self.server.lock:
            n = self.server.connections
            self.server.connections += 1
            self.server.threads.append(threading.current_thread())
        while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
            pass  # the request's headers
        if n < len(self.server.pages):
            self.request.sendall(self.server.pages[n])
            if self.server.reset:
                self.request.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.request.close()
            return
        give_up = time.monotonic() + GIVE_UP_S
        try:
            for piece in self.server.answer():
                self.request.sendall(piece)
                if self.server.stop.wait(self.server.pace) or time.monotonic() > give_up:
                    return
        except OSError:
            return  # the client hung up: what a deadline does


class Trickler(socketserver.ThreadingTCPServer):
    """Answers its first connections with *pages*, then every other one with *answer*."""

    block_on_close = True  # server_close() joins the connections' threads

    def __init__(
        self,
        answer: Callable[[], Iterable[bytes]],
        *,
        pages: tuple[bytes, ...] = (),
        pace: float = PACE_S,
    ) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer = answer
        self.pages = pages
        self.pace = pace
        self.lock = threading.Lock()
        self.connections = 0
        self.reset = False
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/metrics"


@pytest.fixture
def serve() -> Iterator[Callable[..., Trickler]]:
    """Start a Trickler in a thread; stop it, and every connection's thread, at the end."""
    started: list[tuple[Trickler, threading.Thread]] = []

    def start(
        answer: Callable[[], Iterable[bytes]],
        *,
        pages: tuple[bytes, ...] = (),
        pace: float = PACE_S,
    ) -> Trickler:
        server = Trickler(answer, pages=pages, pace=pace)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop.set()
        server.shutdown()
        server.server_close()
        for t in [thread, *server.threads]:
            t.join(timeout=30)
            assert not t.is_alive()


def timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        result: object = call()
    except WatchError as e:
        result = e
    return result, time.monotonic() - start


TRICKLES = pytest.mark.parametrize(
    "answer",
    [body_forever, headers_forever, fast_body_forever],
    ids=["body one byte at a time", "headers one byte at a time", "endless fast body"],
)


@TRICKLES
def test_fetch_gives_up_at_its_timeout(serve, answer):
    """fetch() fails with WatchError once its timeout has passed, not after each read's."""
    server = serve(answer, pace=0.001 if answer is fast_body_forever else PACE_S)
    error, elapsed = timed(lambda: fetch(server.url, timeout=1.0))
    assert issubclass(type(error), WatchError), error
    assert f"{server.url}: cannot read: timed out, no complete answer arrived within 1 s" == str(
        error
    )
    assert 0.9 <= elapsed < BOUND_S


@TRICKLES
def test_watch_once_is_one_line_and_status_2(serve, answer, capsys):
    """`nodemetrics watch URL --once` against a trickling server: one line, exit status 2."""
    server = serve(answer, pace=0.001 if answer is fast_body_forever else PACE_S)
    # --interval 0.5 makes the poll's timeout 1 s (the interval, but at least 1 s, at most 5 s).
    status, elapsed = timed(lambda: main(["watch", server.url, "--once", "--interval", "0.5"]))
    captured = capsys.readouterr()
    assert (2, "") == (status, captured.out)
    assert (
        f"nodemetrics: error: {server.url}: cannot read: timed out, "
        "no complete answer arrived within 1 s\n"
    ) == captured.err
    assert elapsed < BOUND_S


def test_follow_mode_shows_the_failed_poll_and_goes_on(serve):
    """A later poll that trickles is shown as a failed poll, within its timeout, and retried."""
    server = serve(body_forever, pages=(b"HTTP/1.0 200 OK\r\n\r\n" + PAGE,))
    out, err = io.StringIO(), io.StringIO()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # after the trickling poll: Ctrl+C
            raise KeyboardInterrupt

    status, elapsed = timed(lambda: watch(server.url, interval=1.0, out=out, err=err, sleep=sleep))
    assert 0 == status
    assert 1 == out.getvalue().count("\nn ")  # the first poll's table, with node n
    assert (
        f"nodemetrics: poll failed: {server.url}: cannot read: timed out, "
        "no complete answer arrived within 1 s\n"
    ) == err.getvalue()
    assert elapsed < BOUND_S
    assert 2 == server.connections


def test_no_time_left_means_no_connection(serve):
    """A poll whose deadline has already passed (a zero timeout) gives up before connecting."""
    server = serve(body_forever)
    error, elapsed = timed(lambda: fetch(server.url, timeout=0.0))
    assert f"{server.url}: cannot read: timed out, no complete answer arrived within 0 s" == str(
        error
    )
    assert elapsed < BOUND_S
    assert 0 == server.connections


def test_a_reset_mid_answer_is_one_line(serve):
    """A server that resets the connection part-way through its answer: a WatchError naming it."""
    server = serve(body_forever, pages=(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n# a",))
    # The page's server thread sends those bytes and then resets the
    # connection (SO_LINGER with a zero timeout), instead of closing it.
    # Whether the reset overtakes the headers or the body's first bytes, the
    # client's next read fails with ECONNRESET, an OSError.
    server.reset = True
    error, elapsed = timed(lambda: fetch(server.url, timeout=5.0))
    assert issubclass(type(error), WatchError), error
    assert f"{server.url}: cannot read: Connection reset by peer" == str(error)
    assert elapsed < BOUND_S
