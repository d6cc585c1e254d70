"""Real Prometheus, promtool and Pushgateway binaries, started by the tests that need them."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


# .ci/run sets this, so that CI fails rather than skips without the binaries.
REQUIRE = os.environ.get("NODEMETRICS_REQUIRE_PROMETHEUS") == "1"


def find_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{name} is required (NODEMETRICS_REQUIRE_PROMETHEUS=1) but not on PATH")
        pytest.skip(f"{name} is not installed (Debian package {package!r})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- loopback
        return response.read()  # type: ignore[no-any-return]


def wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    """Wait until *process* accepts connections on *port*, or fail if it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # polling an external process, not papering over a race
    pytest.fail(f"{process.args[0]} did not listen on {port} within {seconds} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class PrometheusServer:
    """A real Prometheus on 127.0.0.1 that scrapes the given targets every second."""

    def __init__(self, binary: str, data: Path, targets: list[str], *, honor_labels: bool) -> None:
        self.port = free_port()
        config = data / "prometheus.yml"
        target_list = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: nodemetrics\n"
            f"    honor_labels: {'true' if honor_labels else 'false'}\n"
            f"    static_configs:\n      - targets: [{target_list}]\n"
        )
        self.process = subprocess.Popen(  # noqa: S603 -- prometheus from PATH, our own config
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        body = json.loads(http_get(url))
        assert "success" == body["status"], body
        return body["data"]["result"]  # type: ignore[no-any-return]

    def wait_until(
        self, promql: str, check: Callable[[list[dict]], bool], seconds: float = 60.0
    ) -> list[dict]:
        """Query until *check* accepts the result; scrapes come every second, so allow a minute."""
        deadline = time.monotonic() + seconds
        result: list[dict] = []
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited"
            try:
                result = self.query(promql)
            except OSError:
                result = []  # not listening yet
            if result and check(result):
                return result
            time.sleep(0.2)  # polling an external process, not papering over a race
        pytest.fail(f"{promql} was {result}, not as expected, after {seconds} s")

    def wait_for(self, promql: str, expected: float, seconds: float = 60.0) -> float:
        """Query until the single value is *expected*."""

        def check(result: list[dict]) -> bool:
            return math.isclose(float(result[0]["value"][1]), expected, rel_tol=1e-9)

        return float(self.wait_until(promql, check, seconds)[0]["value"][1])


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers: ``prometheus(["127.0.0.1:PORT", ...])``."""
    binary = find_binary("prometheus", "prometheus")
    started: list[PrometheusServer] = []

    def start(targets: list[str], *, honor_labels: bool = False) -> PrometheusServer:
        data = tmp_path / f"prometheus-{len(started)}"
        data.mkdir()
        server = PrometheusServer(binary, data, targets, honor_labels=honor_labels)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop(server.process)


@pytest.fixture
def promtool() -> Callable[[bytes], None]:
    """Lint an exposition with the real ``promtool check metrics``: fails on any complaint."""
    binary = find_binary("promtool", "prometheus")

    def check(exposition: bytes) -> None:
        result = subprocess.run(  # noqa: S603 -- promtool from PATH, our own input
            [binary, "check", "metrics"],
            input=exposition,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr
        assert b"" == result.stdout.strip()

    return check


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    """A real Prometheus Pushgateway on a free loopback port; yields its address."""
    binary = find_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 -- the pushgateway from PATH
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
