"""Every ```python block in README.md runs as written; the quickstart's counts are reproducible."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pathlib import Path

import pytest


ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*skip:\s*(.+?)\s*-->")
# A block another test runs against a real server says so by name.
TESTED = re.compile(r"<!--\s*test:\s*(.+?)\s*-->")


def python_blocks(text: str) -> list[tuple[str, str, str | None]]:
    """
    Each ```python block of *text* as (where, code, skip reason).

    *where* is the section heading and line number; the reason comes from a
    `<!-- skip: REASON -->` comment on the last non-blank line before the fence.
    """
    blocks = []
    lines = text.splitlines()
    heading = "top"
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```") and line.strip() != "```python":
            i = lines.index("```", i + 1)  # another language's block: not a heading inside
        elif line.strip() == "```python":
            before = next((b for b in reversed(lines[:i]) if b.strip()), "")
            skip = SKIP.fullmatch(before.strip())
            tested = TESTED.fullmatch(before.strip())
            reason = skip.group(1) if skip else None
            if tested:
                reason = f"run against a real server by the test that looks for {tested.group(0)}"
            end = lines.index("```", i + 1)
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append((f"{heading}, line {i + 1}", code, reason))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-c", code, cwd=cwd)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own interpreter, the README's code
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestCollection:
    def test_finds_blocks_and_markers(self):
        """Blocks are found with their section, code and skip reason."""
        text = (
            "# A\n\n```python\nx = 1\n```\n\n## B\n"
            "<!-- skip: needs a server -->\n\n```python\nserve()\n```\n"
            "```bash\n# not a heading\n```\n\n```python\ny = 2\n```\n"
        )
        assert [
            ("A, line 3", "x = 1\n", None),
            ("B, line 10", "serve()\n", "needs a server"),
            ("B, line 17", "y = 2\n", None),
        ] == python_blocks(text)

    def test_readme_has_blocks(self):
        """README.md's blocks are collected, some of them skipped by name."""
        assert len(BLOCKS) >= 8
        assert any(reason for _, _, reason in BLOCKS)


@pytest.mark.parametrize(
    ("code", "reason"),
    [pytest.param(code, reason, id=where) for where, code, reason in BLOCKS],
)
def test_readme_block_runs(code, reason, tmp_path):
    """The block runs as-is in a fresh interpreter, or says why it cannot."""
    if reason is not None:
        pytest.skip(f"README says: {reason}")
    result = run_python(code, tmp_path)
    assert 0 == result.returncode, result.stderr[-3000:]


def _logging_recipe() -> str:
    (code,) = [code for where, code, _ in BLOCKS if "PropagateHandler" in code]
    return code


def test_logging_recipe_reaches_a_logging_handler(tmp_path):
    """README's recipe delivers a nodemetrics warning to a standard logging handler."""
    check = """
import logging

from nodemetrics import NodeMetricsCollector

class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)

capture = Capture()
logging.getLogger("nodemetrics").addHandler(capture)
NodeMetricsCollector().record_success("fetch", -1.0)
print(repr([(r.name, r.levelname, r.getMessage()) for r in capture.records]))
"""
    result = run_python(_logging_recipe() + check, tmp_path)
    assert 0 == result.returncode, result.stderr
    records = eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 -- our own repr
    assert 1 == len(records)
    name, level, message = records[0]
    assert name.startswith("nodemetrics")
    assert "WARNING" == level
    assert message.startswith("nodemetrics.negative_duration")


def _counts(output: str) -> tuple[list[list[str]], dict[str, dict[str, int]]]:
    table, _, snapshot = output.partition("\n\n")
    lines = table.splitlines()
    keep = [i for i, h in enumerate(lines[0].replace(" ms", "_ms").split()) if "_ms" not in h]
    rows = [
        [line.split()[i] for i in keep] for line in [lines[0].replace(" ms", "_ms"), *lines[2:]]
    ]
    counts = {
        node: {k: v for k, v in fields.items() if isinstance(v, int)}
        for node, fields in json.loads(snapshot).items()
    }
    return rows, counts


def test_quickstart_counts_are_the_same_every_run(tmp_path):
    """examples/quickstart.py prints the same counts twice (its durations are measured)."""
    script = str(ROOT / "examples" / "quickstart.py")
    first, second = (run(sys.executable, script, cwd=tmp_path) for _ in range(2))
    assert (0, 0) == (first.returncode, second.returncode), first.stderr + second.stderr
    rows, counts = _counts(first.stdout)
    assert {"node", "runs", "fail", "retry"} <= set(rows[0])
    assert not any(header.endswith("_ms") for header in rows[0])
    assert 5 == len(rows)
    assert 40 == counts["load"]["total_executions"]
    assert _counts(first.stdout) == _counts(second.stdout)
