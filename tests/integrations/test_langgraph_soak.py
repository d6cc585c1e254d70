"""100,000 instrumented LangGraph invocations: nothing the handler keeps grows."""

from __future__ import annotations

import gc
import sys

from typing import TypedDict

# Imported, not importorskip()ped: langgraph is a dev dependency, and a broken
# install must fail these tests, as it does in CI, rather than skip them quietly.
import langgraph  # noqa: F401
import pytest

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from nodemetrics import NodeMetricsCollector
from nodemetrics.integrations.langgraph import instrument


class State(TypedDict, total=False):
    x: int


def node(state: State) -> State:
    if state["x"] % 4 == 3:
        msg = "every fourth run fails"
        raise ValueError(msg)
    if state["x"] % 10 == 5:
        return {"x": interrupt("approve?")}
    return {"x": 0}


@pytest.mark.slow
def test_100k_invocations_do_not_grow():
    """After warm-up, 90,000 more runs (ok, failed, interrupted) leave no objects behind."""
    saver = InMemorySaver()
    g = StateGraph(State)
    g.add_node("n", node)
    g.add_edge(START, "n")
    g.add_edge("n", END)
    c = NodeMetricsCollector()
    app = instrument(g.compile(checkpointer=saver), c)
    handler = type(app)._nodemetrics_handler
    config = {"configurable": {"thread_id": "t"}}

    def run(i: int) -> None:
        try:
            state = app.invoke({"x": i}, config)
        except ValueError:
            pass
        else:
            if "__interrupt__" in state:
                app.invoke(Command(resume=1), config)
        saver.delete_thread("t")  # the checkpointer's memory is not the handler's

    def measure() -> tuple[int, int]:
        gc.collect()
        return len(gc.get_objects()), sys.getallocatedblocks()

    warm_up, total = 10_000, 100_000
    for i in range(warm_up):
        run(i)
    objects, blocks = measure()
    for i in range(warm_up, total):
        run(i)
    objects_after, blocks_after = measure()

    assert ({}, {}, {}, {}) == (handler._runs, handler._graphs, handler._pushed, handler._graph_of)
    m = c.get_node_metrics("n")
    failures = total // 4
    interrupts = len([i for i in range(total) if i % 4 != 3 and i % 10 == 5])
    assert (total - failures, failures, interrupts) == (
        m.success_count,
        m.failure_count,
        m.interrupted_count,
    )
    # One leaked tuple, set entry or dict slot per run would be 90,000 of each.
    assert objects_after - objects < 1_000
    assert blocks_after - blocks < 5_000
