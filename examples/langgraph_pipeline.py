"""
A LangGraph graph of metered nodes: sync and async, one reading LangGraph's
`config`, one flaky and retried by tenacity. No LLM: every node is
deterministic, so the counts at the end are exactly predictable.

Run it with `python examples/langgraph_pipeline.py` (needs `langgraph`).
"""

from __future__ import annotations

import asyncio

from typing import TypedDict

import tenacity

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from nodemetrics import NodeMetricsCollector, format_table, metered


class State(TypedDict, total=False):
    doc_id: int
    text: str
    words: int
    tag: str


def build_graph(collector: NodeMetricsCollector, *, asynchronous: bool):
    """
    load -> enrich (flaky, retried) -> count -> tag (reads LangGraph's config).

    LangGraph's `invoke` needs sync nodes; for `ainvoke` enrich and count are
    async. The node names are the same either way, so both record together.
    """
    attempts: dict[int, int] = {}

    def flaky(state: State) -> State:
        doc_id = state["doc_id"]
        attempts[doc_id] = attempts.get(doc_id, 0) + 1
        if doc_id % 3 == 0 and attempts[doc_id] == 1:  # every third doc fails once
            msg = "upstream reset the connection"
            raise ConnectionResetError(msg)
        return {"text": state["text"].upper()}

    retry = tenacity.retry(
        wait=tenacity.wait_none(),
        stop=tenacity.stop_after_attempt(3),
        before_sleep=collector.retry_hook("enrich"),
        reraise=True,
    )

    @metered("load", collector=collector)
    def load(state: State) -> State:
        return {"text": f"document {state['doc_id']} says hello"}

    # @metered outside @retry: one execution per document, retries counted apart.
    @metered("enrich", collector=collector)
    @retry
    def enrich(state: State) -> State:
        return flaky(state)

    @metered("enrich", collector=collector)
    @retry
    async def aenrich(state: State) -> State:
        await asyncio.sleep(0)
        return flaky(state)

    @metered("count", collector=collector)
    def count(state: State) -> State:
        return {"words": len(state["text"].split())}

    @metered("count", collector=collector)
    async def acount(state: State) -> State:
        await asyncio.sleep(0)
        return {"words": len(state["text"].split())}

    # LangGraph passes `config` only to nodes whose signature asks for it:
    # @metered keeps the signature, so this node still gets it.
    @metered("tag", collector=collector)
    def tag(state: State, config: RunnableConfig) -> State:
        return {"tag": f"{config['configurable']['tag']}:{state['words']}"}

    graph = StateGraph(State)
    graph.add_node("load", load)
    graph.add_node("enrich", aenrich if asynchronous else enrich)
    graph.add_node("count", acount if asynchronous else count)
    graph.add_node("tag", tag)
    graph.add_edge(START, "load")
    graph.add_edge("load", "enrich")
    graph.add_edge("enrich", "count")
    graph.add_edge("count", "tag")
    graph.add_edge("tag", END)
    return graph.compile()


async def run_concurrently(graph, doc_ids: range) -> list[State]:
    config: RunnableConfig = {"configurable": {"tag": "async"}}
    return await asyncio.gather(*(graph.ainvoke({"doc_id": i}, config) for i in doc_ids))


def main() -> None:
    collector = NodeMetricsCollector()
    graph = build_graph(collector, asynchronous=False)
    for i in range(1, 6):
        graph.invoke({"doc_id": i}, {"configurable": {"tag": "sync"}})
    agraph = build_graph(collector, asynchronous=True)
    results = asyncio.run(run_concurrently(agraph, range(6, 16)))
    print(f"{len(results)} documents through ainvoke, tagged {results[0]['tag']!r}\n")
    print(format_table(collector))


if __name__ == "__main__":
    main()
