"""The real LangGraph running the example graph: every count checked."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys

from pathlib import Path

import pytest

from nodemetrics import NodeMetricsCollector


pytest.importorskip("langgraph")

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


def counts(c: NodeMetricsCollector, node: str) -> tuple[int, int, int, int]:
    m = c.get_node_metrics(node)
    return (m.total_executions, m.success_count, m.failure_count, m.retry_count)


def test_invoke(example):
    """invoke() runs the sync graph: every node once per document, retries counted."""
    c = NodeMetricsCollector()
    graph = example.build_graph(c, asynchronous=False)
    results = [graph.invoke({"doc_id": i}, {"configurable": {"tag": "t"}}) for i in range(1, 8)]
    assert all("t:4" == r["tag"] for r in results)
    assert 4 == results[0]["words"]
    assert (7, 7, 0, 0) == counts(c, "load")
    assert (7, 7, 0, 2) == counts(c, "enrich")  # docs 3 and 6 failed once each
    assert (7, 7, 0, 0) == counts(c, "count")
    assert (7, 7, 0, 0) == counts(c, "tag")


def test_ainvoke_under_gather(example):
    """ainvoke() under asyncio.gather: async and sync nodes, exact counts."""
    c = NodeMetricsCollector()
    graph = example.build_graph(c, asynchronous=True)
    results = asyncio.run(example.run_concurrently(graph, range(1, 31)))
    assert 30 == len(results)
    assert all("async:4" == r["tag"] for r in results)
    assert (30, 30, 0, 0) == counts(c, "load")
    assert (30, 30, 0, 10) == counts(c, "enrich")
    assert (30, 30, 0, 0) == counts(c, "count")
    assert (30, 30, 0, 0) == counts(c, "tag")


def test_metered_nodes_look_like_the_originals_to_langgraph(example):
    """LangGraph sees the async node as a coroutine and the config parameter."""
    c = NodeMetricsCollector()
    graph = example.build_graph(c, asynchronous=True)
    nodes = graph.builder.nodes
    tag = nodes["tag"].runnable.func
    assert "config" in inspect.signature(tag).parameters
    assert inspect.iscoroutinefunction(nodes["count"].runnable.afunc)


def test_failing_node_is_counted(example):
    """A node that fails for good is one failure, classified, and the error reaches the caller."""
    c = NodeMetricsCollector()
    from langgraph.graph import END, START, StateGraph

    from nodemetrics import metered

    @metered("boom", collector=c)
    def boom(state):
        raise ValueError("bad document")

    graph = StateGraph(example.State)
    graph.add_node("boom", boom)
    graph.add_edge(START, "boom")
    graph.add_edge("boom", END)
    with pytest.raises(ValueError, match="bad document"):
        graph.compile().invoke({"doc_id": 1})
    m = c.get_node_metrics("boom")
    assert (1, 1) == (m.failure_count, m.validation_errors)
