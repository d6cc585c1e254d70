from __future__ import annotations

import errno
import io
import json
import runpy
import socket
import subprocess
import sys

from pathlib import Path

import pytest

from nodemetrics import NodeMetrics, NodeMetricsCollector, format_table
from nodemetrics._cli import main
from nodemetrics._html import render_html


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
        stdin = io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", stdin)
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
        assert "not UTF-8 text: byte 0xff at offset 0" in capsys.readouterr().err

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


def _run(*args, **kwargs):
    return subprocess.run(  # noqa: S603 -- our own interpreter and script
        list(args), capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


SCRIPT = str(Path(sys.executable).with_name("nodemetrics"))


class TestProgram:
    def test_version(self, capsys):
        """--version prints the installed version and exits 0."""
        from nodemetrics import __version__

        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert 0 == info.value.code
        assert f"nodemetrics {__version__}\n" == capsys.readouterr().out

    def test_help_lists_every_command(self, capsys):
        """--help names every subcommand with its one-line help."""
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert 0 == info.value.code
        out = capsys.readouterr().out
        assert out.startswith("usage: nodemetrics ")
        assert "show      print a saved collector.to_json() snapshot" in out
        assert "watch     a live view of a running process" in out

    def test_no_command(self, capsys):
        """No subcommand is a usage error naming what is missing, exit status 2."""
        with pytest.raises(SystemExit) as info:
            main([])
        assert 2 == info.value.code
        assert "required: COMMAND" in capsys.readouterr().err

    def test_console_script_is_the_same_program(self, snapshot):
        """The installed `nodemetrics` script and `python -m nodemetrics` answer alike."""
        _, path = snapshot
        for args in (["--version"], ["--help"], ["show", str(path)], ["show", "nope.json"]):
            script = _run(SCRIPT, *args)
            module = _run(sys.executable, "-m", "nodemetrics", *args)
            assert (module.returncode, module.stdout, module.stderr) == (
                script.returncode,
                script.stdout,
                script.stderr,
            )
        assert 2 == script.returncode

    def test_html(self, snapshot, capsys):
        """--format html prints the report of the snapshot, titled with the file."""
        c, path = snapshot
        assert 0 == main(["show", str(path), "--format", "html"])
        out = capsys.readouterr().out
        assert render_html(c.get_all_node_metrics(), title=str(path)) + "\n" == out

    def test_closed_pipe(self, tmp_path):
        """A reader that stops early (`| head -1`) gets no traceback and status 0."""
        c = NodeMetricsCollector()
        for i in range(3000):
            c.record_success(f"node-{i:05}", 1.0)
        path = tmp_path / "big.json"
        path.write_text(c.to_json())
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "show", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith(b"node")
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        assert 0 == proc.wait(timeout=60)
        assert b"" == err

    def test_interval_must_be_positive(self, capsys):
        """watch --interval refuses zero, negatives, NaN and words as a usage error."""
        for bad in ("0", "-1", "nan", "inf", "soon"):
            with pytest.raises(SystemExit) as info:
                main(["watch", "http://127.0.0.1:1/", "--interval", bad])
            assert 2 == info.value.code
            assert f"must be a positive number of seconds, got '{bad}'" in capsys.readouterr().err


class TestInProcess:
    def test_watch(self, capsys):
        """main() runs watch, and returns its status."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"
        assert 2 == main(["watch", url, "--once", "--interval", "0.5"])
        assert "cannot connect" in capsys.readouterr().err

    def test_broken_pipe(self, snapshot, monkeypatch):
        """A closed standard output ends the program quietly with status 0."""

        class ClosedPipe(io.StringIO):
            def write(self, text):
                raise BrokenPipeError

            def fileno(self):
                raise io.UnsupportedOperation

        _, path = snapshot
        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        assert 0 == main(["show", str(path)])

    def test_ctrl_c(self, monkeypatch):
        """Ctrl+C while reading standard input is status 130, without a traceback."""

        class Keyboard:
            def read(self, size):
                raise KeyboardInterrupt

        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": Keyboard()})())
        assert 130 == main(["show", "-"])

    def test_unreadable_stdin(self, monkeypatch, capsys):
        """Standard input that fails to read (open for writing only) is one line and status 2."""

        class WriteOnly:
            def read(self, size):
                raise OSError(errno.EBADF, "Bad file descriptor")

        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": WriteOnly()})())
        assert 2 == main(["show", "-"])
        assert "nodemetrics: error: <stdin>: cannot read: Bad file descriptor\n" == (
            capsys.readouterr().err
        )

    def test_unwritable_stdout(self, snapshot, monkeypatch):
        """An output that cannot be written (a full disk) is one line and status 2."""

        class Full(io.StringIO):
            def write(self, text):
                raise OSError(errno.ENOSPC, "No space left on device")

            def fileno(self):
                raise io.UnsupportedOperation

        _, path = snapshot
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setattr(sys, "stdout", Full())
        assert 2 == main(["show", str(path)])
        assert "nodemetrics: error: cannot write: No space left on device\n" == err.getvalue()


def test_refused_arguments_are_escaped_in_the_error_line(capsys):
    """argparse's error line quotes what it refuses: escaped, it cannot drive the terminal."""
    with pytest.raises(SystemExit) as exit_:
        main(["show", "snapshot.json", "\x1b[2J\x07"])
    assert 2 == exit_.value.code
    err = capsys.readouterr().err
    assert err.endswith("nodemetrics: error: unrecognized arguments: \\x1b[2J\\x07\n")
    assert "\x1b" not in err
