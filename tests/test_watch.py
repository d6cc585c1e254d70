from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
import urllib.request

from pathlib import Path
from typing import ClassVar

import pytest

from nodemetrics import _watch
from nodemetrics._watch import WatchError, fetch, histogram_quantile, parse, watch


# A separate process: a collector exposed by the real PrometheusExporter through
# prometheus_client.start_http_server, and a plain HTTP server for hand-written
# pages. It reads one JSON command per line on stdin and answers "ok" when done,
# so a test knows exactly what was recorded between two polls.
SERVER = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from prometheus_client import CollectorRegistry, start_http_server
from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter

collector = NodeMetricsCollector()
registry = CollectorRegistry()
registry.register(PrometheusExporter(collector))
metrics, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
pages = {}

class Pages(BaseHTTPRequestHandler):
    def do_GET(self):
        status, kind, body = pages.get(self.path, (404, "text/plain", b"no such page"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

other = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
threading.Thread(target=other.serve_forever, daemon=True).start()
print(metrics.server_port, other.server_port, flush=True)
errors = {"timeout": TimeoutError, "network": ConnectionError, "validation": ValueError}
for line in sys.stdin:
    cmd = json.loads(line)
    for _ in range(cmd.get("n", 1)):
        if cmd["op"] == "success":
            collector.record_success(cmd["node"], cmd["ms"])
        elif cmd["op"] == "failure":
            collector.record_failure(cmd["node"], cmd["ms"], errors[cmd["category"]]())
        elif cmd["op"] == "retry":
            collector.record_retry(cmd["node"])
        elif cmd["op"] == "page":
            body = cmd["text"].encode(cmd.get("encoding", "utf-8"))
            pages[cmd["path"]] = (cmd.get("status", 200), cmd.get("type", "text/plain"), body)
    print("ok", flush=True)
"""


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        metrics_port, pages_port = self.proc.stdout.readline().split()
        self.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        self.pages = f"http://127.0.0.1:{pages_port}"

    def send(self, **cmd) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        assert "ok\n" == self.proc.stdout.readline()

    def page(self, path, text, **kw) -> str:
        self.send(op="page", path=path, text=text, **kw)
        return self.pages + path

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


class FakeTime:
    """A clock that moves only when the watcher sleeps; sleeping runs the next step."""

    def __init__(self, steps) -> None:
        self.now = 1000.0
        self.steps = list(steps)
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if not self.steps:
            raise KeyboardInterrupt  # as Ctrl+C would, during the wait
        self.steps.pop(0)()


def run_watch(url, steps, **kw):
    out, err = io.StringIO(), io.StringIO()
    fake = FakeTime(steps)
    code = watch(url, out=out, err=err, clock=fake.clock, sleep=fake.sleep, **kw)
    return code, out.getvalue(), err.getvalue()


def table_rows(text):
    """Each printed table as {node: {column: cell}}."""
    tables = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if len(lines) < 2:
            continue
        headers = lines[0].replace(" ms", "_ms").replace("p99 int", "p99_int").split()
        rows = {}
        for line in lines[2:]:
            cells = line.split()
            rows[cells[0]] = dict(zip(headers, cells, strict=True))
        tables.append(rows)
    return tables


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"


class TestHistogramQuantile:
    BUCKETS: ClassVar = [(0.1, 10.0), (0.5, 20.0), (1.0, 20.0), (math.inf, 20.0)]

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            (0.5, 0.1),  # rank 10 ends the first bucket
            (0.25, 0.05),  # halfway through [0, 0.1]
            (0.99, 0.1 + 0.4 * 9.8 / 10),  # rank 19.8 inside (0.1, 0.5]
            (1.0, 0.5),  # the first bucket that reaches the rank
        ],
    )
    def test_linear_inside_the_bucket(self, q, expected):
        """Linear interpolation inside the bucket holding the rank, as PromQL's."""
        assert expected == pytest.approx(histogram_quantile(q, reversed(self.BUCKETS)))

    def test_rank_in_inf_bucket(self):
        """A rank past the last finite bound gives that bound."""
        assert 1.0 == histogram_quantile(0.99, [(0.5, 1.0), (1.0, 2.0), (math.inf, 10.0)])

    def test_non_positive_first_bound(self):
        """A first bucket bounded at or below 0 gives its bound, not an interpolation."""
        assert 0.0 == histogram_quantile(0.1, [(0.0, 5.0), (1.0, 6.0), (math.inf, 6.0)])

    def test_dipping_counts_are_evened_out(self):
        """Cumulative counts that dip (read at different moments) do not go backwards."""
        buckets = [(0.1, 2.0), (0.5, 1.0), (1.0, 10.0), (math.inf, 10.0)]
        # rank 5 in (0.5, 1.0], whose bucket holds 10 - 2 (not 10 - 1) observations.
        assert 0.5 + 0.5 * 3 / 8 == pytest.approx(histogram_quantile(0.5, buckets))

    @pytest.mark.parametrize(
        "buckets",
        [[], [(math.inf, 3.0)], [(0.1, 1.0), (0.5, 2.0)], [(0.1, 0.0), (math.inf, 0.0)]],
        ids=["none", "only +Inf", "no +Inf", "no observations"],
    )
    def test_undefined(self, buckets):
        """No estimate without two buckets, a +Inf bucket, and an observation."""
        assert histogram_quantile(0.99, buckets) is None


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TestAgainstExporter:
    def test_rates_over_the_interval(self, server):
        """exec/s and fail% count only what happened between two polls."""
        server.send(op="success", node="rates", ms=4.0, n=10)
        server.send(op="failure", node="rates", ms=4.0, category="timeout", n=2)
        steps = [
            lambda: server.send(op="success", node="rates", ms=4.0, n=6),
            lambda: server.send(op="failure", node="rates", ms=4.0, category="network", n=2),
        ]
        code, out, err = run_watch(server.metrics, steps, interval=2.0)
        assert (0, "") == (code, err)
        first, second, third = (t["rates"] for t in table_rows(out))
        assert ("12", "-", "-", "2", "0") == (
            first["runs"],
            first["exec/s"],
            first["fail%"],
            first["tmo"],
            first["net"],
        )
        assert ("18", "3.0", "0.0%") == (second["runs"], second["exec/s"], second["fail%"])
        assert ("20", "1.0", "100.0%", "2", "2") == (
            third["runs"],
            third["exec/s"],
            third["fail%"],
            third["tmo"],
            third["net"],
        )
        assert "4.000" == third["p50_ms"] == third["p99_ms"]
        # Today's exporter has neither a histogram nor interruptions; the coming one
        # has both: the columns follow what the endpoint serves.
        with urllib.request.urlopen(server.metrics, timeout=30) as response:  # noqa: S310
            exposition = response.read().decode()
        assert ("_duration_seconds_bucket{" in exposition) == ("p99_int" in third)
        assert ("_interruptions_total{" in exposition) == ("intr" in third)

    def test_once(self, server):
        """--once prints one table, from a separate process, and exits 0."""
        server.send(op="success", node="once", ms=2.0, n=3)
        server.send(op="retry", node="once")
        result = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "watch", server.metrics, "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (0, "") == (result.returncode, result.stderr)
        (table,) = table_rows(result.stdout)
        assert ("3", "1", "2.000") == (
            table["once"]["runs"],
            table["once"]["retry"],
            table["once"]["p50_ms"],
        )

    def test_a_full_standard_output_is_one_line_and_status_2(self, server):
        """--once to a full disk (/dev/full): one line on standard error, status 2, no traceback."""
        if not os.path.exists("/dev/full"):  # noqa: PTH110
            pytest.skip("needs /dev/full")
        server.send(op="success", node="full", ms=2.0)
        with open("/dev/full", "w") as full:  # noqa: PTH123
            result = subprocess.run(  # noqa: S603 -- our own interpreter
                [sys.executable, "-m", "nodemetrics", "watch", server.metrics, "--once"],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )
        assert (2, "nodemetrics: error: cannot write: No space left on device\n") == (
            result.returncode,
            result.stderr,
        )

    def test_not_a_terminal_prints_a_table_per_poll_until_ctrl_c(self, server):
        """Piped output gets one table per poll; SIGINT ends it with status 0."""
        server.send(op="success", node="piped", ms=1.0)
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "watch", server.metrics, "--interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A test run started in the background of a shell without job
            # control ignores SIGINT, and a child inherits that: the watch
            # would then never see this test's Ctrl+C.
            preexec_fn=_default_sigint,  # noqa: PLW1509 -- one call, before exec
        )
        assert proc.stdout is not None
        headers = 0
        while headers < 3:
            line = proc.stdout.readline()
            assert line, "watch ended early"
            headers += line.startswith("node ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert (0, "") == (proc.returncode, err)

    def test_later_failures_are_shown_and_retried(self, server):
        """A poll that fails after the first is reported, and the next one shows the table."""
        url = server.page("/flaky", "# TYPE nodemetrics_node_retries counter\n")
        steps = [
            lambda: server.page("/flaky", "gone", status=503),
            lambda: server.page("/flaky", 'nodemetrics_node_retries_total{node="n"} 4\n'),
        ]
        code, out, err = run_watch(url, steps)
        assert 0 == code
        assert f"nodemetrics: poll failed: {url}: HTTP 503 Service Unavailable\n" == err
        assert "(no node has recorded anything yet)" in out
        assert "4" == table_rows(out)[-1]["n"]["retry"]

    def test_terminal_redraws_in_place(self, server):
        """On a terminal each poll moves home and clears; a failed poll shows in the view."""
        url = server.page("/tty", 'nodemetrics_node_retries_total{node="n"} 1\n')
        steps = [lambda: server.page("/tty", "oops", status=500)]

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        out = Terminal()
        fake = FakeTime(steps)
        assert 0 == watch(url, out=out, clock=fake.clock, sleep=fake.sleep)
        text = out.getvalue()
        assert text.startswith("\x1b[?25l\x1b[H\x1b[2J")
        assert text.endswith("\x1b[?25h\n")
        frames = text.split("\x1b[H")[2:]
        assert 2 == len(frames)
        assert "last poll failed, retrying" not in frames[0]
        assert f"last poll failed, retrying: {url}: HTTP 500" in frames[1]
        assert all(frame.count("node runs") == 1 for frame in frames)


NEW_FAMILIES = """\
# HELP {ns}_node_executions_total Executions of a node, by outcome.
# TYPE {ns}_node_executions_total counter
{ns}_node_executions_total{{node="fetch",outcome="success",pid="1"}} {ok1}
{ns}_node_executions_total{{node="fetch",outcome="success",pid="2"}} {ok2}
{ns}_node_executions_total{{node="fetch",outcome="failure",pid="1"}} 0
{ns}_node_executions_total{{node="fetch",outcome="unknown",pid="1"}} 5
{ns}_node_info{{version="1"}} 1
other_metric{{node="fetch"}} 1
# TYPE {ns}_node_failures_total counter
{ns}_node_failures_total{{node="fetch",category="timeout",pid="1"}} 0
# TYPE {ns}_node_interruptions_total counter
{ns}_node_interruptions_total{{node="fetch",pid="1"}} 2
{ns}_node_interruptions_total{{node="fetch",pid="2"}} 1
# TYPE {ns}_node_duration_seconds histogram
{ns}_node_duration_seconds_bucket{{node="fetch",le="0.01",pid="1"}} {b1}
{ns}_node_duration_seconds_bucket{{node="fetch",le="0.1",pid="1"}} {b2}
{ns}_node_duration_seconds_bucket{{node="fetch",le="+Inf",pid="1"}} {b2}
{ns}_node_duration_seconds_bucket{{node="fetch",le="0.01",pid="2"}} {ok2}
{ns}_node_duration_seconds_bucket{{node="fetch",le="0.1",pid="2"}} {ok2}
{ns}_node_duration_seconds_bucket{{node="fetch",le="+Inf",pid="2"}} {ok2}
{ns}_node_duration_seconds_count{{node="fetch",pid="1"}} {b2}
{ns}_node_duration_seconds_sum{{node="fetch",pid="1"}} 1.0
# TYPE {ns}_node_window_duration_seconds summary
{ns}_node_window_duration_seconds{{node="fetch",quantile="0.5",pid="1"}} 0.005
{ns}_node_window_duration_seconds{{node="fetch",quantile="0.5",pid="2"}} 0.007
{ns}_node_window_duration_seconds{{node="fetch",quantile="0.9",pid="1"}} 0.02
{ns}_node_window_duration_seconds{{node="fetch",quantile="0.99",pid="1"}} 0.09
{ns}_node_window_duration_seconds_count{{node="fetch",pid="1"}} {b2}
{ns}_node_window_duration_seconds_sum{{node="fetch",pid="1"}} 1.0
"""


class TestNewFamilies:
    @pytest.mark.parametrize("ns", ["nodemetrics", "myapp"])
    def test_histogram_window_summary_and_interruptions(self, server, ns):
        """The coming exporter's families, from two processes, read over HTTP."""
        path = f"/new-{ns}"
        url = server.page(path, NEW_FAMILIES.format(ns=ns, ok1=100, ok2=10, b1=50, b2=100))
        # Next interval: pid 1 runs 100 more, all in (0.01, 0.1]; pid 2 runs 0.
        steps = [
            lambda: server.page(path, NEW_FAMILIES.format(ns=ns, ok1=200, ok2=10, b1=50, b2=200))
        ]
        code, out, err = run_watch(url, steps, interval=4.0, namespace=ns)
        assert (0, "") == (code, err)
        first, second = (t["fetch"] for t in table_rows(out))
        assert ("110", "-", "3", "-") == (
            first["runs"],
            first["exec/s"],
            first["intr"],
            first["p99_int"],
        )
        # The window quantiles come from the new summary; the largest of the two pids.
        assert ("7.000", "20.0", "90.0") == (first["p50_ms"], first["p90_ms"], first["p99_ms"])
        # rank 99 of the 100 new ones, all in (10 ms, 100 ms]: 10 + 90 * 99/100 ms.
        assert ("210", "25.0", "99.1") == (second["runs"], second["exec/s"], second["p99_int"])

    def test_old_summary_is_ignored_when_the_window_summary_exists(self, server):
        """With both, the window quantiles come from _window_duration_seconds."""
        text = (
            NEW_FAMILIES.format(ns="nodemetrics", ok1=1, ok2=0, b1=1, b2=1)
            + 'nodemetrics_node_duration_seconds{node="fetch",quantile="0.5"} 9.0\n'
        )
        code, out, _ = run_watch(server.page("/both", text), [], once=True)
        assert 0 == code
        assert "7.000" == table_rows(out)[0]["fetch"]["p50_ms"]


class TestFirstPollFails:
    @pytest.mark.parametrize(
        ("setup", "message"),
        [
            (lambda s: closed_port_url(), "cannot connect: [Errno 111] Connection refused"),
            (
                lambda s: s.page("/html", "<!DOCTYPE html><p>hello</p>", type="text/html"),
                "not a Prometheus text exposition: ",
            ),
            (
                lambda s: s.page("/json", '{"fetch": 1}', type="application/json"),
                "not a Prometheus text exposition: ",
            ),
            (
                lambda s: s.page(
                    "/other",
                    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n",
                ),
                "no nodemetrics_node_* metrics there",
            ),
            (lambda s: s.page("/blank", ""), "no nodemetrics_node_* metrics there"),
            (lambda s: s.page("/missing", "x", status=404), "HTTP 404 Not Found"),
            (lambda s: s.pages.replace("http://", "ftp://"), "not an http:// or https:// URL"),
        ],
        ids=["unreachable", "html", "json", "other metrics", "empty page", "404", "ftp"],
    )
    def test_one_line_and_status_2(self, server, setup, message):
        """The first poll's problem is one line naming it, status 2, no table."""
        url = setup(server)
        code, out, err = run_watch(url, [])
        assert (2, "") == (code, out)
        assert err.startswith(f"nodemetrics: error: {url}: ")
        assert 1 == len(err.splitlines())
        assert message in err

    def test_the_program_exits_2(self):
        """The real program, in its own process, says the same and exits 2."""
        url = closed_port_url()
        result = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "watch", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (2, "") == (result.returncode, result.stdout)
        assert (
            f"nodemetrics: error: {url}: cannot connect: [Errno 111] Connection refused\n"
            == result.stderr
        )

    @pytest.mark.parametrize(
        ("answer", "message"),
        [
            (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP server's answer: BadStatusLine"),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort", "cut short"),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n", "cannot read: timed out"),
        ],
        ids=["not HTTP", "cut short", "stalls"],
    )
    def test_broken_servers(self, answer, message):
        """A server that answers garbage, or stops halfway, is named as such."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            url = f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"

            def serve():
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)
                    if message != "cannot read: timed out":
                        return
                    conn.recv(1)  # hold the connection until the client gives up

            thread = threading.Thread(target=serve)
            thread.start()
            with pytest.raises(WatchError) as info:
                fetch(url, timeout=0.5)
            thread.join(timeout=30)
        assert str(info.value).startswith(f"{url}: ")
        assert message in str(info.value)

    def test_too_large(self, server, monkeypatch):
        """A page past the size limit is refused without being parsed."""
        monkeypatch.setattr(_watch, "_MAX_BODY_BYTES", 10)
        url = server.page("/large", 'nodemetrics_node_retries_total{node="n"} 2\n')
        with pytest.raises(WatchError, match="larger than 64 MiB"):
            fetch(url)

    def test_without_prometheus_client(self, monkeypatch):
        """Without prometheus_client, watch says which extra to install."""
        monkeypatch.setitem(sys.modules, "prometheus_client.parser", None)
        with pytest.raises(WatchError, match=r"pip install 'nodemetrics\[prometheus\]'"):
            parse("", url="u", namespace="nodemetrics", at=0.0)

    def test_no_scheme_means_http(self, server):
        """host:port/path works without http://."""
        url = server.page("/bare", 'nodemetrics_node_retries_total{node="n"} 2\n')
        code, out, _ = run_watch(url.removeprefix("http://"), [], once=True)
        assert (0, "2") == (code, table_rows(out)[0]["n"]["retry"])

    def test_not_utf8(self, server):
        """A page that is not UTF-8 is named as such."""
        url = server.page("/latin1", "café 1\n", encoding="latin-1")
        code, _, err = run_watch(url, [], once=True)
        assert 2 == code
        assert "(not UTF-8 text)" in err


REQUIRE_TMUX = os.environ.get("NODEMETRICS_REQUIRE_TMUX") == "1"


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        if REQUIRE_TMUX:
            pytest.fail("tmux is required (NODEMETRICS_REQUIRE_TMUX=1) but not on PATH")
        pytest.skip("tmux is not installed (Debian: apt-get install tmux)")
    socket_path = str(tmp_path / "tmux.sock")

    def run(*args):
        return subprocess.run(  # noqa: S603 -- tmux, on our own socket
            ["tmux", "-S", socket_path, *args],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    yield run
    subprocess.run(  # noqa: S603 -- only our own server, on our own socket
        ["tmux", "-S", socket_path, "kill-server"],  # noqa: S607
        capture_output=True,
        timeout=30,
        check=False,
    )


def wait_for(predicate, what, seconds=30.0):
    """Poll *predicate* until it holds; fail, naming *what*, after *seconds*."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


class TestInTmux:
    def test_redraws_in_place_and_ctrl_c_exits_0(self, server, tmux, tmp_path):
        """In a real terminal the table is redrawn in place; Ctrl+C exits with status 0."""
        server.send(op="success", node="tmux", ms=3.0)
        script = Path(sys.executable).with_name("nodemetrics")
        command = f"{script} watch {server.metrics} --interval 0.1; echo exit=$?; sleep 60"
        tmux("new-session", "-d", "-x", "120", "-y", "30", command)

        def screen():
            return tmux("capture-pane", "-p")

        def runs():
            for line in screen().splitlines():
                if line.startswith("tmux "):
                    return line.split()[1]
            return None

        assert "1" == wait_for(runs, "the first table")
        server.send(op="success", node="tmux", ms=3.0, n=41)
        assert "42" == wait_for(lambda: runs() == "42" and "42", "the redrawn table")
        # Redrawn in place: one table on the screen, nothing scrolled into the history.
        assert 1 == screen().count("node ")
        assert 1 == tmux("capture-pane", "-p", "-S", "-1000").count("node ")
        tmux("send-keys", "C-c")
        wait_for(lambda: "exit=0" in screen(), "exit=0 after Ctrl+C")


class TestOddPages:
    def test_counter_reset(self, server):
        """Counters that went down (a node reset) count from zero, histogram buckets too."""
        path = "/reset"
        url = server.page(
            path, NEW_FAMILIES.format(ns="nodemetrics", ok1=500, ok2=0, b1=400, b2=500)
        )
        # After the reset: 10 executions, all in (10 ms, 100 ms].
        steps = [
            lambda: server.page(
                path, NEW_FAMILIES.format(ns="nodemetrics", ok1=10, ok2=0, b1=0, b2=10)
            )
        ]
        code, out, _ = run_watch(url, steps, interval=2.0)
        assert 0 == code
        second = table_rows(out)[1]["fetch"]
        assert ("10", "5.0", "99.1") == (second["runs"], second["exec/s"], second["p99_int"])

    def test_hostile_values(self, server):
        """NaN, Inf and a bucket bound that is not a number neither crash nor count."""
        text = (
            'nodemetrics_node_retries_total{node="n"} NaN\n'
            'nodemetrics_node_cancellations_total{node="n"} +Inf\n'
            'nodemetrics_node_duration_seconds_bucket{node="n",le="soon"} 3\n'
            'nodemetrics_node_duration_seconds_bucket{node="n",le="0.1"} NaN\n'
            'nodemetrics_node_duration_seconds_bucket{node="n",le="+Inf"} NaN\n'
        )
        url = server.page("/hostile", text)
        code, out, err = run_watch(url, [lambda: None], interval=1.0)
        assert (0, "") == (code, err)
        _, second = (t["n"] for t in table_rows(out))
        assert ("nan", "inf") == (second["retry"], second["canc"])
        assert "100.0" == second["p99_int"]  # NaN ranks fall in the last bucket: its bound

    @pytest.mark.parametrize(
        "url", ["http://[::1", "http://127.0.0.1:abc/metrics"], ids=["bad IPv6", "bad port"]
    )
    def test_invalid_url(self, url):
        """A URL that cannot be one is named as such."""
        code, _, err = run_watch(url, [])
        assert 2 == code
        assert f"nodemetrics: error: {url}: not a valid URL: " in err

    def test_ctrl_c_before_the_first_answer(self):
        """Ctrl+C while the first poll waits is a clean exit, status 0."""

        def interrupted():
            raise KeyboardInterrupt

        assert 0 == watch("http://127.0.0.1:1/", out=io.StringIO(), clock=interrupted)


class TestSmallTerminal:
    def test_frame_fits_the_terminal(self, server, monkeypatch):
        """A frame is cut to the terminal's width and height, saying how many nodes are hidden."""
        text = "".join(
            f'nodemetrics_node_retries_total{{node="node-{i:02}"}} {i}\n' for i in range(30)
        )
        url = server.page("/many", text)
        monkeypatch.setenv("COLUMNS", "50")
        monkeypatch.setenv("LINES", "12")

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        out = Terminal()
        fake = FakeTime([])
        assert 0 == watch(url, out=out, clock=fake.clock, sleep=fake.sleep)
        frame = out.getvalue().split("\x1b[H")[2]
        lines = frame.removesuffix("\x1b[J\x1b[?25h\n").split("\x1b[K\n")[:-1]
        assert 11 == len(lines)
        assert all(len(line) <= 49 for line in lines)
        assert "... and 26 more nodes" == lines[-1]
        assert lines[-2].startswith("node-03")


class TestPace:
    def test_a_slow_poll_delays_the_next_without_a_burst(self, server):
        """Polls keep to the interval; after one that overran it, no catch-up burst."""
        url = server.page("/pace", 'nodemetrics_node_retries_total{node="n"} 1\n')
        fake = FakeTime([])

        def slow():
            fake.now += 7.0  # this poll takes 3.5 intervals

        fake.steps = [lambda: None, slow, lambda: None, lambda: None]
        assert 0 == watch(url, out=io.StringIO(), clock=fake.clock, sleep=fake.sleep)
        assert [2.0, 2.0, 0.0, 2.0, 2.0] == fake.slept


class Terminal(io.StringIO):
    def isatty(self):
        return True


class TestTerminalCleanup:
    def test_sigterm_shows_the_cursor_again(self, server):
        """A `kill` of the view restores the cursor, exits 143, and puts SIGTERM back."""
        url = server.page("/term", 'nodemetrics_node_retries_total{node="n"} 1\n')
        before = signal.getsignal(signal.SIGTERM)
        out = Terminal()
        fake = FakeTime([lambda: os.kill(os.getpid(), signal.SIGTERM)])
        assert 128 + signal.SIGTERM == watch(url, out=out, clock=fake.clock, sleep=fake.sleep)
        assert out.getvalue().endswith("\x1b[?25h\n")
        assert before == signal.getsignal(signal.SIGTERM)

    def test_outside_the_main_thread(self, server):
        """Away from the main thread (no signal handlers there), the view still runs."""
        url = server.page("/thread", 'nodemetrics_node_retries_total{node="n"} 1\n')
        results = []

        def run():
            fake = FakeTime([])
            results.append(watch(url, out=Terminal(), clock=fake.clock, sleep=fake.sleep))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=30)
        assert [0] == results


def _serve_once(answer: bytes) -> tuple[str, threading.Thread, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", thread, listener


class TestEscapedProblems:
    @pytest.mark.parametrize(
        ("answer", "shown"),
        [
            (
                b"HTTP/1.0 500 \x1b]0;owned\x07\x1b[2J\r\nContent-Length: 0\r\n\r\n",
                "HTTP 500 \\x1b]0;owned\\x07\\x1b[2J",
            ),
            (b"\x1b[2J\x1b[1Agarbage\r\n", "BadStatusLine: \\x1b[2J\\x1b[1Agarbage"),
        ],
        ids=["reason phrase", "status line"],
    )
    def test_server_text_is_escaped(self, answer, shown):
        """Text from the server reaches the one error line with its control characters escaped."""
        url, thread, listener = _serve_once(answer)
        with listener:
            out, err = io.StringIO(), io.StringIO()
            code = watch(url, once=True, out=out, err=err)
            thread.join(timeout=30)
        assert (2, "") == (code, out.getvalue())
        assert 1 == len(err.getvalue().splitlines())
        assert err.getvalue().isprintable() is False  # only its final newline
        assert err.getvalue()[:-1].isprintable(), err.getvalue()
        assert shown in err.getvalue()


class TestTinyTerminal:
    @pytest.mark.parametrize(
        ("columns", "rows", "width", "height"),
        [(1, 24, 0, 18), (2, 24, 1, 18), (80, 1, 79, 1), (80, 2, 79, 1), (80, 3, 79, 2)],
    )
    def test_frame_cut_to_size(self, monkeypatch, columns, rows, width, height):
        """However small the terminal, no line wraps and the frame never scrolls it."""
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setenv("LINES", str(rows))
        table = "node runs\n---- ----\n" + "\n".join(f"node{i} {i}" for i in range(12))
        out = io.StringIO()
        _watch._draw(out, "http://127.0.0.1:9464/metrics", 2.0, table, None)
        frame = out.getvalue().removeprefix("\x1b[H").removesuffix("\x1b[J")
        lines = frame.split("\x1b[K\n")
        assert "" == lines.pop()
        assert height == len(lines)
        assert width == max(len(line) for line in lines)

    def test_one_row_keeps_the_title(self, monkeypatch):
        """On a one-row terminal the one line drawn is the title, cut to the width."""
        monkeypatch.setenv("COLUMNS", "20")
        monkeypatch.setenv("LINES", "1")
        out = io.StringIO()
        _watch._draw(out, "http://h/metrics", 2.0, "node runs\n---- ----\nn 1", None)
        assert "\x1b[Hnodemetrics watch …\x1b[K\n\x1b[J" == out.getvalue()


def display_width(text: str) -> int:
    """Columns on a terminal: wide East Asian characters take 2, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


class TestWideCharacters:
    def test_render_aligns_by_display_width(self):
        """Wide and combining characters in node names keep the columns aligned on screen."""
        scrape = _watch.Scrape(
            nodes={
                "数据处理节点" * 10: _watch.NodeSample(retries=1.0),
                "e\u0301" * 40: _watch.NodeSample(retries=2.0),
                "plain": _watch.NodeSample(retries=3.0),
            },
            has_interruptions=False,
            has_histogram=False,
            at=0.0,
        )
        lines = _watch.render(scrape, None).splitlines()
        assert 1 == len({display_width(line) for line in lines}), lines
        assert 32 == display_width(lines[2].split(" ")[0])
        assert lines[2].startswith("e\u0301" * 31 + "…")
        assert lines[4].startswith("数据处理节点" * 2 + "数据处" + "… ")

    def test_draw_cuts_by_display_width(self, monkeypatch):
        """A line of wide characters is cut to the terminal's width in columns, not characters."""
        monkeypatch.setenv("COLUMNS", "11")
        monkeypatch.setenv("LINES", "24")
        out = io.StringIO()
        _watch._draw(out, "h", 2.0, "数据处理节点数据处理节点", None)
        lines = out.getvalue().removeprefix("\x1b[H").split("\x1b[K\n")
        assert "数据处理…" == lines[4]


def test_without_standard_error(monkeypatch):
    """Started without standard error (pythonw), a failed first poll is status 2, no exception."""
    monkeypatch.setattr(sys, "stderr", None)
    assert 2 == watch(closed_port_url(), once=True, out=io.StringIO())
