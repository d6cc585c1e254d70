from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys

import pytest

from nodemetrics import NodeMetrics, NodeMetricsCollector, format_table
from nodemetrics._cli import main


@pytest.fixture
def snapshot(tmp_path):
    c = NodeMetricsCollector()
    c.record_success("fetch", 2.0)
    c.record_failure("parse", 3.0, ValueError())
    path = tmp_path / "snapshot.json"
    path.write_text(c.to_json())
    return c, path


class TestShow:
    def test_table(self, snapshot, capsys):
        """show prints the table of the snapshot."""
        c, path = snapshot
        assert 0 == main(["show", str(path)])
        assert format_table(c) + "\n" == capsys.readouterr().out

    def test_json(self, snapshot, capsys):
        """--format json re-emits the validated snapshot."""
        c, path = snapshot
        assert 0 == main(["show", str(path), "--format", "json"])
        assert c.to_dict() == json.loads(capsys.readouterr().out)

    def test_stdin(self, snapshot, capsys, monkeypatch):
        """- reads the snapshot from standard input."""
        c, path = snapshot
        monkeypatch.setattr(sys, "stdin", io.StringIO(path.read_text()))
        assert 0 == main(["show", "-"])
        assert format_table(c) + "\n" == capsys.readouterr().out

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "expected an object"),
            ('{"n": 3}', "node 'n': mapping must be a mapping"),
            ('{"n": {"p50": 1.0}}', "node 'n': NodeMetrics is missing field(s)"),
            ('{"": {}}', "a node name is empty"),
        ],
    )
    def test_malformed(self, tmp_path, capsys, text, message):
        """A malformed snapshot is one line on stderr naming the problem, exit status 2."""
        path = tmp_path / "bad.json"
        path.write_text(text)
        assert 2 == main(["show", str(path)])
        err = capsys.readouterr().err
        assert 1 == len(err.strip().splitlines())
        assert err.startswith(f"nodemetrics: error: {path}: ")
        assert message in err

    def test_wrong_value(self, tmp_path, capsys):
        """A bad field value names the node and the field."""
        d = NodeMetrics().to_dict()
        d["retry_count"] = -1
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"n": d}))
        assert 2 == main(["show", str(path)])
        assert "node 'n': retry_count must be >= 0" in capsys.readouterr().err

    def test_missing_file(self, tmp_path, capsys):
        """A file that is not there is an error, not a traceback."""
        assert 2 == main(["show", str(tmp_path / "nope.json")])
        assert "cannot read: No such file or directory" in capsys.readouterr().err

    def test_not_utf8(self, tmp_path, capsys):
        """Undecodable bytes are an error, not a traceback."""
        path = tmp_path / "bin.json"
        path.write_bytes(b"\xff\xfe{")
        assert 2 == main(["show", str(path)])
        assert "cannot read" in capsys.readouterr().err

    def test_usage_error(self, capsys):
        """A missing argument is argparse's usage error, exit status 2."""
        with pytest.raises(SystemExit) as info:
            main(["show"])
        assert 2 == info.value.code

    def test_main_module(self, snapshot, monkeypatch, capsys):
        """nodemetrics/__main__.py exits with main()'s status."""
        c, path = snapshot
        monkeypatch.setattr(sys, "argv", ["nodemetrics", "show", str(path)])
        with pytest.raises(SystemExit) as info:
            runpy.run_module("nodemetrics", run_name="__main__")
        assert 0 == info.value.code
        assert format_table(c) + "\n" == capsys.readouterr().out

    def test_as_module(self, snapshot):
        """`python -m nodemetrics show` works as a command."""
        c, path = snapshot
        result = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "show", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode
        assert format_table(c) + "\n" == result.stdout
