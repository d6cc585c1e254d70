"""The real LangGraph running the example graph: every count checked."""

from __future__ import annotations

import importlib.util
import sys

from pathlib import Path

# Imported, not importorskip()ped: langgraph is a dev dependency, and a broken
# install must fail these tests, as it does in CI, rather than skip them quietly.
import langgraph  # noqa: F401
import pytest

from conftest import outcome

from nodemetrics import NodeMetricsCollector


EXAMPLE = Path(__file__).parents[2] / "examples" / "langgraph_pipeline.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("langgraph_pipeline", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["langgraph_pipeline"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["langgraph_pipeline"]


def test_example_counts(example):
    """Ten documents, paused and resumed: each node's numbers are exactly predictable."""
    c = NodeMetricsCollector()
    app = example.build_graph(c)
    results = example.run_documents(app, range(1, 11))
    assert 10 == len(results)
    assert all(r["approved"] for r in results)
    assert ["document", "1", "says", "hello"] == results[0]["words"]
    assert {
        "load": (15, 10, 5, 5, 0, 0),  # the five even documents fail once, retried
        "clean": (10, 10, 0, 0, 0, 0),
        "clean/strip": (10, 10, 0, 0, 0, 0),
        "clean/lower": (10, 10, 0, 0, 0, 0),
        "count_word": (40, 40, 0, 0, 0, 0),  # one Send per word, four words each
        "approve": (10, 10, 0, 0, 0, 10),  # paused once, resumed once
        "normalise": (10, 10, 0, 0, 0, 0),  # @metered, not a node
    } == {node: outcome(c, node) for node in c.get_all_node_metrics()}
    assert 5 == c.get_node_metrics("load").network_errors


def test_example_main_prints_the_table(example, capsys):
    """main() runs and prints a table naming every node."""
    example.main()
    out = capsys.readouterr().out
    for node in ["approve", "clean/lower", "clean/strip", "count_word", "load", "normalise"]:
        assert f"\n{node} " in out
