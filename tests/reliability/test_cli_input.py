"""Whatever `nodemetrics show` is given, it answers one line and exit status 2, or a table."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import threading

from pathlib import Path

import pytest

from nodemetrics import NodeMetrics, NodeMetricsCollector, _cli, format_table
from nodemetrics._cli import main


def _one_field(name, value):
    d = NodeMetrics().to_dict()
    d[name] = value
    return d


HOSTILE: dict[str, bytes] = {
    "100,000 nested brackets": b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep nesting inside a field": (
        b'{"n": {"retry_count": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    ),
    "a 5,000-digit integer": b"1" + b"0" * 4_999,
    "a 5,000-digit count": json.dumps({"n": _one_field("retry_count", 0)})
    .replace('"retry_count": 0', '"retry_count": 1' + "0" * 4_999)
    .encode(),
    "binary garbage": bytes(range(256)) * 64,
    "invalid UTF-8": b'{"n": \xff\xfe}',
    "UTF-16": json.dumps({"n": NodeMetrics().to_dict()}).encode("utf-16"),
    "NaN literal": json.dumps({"n": _one_field("p50", 0.0)}).replace("0.0", "NaN", 1).encode(),
    "Infinity literal": json.dumps({"n": _one_field("avg_execution_ms", 1.0)})
    .replace("1.0", "Infinity")
    .encode(),
    "-Infinity literal": json.dumps({"n": _one_field("p99", 1.0)})
    .replace("1.0", "-Infinity")
    .encode(),
    "1e999 (inf once parsed)": json.dumps({"n": _one_field("p90", 1.0)})
    .replace("1.0", "1e999")
    .encode(),
    "a list": b"[1, 2, 3]",
    "a string": b'"snapshot"',
    "null": b"null",
    "a number": b"42",
    "empty": b"",
    "only whitespace": b" \n\t ",
    "one node's to_dict()": json.dumps(NodeMetrics().to_dict()).encode(),
    "an empty node name": json.dumps({"": NodeMetrics().to_dict()}).encode(),
    "a node that is null": b'{"n": null}',
    "a node that is a list": b'{"n": [1]}',
    "a bool count": json.dumps({"n": _one_field("retry_count", True)}).encode(),
    "a negative count": json.dumps({"n": _one_field("retry_count", -1)}).encode(),
    "a float count": json.dumps({"n": _one_field("retry_count", 1.5)}).encode(),
    "a string duration": json.dumps({"n": _one_field("p50", "fast")}).encode(),
    "an unknown field": json.dumps({"n": {**NodeMetrics().to_dict(), "colour": 1}}).encode(),
    "a missing field": json.dumps({"n": {"p50": 1.0}}).encode(),
    "a megabyte node name with a bad field": json.dumps(
        {"x" * 1_000_000: _one_field("retry_count", -1)}
    ).encode(),
    "a megabyte bad value": json.dumps({"n": _one_field("p50", "y" * 1_000_000)}).encode(),
    "truncated JSON": json.dumps({"n": NodeMetrics().to_dict()}).encode()[:-5],
    "trailing garbage": json.dumps({"n": NodeMetrics().to_dict()}).encode() + b" ]",
}


def _assert_one_line_error(code, captured, *, name):
    assert 2 == code
    assert "" == captured.out
    lines = captured.err.splitlines()
    assert 1 == len(lines), captured.err[:500]
    assert lines[0].startswith(f"nodemetrics: error: {name}: ")
    assert len(lines[0]) <= 400
    assert "Traceback" not in captured.err


class TestHostileFiles:
    @pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
    def test_one_line_and_status_2(self, tmp_path, capsys, content):
        """A hostile file is one line on stderr naming it, exit status 2, nothing on stdout."""
        path = tmp_path / "snapshot.json"
        path.write_bytes(content)
        code = main(["show", str(path)])
        _assert_one_line_error(code, capsys.readouterr(), name=path)

    @pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
    def test_stdin_too(self, monkeypatch, capsys, content):
        """The same input on standard input is refused the same way."""
        read, write = os.pipe()

        def feed():
            with os.fdopen(write, "wb") as w:
                w.write(content)

        writer = threading.Thread(target=feed)
        writer.start()
        with os.fdopen(read, "rb") as r:
            monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": r})())
            code = main(["show", "-"])
        writer.join(timeout=30)
        assert not writer.is_alive()
        _assert_one_line_error(code, capsys.readouterr(), name="<stdin>")

    def test_messages_name_the_problem(self, tmp_path, capsys):
        """The two inputs of issue 10 get messages that say what is wrong."""
        expected = {
            "100,000 nested brackets": "nested too deeply",
            "a 5,000-digit integer": "an integer of 5,000 digits is too long",
            "invalid UTF-8": "not UTF-8 text: byte 0xff",
            "NaN literal": "NaN is not a number in JSON",
            "one node's to_dict()": "one node's NodeMetrics.to_dict(), not a snapshot",
            "a list": "expected an object of node names to metrics, got list",
        }
        for case, message in expected.items():
            path = tmp_path / "s.json"
            path.write_bytes(HOSTILE[case])
            main(["show", str(path)])
            assert message in capsys.readouterr().err, case

    def test_directory(self, tmp_path, capsys):
        """A directory is named as one."""
        code = main(["show", str(tmp_path)])
        captured = capsys.readouterr()
        _assert_one_line_error(code, captured, name=tmp_path)
        assert "is a directory" in captured.err

    @pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
    def test_unreadable(self, capsys):
        """A file whose read fails (EIO from /proc/self/mem, readable even by root) is refused."""
        code = main(["show", "/proc/self/mem"])
        captured = capsys.readouterr()
        _assert_one_line_error(code, captured, name="/proc/self/mem")
        assert "cannot read" in captured.err

    def test_endless_device(self, capsys):
        """/dev/zero is read up to the size limit, not forever."""
        code = main(["show", "/dev/zero"])
        captured = capsys.readouterr()
        _assert_one_line_error(code, captured, name="/dev/zero")
        assert "larger than 128 MiB" in captured.err

    def test_huge_file(self, tmp_path, capsys, monkeypatch):
        """A file past the size limit is refused by size, before parsing."""
        monkeypatch.setattr(_cli, "MAX_SNAPSHOT_BYTES", 1000)
        path = tmp_path / "big.json"
        path.write_text(json.dumps({f"node{i}": NodeMetrics().to_dict() for i in range(10)}))
        code = main(["show", str(path)])
        captured = capsys.readouterr()
        _assert_one_line_error(code, captured, name=path)
        assert "larger than" in captured.err

    def test_fifo_without_writer(self, tmp_path):
        """A FIFO nobody writes to reads as empty, within seconds, instead of hanging."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        result = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "show", str(fifo)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 2 == result.returncode
        assert f"nodemetrics: error: {fifo}: empty, not a snapshot\n" == result.stderr

    def test_fifo_with_writer(self, tmp_path):
        """A FIFO with a writer (as from `<(command)`) is read to its end."""
        c = NodeMetricsCollector()
        c.record_success("fetch", 1.0)
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        reader = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "nodemetrics", "show", str(fifo)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with fifo.open("w") as w:  # blocks until the reader has opened it
            w.write(c.to_json())
        out, err = reader.communicate(timeout=30)
        assert ("", 0) == (err, reader.returncode)
        assert format_table(c) + "\n" == out


class TestOddButValid:
    def test_strange_node_names(self, tmp_path, capsys):
        """Control characters, escapes and a lone surrogate in names still print a table."""
        names = ["\x1b[2J", "line\nbreak", "\ud800", "tab\there", "é"]
        path = tmp_path / "s.json"
        path.write_text(json.dumps({name: NodeMetrics().to_dict() for name in names}))
        assert 0 == main(["show", str(path)])
        out = capsys.readouterr().out
        assert "\x1b" not in out
        assert 2 + len(names) == len(out.splitlines())

    def test_byte_order_mark(self, tmp_path, capsys):
        """A UTF-8 byte order mark (as some editors write) is accepted."""
        c = NodeMetricsCollector()
        c.record_success("fetch", 1.0)
        path = tmp_path / "s.json"
        path.write_bytes(b"\xef\xbb\xbf" + c.to_json().encode())
        assert 0 == main(["show", str(path)])
        assert format_table(c) + "\n" == capsys.readouterr().out

    def test_empty_object(self, tmp_path, capsys):
        """A snapshot of no nodes is valid (a collector that recorded nothing)."""
        path = tmp_path / "s.json"
        path.write_text(NodeMetricsCollector().to_json())
        assert 0 == main(["show", str(path)])
        assert format_table({}) + "\n" == capsys.readouterr().out


def _program(
    shell_redirects: str, stdin_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = f"{shlex.quote(sys.executable)} -m nodemetrics show - {shell_redirects}"
    return subprocess.run(  # noqa: S602 -- a fixed command line, to close fds as a shell does
        command,
        shell=True,
        input=stdin_text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestMissingStreams:
    def test_stdin_closed(self):
        """`show -` with standard input closed (`<&-`) is one line and status 2."""
        result = _program("<&-")
        assert (2, "") == (result.returncode, result.stdout)
        assert "nodemetrics: error: <stdin>: cannot read: standard input is closed\n" == (
            result.stderr
        )

    def test_stdin_write_only(self, tmp_path):
        """`show -` with standard input opened for writing only is one line and status 2."""
        target = tmp_path / "out"
        result = _program(f"0>{shlex.quote(str(target))}")
        assert (2, "") == (result.returncode, result.stdout)
        assert result.stderr.startswith("nodemetrics: error: <stdin>: cannot read: ")
        assert 1 == len(result.stderr.splitlines()), result.stderr

    def test_stdout_closed(self):
        """With standard output closed (`>&-`) the table has nowhere to go: one line, status 2."""
        result = _program(">&-", stdin_text="{}")
        assert 2 == result.returncode
        assert "nodemetrics: error: cannot write: standard output is closed\n" == result.stderr

    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
    def test_stdout_full(self):
        """A table that cannot be written (a full disk) is one line and status 2, nothing more."""
        result = _program("> /dev/full", stdin_text="{}")
        assert 2 == result.returncode
        assert "nodemetrics: error: cannot write: No space left on device\n" == result.stderr

    def test_stdin_none_in_process(self, monkeypatch, capsys):
        """main() with sys.stdin None answers one line and 2."""
        monkeypatch.setattr(sys, "stdin", None)
        code = main(["show", "-"])
        _assert_one_line_error(code, capsys.readouterr(), name="<stdin>")

    @pytest.mark.parametrize("command", [["show", "-"], ["watch", "http://127.0.0.1:1/"]])
    def test_stdout_and_stderr_none_in_process(self, monkeypatch, command):
        """With neither output stream (pythonw), main() still returns 2 and raises nothing."""
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
        monkeypatch.setattr(sys, "stdout", None)
        monkeypatch.setattr(sys, "stderr", None)
        assert 2 == main(command)


class TestEscapedErrorLines:
    def test_unknown_field_with_terminal_escapes(self, tmp_path, capsys):
        """An unknown field's name reaches the error line with its control characters escaped."""
        fields = {**NodeMetrics().to_dict(), "\x1b[2J\x1b]0;owned\x07\nfake": 1}
        path = tmp_path / "s.json"
        path.write_text(json.dumps({"a": fields}))
        code = main(["show", str(path)])
        captured = capsys.readouterr()
        _assert_one_line_error(code, captured, name=path)
        assert captured.err.endswith("no field(s): \\x1b[2J\\x1b]0;owned\\x07\\nfake\n")

    def test_every_error_line_is_printable(self, monkeypatch, capsys):
        """Whatever a message holds, the line written holds no control character."""
        monkeypatch.setattr(
            _cli, "read_snapshot", lambda path: _raise(_cli.SnapshotError("x\x1b[2J\ty\u2028z"))
        )
        assert 2 == main(["show", "f"])
        assert "nodemetrics: error: x\\x1b[2J\\ty\\u2028z\n" == capsys.readouterr().err


def _raise(exc: Exception) -> None:
    raise exc
