"""Development sessions: `nox -s tests lint typecheck examples`."""

from __future__ import annotations

import os
import shutil

from pathlib import Path

import nox


PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _find_pyenv_pythons() -> None:
    # pyenv's shims answer `python3.12` only when PYENV_VERSION names 3.12,
    # so put each installed version's own bin/ on PATH for this process alone:
    # nox then finds every interpreter and the machine's default is unchanged.
    root = Path(os.environ.get("PYENV_ROOT") or Path("~/.pyenv").expanduser())
    bins = [
        str(found)
        for version in PYTHONS
        for found in sorted(root.glob(f"versions/{version}.*/bin"))[-1:]
        if (found / f"python{version}").exists()
    ]
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_find_pyenv_pythons()
nox.options.sessions = ["tests", "lint", "typecheck", "examples"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


#: The oldest LangGraph that nodemetrics.integrations.langgraph supports
#: (pyproject.toml says the same); `tests` runs the newest.
LANGGRAPH_OLDEST = "1.0.0"


@nox.session
def langgraph_oldest(session: nox.Session) -> None:
    """The LangGraph integration's tests with the oldest supported langgraph pinned."""
    session.install("-e", ".[dev]", f"langgraph=={LANGGRAPH_OLDEST}")
    session.run("pytest", "--no-cov", "tests/integrations", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict")


@nox.session
def examples(session: nox.Session) -> None:
    session.install("-e", ".[dev]")  # the LangGraph example needs langgraph
    for example in sorted(Path("examples").glob("*.py")):
        session.run("python", str(example))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against prometheus_client, OpenTelemetry and plain LangGraph; `-- --quick`."""
    session.install("-e", ".[langgraph]", "prometheus_client", "opentelemetry-sdk")
    # bench.py's table includes the rows of bench_langgraph, bench_export and bench_otel.
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The slow soak test: millions of executions from several threads."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "slow", "--no-cov", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """
    Mutation testing of the core modules with mutmut 3 (slow; not run by CI).

    The modules are `only_mutate` in pyproject's [tool.mutmut]; each mutant
    runs the tests that reach the mutated function. Survivors are printed;
    the equivalent ones are listed, with why, in tests/mutants-equivalent.md.
    `-- --max-children N` runs N mutants at once.
    """
    session.install("-e", ".[dev]")
    shutil.rmtree("mutants", ignore_errors=True)  # a fresh run, never a cached one
    session.run("mutmut", "run", *session.posargs)
    session.run("mutmut", "results")
