"""
Every node of a LangGraph graph metered by one call: `instrument(graph, collector)`.

The graph has a node retried by LangGraph's RetryPolicy, a human-in-the-loop
node that pauses at `interrupt()` and is resumed, a subgraph, and a `Send`
fan-out. No node is decorated. One plain function that is not a LangGraph
node is timed with `@metered`, the way to meter code outside a graph. No
LLM: every node is deterministic, so the counts at the end are exactly
predictable.

Run it with `python examples/langgraph_pipeline.py` (needs `langgraph`).
"""

from __future__ import annotations

import operator

from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send, interrupt

from nodemetrics import NodeMetricsCollector, format_table, metered
from nodemetrics.integrations.langgraph import instrument


class State(TypedDict, total=False):
    doc_id: int
    text: str
    words: Annotated[list[str], operator.add]
    approved: bool


def build_graph(collector: NodeMetricsCollector):
    """
    load (retried) -> clean (a subgraph: strip -> lower) -> split into one
    `Send` per word -> count_word (fan-out) -> approve (interrupt) -> END.
    """
    attempts: dict[int, int] = {}

    def load(state: State) -> State:
        doc_id = state["doc_id"]
        attempts[doc_id] = attempts.get(doc_id, 0) + 1
        if doc_id % 2 == 0 and attempts[doc_id] == 1:  # even documents fail once
            msg = "upstream reset the connection"
            raise ConnectionResetError(msg)
        return {"text": f"  Document {doc_id} Says Hello  "}

    # Not a node: plain code called by one, metered on its own.
    @metered("normalise", collector=collector)
    def normalise(text: str) -> str:
        return " ".join(text.split())

    def strip(state: State) -> State:
        return {"text": normalise(state["text"])}

    def lower(state: State) -> State:
        return {"text": state["text"].lower()}

    clean = StateGraph(State)
    clean.add_node("strip", strip)
    clean.add_node("lower", lower)
    clean.add_edge(START, "strip")
    clean.add_edge("strip", "lower")
    clean.add_edge("lower", END)

    def split(state: State) -> list[Send]:
        return [Send("count_word", {"text": word}) for word in state["text"].split()]

    def count_word(state: State) -> State:
        return {"words": [state["text"]]}

    def approve(state: State) -> State:
        answer = interrupt(f"publish document {state['doc_id']}?")
        return {"approved": bool(answer)}

    graph = StateGraph(State)
    graph.add_node(
        "load",
        load,
        retry_policy=RetryPolicy(initial_interval=0.0, jitter=False, retry_on=ConnectionError),
    )
    graph.add_node("clean", clean.compile())
    graph.add_node("count_word", count_word)
    graph.add_node("approve", approve)
    graph.add_edge(START, "load")
    graph.add_edge("load", "clean")
    graph.add_conditional_edges("clean", split, ["count_word"])
    graph.add_edge("count_word", "approve")
    graph.add_edge("approve", END)
    return instrument(graph.compile(checkpointer=InMemorySaver()), collector)


def run_documents(app, doc_ids: range) -> list[State]:
    """Each document pauses at approve, and is resumed with a yes."""
    # invoke(), not ainvoke(): on Python 3.10, interrupt() in a node run by
    # ainvoke() cannot find its config (LangGraph needs 3.11's asyncio there).
    results = []
    for i in doc_ids:
        config = {"configurable": {"thread_id": f"doc-{i}"}}
        paused = app.invoke({"doc_id": i}, config)
        if "__interrupt__" not in paused:
            msg = f"document {i} should have paused at approve"
            raise RuntimeError(msg)
        results.append(app.invoke(Command(resume=True), config))
    return results


def main() -> None:
    collector = NodeMetricsCollector()
    app = build_graph(collector)
    results = run_documents(app, range(1, 5))
    print(f"{len(results)} documents approved, the first has words {results[0]['words']}\n")
    print(format_table(collector))


if __name__ == "__main__":
    main()
