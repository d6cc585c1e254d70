"""``python -m nodemetrics``, run as users run it: the exit status is the interface."""

from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import pytest

from nodemetrics import NodeMetricsCollector


def run_module(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own interpreter and module
        [sys.executable, "-m", "nodemetrics", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    c = NodeMetricsCollector()
    c.record_success("fetch", 2.0)
    c.record_failure("fetch", 3.0, TimeoutError())
    path = tmp_path / "snapshot.json"
    path.write_text(c.to_json(), encoding="utf-8")
    return path


class TestExitStatus:
    def test_good_snapshot_exits_0(self, snapshot):
        """A valid snapshot prints its table and exits 0."""
        result = run_module("show", str(snapshot))
        assert (0, "") == (result.returncode, result.stderr)
        assert "fetch" in result.stdout

    def test_good_snapshot_as_json_exits_0(self, snapshot):
        """--format json prints the snapshot back, exit 0."""
        result = run_module("show", str(snapshot), "--format", "json")
        assert 0 == result.returncode
        assert 2 == json.loads(result.stdout)["fetch"]["total_executions"]

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "expected an object"),
            ('{"fetch": {"total_executions": -1}}', "node 'fetch'"),
            ('{"": {}}', "empty"),
        ],
        ids=["not-json", "not-an-object", "bad-field", "empty-name"],
    )
    def test_bad_snapshot_exits_2(self, tmp_path, text, says):
        """A malformed snapshot: one stderr line naming the problem, no stdout, exit 2."""
        path = tmp_path / "bad.json"
        path.write_text(text, encoding="utf-8")
        result = run_module("show", str(path))
        assert (2, "") == (result.returncode, result.stdout)
        assert 1 == len(result.stderr.splitlines())
        assert result.stderr.startswith("nodemetrics: error: ")
        assert says in result.stderr

    def test_bad_snapshot_on_stdin_exits_2(self):
        """The same from standard input."""
        result = run_module("show", "-", stdin="{not json")
        assert 2 == result.returncode
        assert "<stdin>" in result.stderr

    def test_missing_file_exits_2(self, tmp_path):
        """A file that cannot be read is a bad snapshot too: exit 2."""
        result = run_module("show", str(tmp_path / "absent.json"))
        assert 2 == result.returncode
        assert "cannot read" in result.stderr

    def test_usage_error_exits_2(self):
        """No command at all is argparse's usage error: exit 2."""
        result = run_module()
        assert 2 == result.returncode
        assert "usage:" in result.stderr
