"""instrument() on LangGraph's functional API: each @task call is an execution of its own."""

from __future__ import annotations

import asyncio
import inspect
import operator
import sys
import threading
import uuid

from typing import Annotated, Any, TypedDict

# Imported, not importorskip()ped: langgraph is a dev dependency, and a broken
# install must fail these tests, as it does in CI, rather than skip them quietly.
import langgraph.errors
import pytest

from conftest import outcome
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, Command, RetryPolicy, Send, interrupt

from nodemetrics import NodeMetricsCollector
from nodemetrics.integrations.langgraph import instrument


# The oldest supported LangGraph (1.0.0) has no task timeouts.
NodeTimeoutError: Any = getattr(langgraph.errors, "NodeTimeoutError", None)
# Before Python 3.11 asyncio tasks take no context, and LangGraph's async
# tasks raise "Called get_config outside of a runnable context" there, with or
# without instrument().
needs_async_tasks = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="LangGraph's async tasks need Python 3.11"
)
needs_task_timeouts = pytest.mark.skipif(
    NodeTimeoutError is None or "timeout" not in inspect.signature(task).parameters,
    reason="this LangGraph has no task timeouts",
)


@task
def double(x: int) -> int:
    return 2 * x


@task
def shout(word: str) -> str:
    # Runnables inside a task, named as the task, one run inside another's
    # run: not more executions of it.
    upper = RunnableLambda(str.upper, name="shout")
    return (upper | RunnableLambda(str.strip, name="shout")).invoke(upper.invoke(word))


def counts(c: NodeMetricsCollector) -> dict[str, tuple[int, int, int, int, int, int]]:
    return {node: outcome(c, node) for node in c.get_all_node_metrics()}


def nothing_open(app: object) -> bool:
    handler = type(app)._nodemetrics_handler  # type: ignore[attr-defined]
    return ({}, {}, {}, {}) == (handler._runs, handler._graphs, handler._pushed, handler._graph_of)


class TestEntrypoint:
    def test_each_task_call_counts_once_under_its_entrypoint(self):
        """Three calls of one task, one of another, in sequence and at once."""

        @entrypoint()
        def pipeline(x: int) -> int:
            first = double(x).result()
            both = [double(first), double(first + 1)]
            return sum(f.result() for f in both) + len(shout("a").result())

        c = NodeMetricsCollector()
        app = instrument(pipeline, c)
        assert 27 == app.invoke(3)
        assert nothing_open(app)
        assert {
            "pipeline": (1, 1, 0, 0, 0, 0),
            "pipeline/double": (3, 3, 0, 0, 0, 0),
            "pipeline/shout": (1, 1, 0, 0, 0, 0),
        } == counts(c)

    def test_a_retried_task_records_its_failure_and_one_retry(self):
        """A RetryPolicy runs the task again: a failure, a retry, a success."""
        attempts = []

        @task(retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False))
        def fetch(x: int) -> int:
            attempts.append(x)
            if len(attempts) == 1:
                raise ConnectionError("reset")
            return x

        @entrypoint()
        def job(x: int) -> int:
            return fetch(x).result()

        c = NodeMetricsCollector()
        assert 7 == instrument(job, c).invoke(7)
        assert 2 == len(attempts)
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "job/fetch")
        assert 1 == c.get_node_metrics("job/fetch").network_errors
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "job")

    def test_a_failing_task_fails_itself_and_its_entrypoint(self):
        @task
        def parse(text: str) -> int:
            return int(text)

        @entrypoint()
        def job(text: str) -> int:
            return parse(text).result()

        c = NodeMetricsCollector()
        app = instrument(job, c)
        with pytest.raises(ValueError, match="invalid literal"):
            app.invoke("x")
        assert nothing_open(app)
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "job/parse")
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "job")

    def test_a_task_called_by_a_task_is_named_by_both(self):
        @task
        def outer(x: int) -> int:
            return double(x).result() + 1

        @entrypoint()
        def job(x: int) -> int:
            return outer(x).result()

        c = NodeMetricsCollector()
        assert 7 == instrument(job, c).invoke(3)
        assert {
            "job": (1, 1, 0, 0, 0, 0),
            "job/outer": (1, 1, 0, 0, 0, 0),
            "job/outer/double": (1, 1, 0, 0, 0, 0),
        } == counts(c)

    def test_an_interrupt_in_a_task_is_an_interruption_then_a_run(self):
        @task
        def approve(x: int) -> int:
            return interrupt("ok?") + x

        @entrypoint(checkpointer=InMemorySaver())
        def job(x: int) -> int:
            return approve(x).result()

        c = NodeMetricsCollector()
        app = instrument(job, c)
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        app.invoke(1, config)
        assert (0, 0, 0, 0, 0, 1) == outcome(c, "job/approve")
        assert 11 == app.invoke(Command(resume=10), config)
        assert (1, 1, 0, 0, 0, 1) == outcome(c, "job/approve")
        assert nothing_open(app)

    def test_a_call_answered_from_the_cache_is_not_counted(self):
        runs = []

        @task(cache_policy=CachePolicy())
        def lookup(x: int) -> int:
            runs.append(x)
            return x + 1

        @entrypoint(cache=InMemoryCache())
        def job(x: int) -> int:
            return lookup(x).result()

        c = NodeMetricsCollector()
        app = instrument(job, c)
        assert [3, 3] == [app.invoke(2), app.invoke(2)]
        assert [2] == runs
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "job/lookup")
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "job")

    @needs_async_tasks
    def test_async_tasks(self):
        @task
        async def slow_double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        @entrypoint()
        async def job(xs: list[int]) -> int:
            return sum(await asyncio.gather(*(slow_double(x) for x in xs)))

        c = NodeMetricsCollector()
        assert 12 == asyncio.run(instrument(job, c).ainvoke([1, 2, 3]))
        assert (3, 3, 0, 0, 0, 0) == outcome(c, "job/slow_double")


class _WhenEnded(BaseCallbackHandler):
    """Sets an event once the run of a chain of this name has ended."""

    run_inline = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.ended = threading.Event()
        self.runs: set[object] = set()

    def on_chain_start(self, serialized, inputs, *, run_id, **kwargs):
        if kwargs.get("name") == self.name:
            self.runs.add(run_id)

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        if run_id in self.runs:
            self.ended.set()


class TestRunsTheHandlerCannotPairByTheirCaller:
    """Found by review: a task's run is bounded by its graph run, not by its caller's."""

    def test_a_task_that_ends_after_its_caller_counts_once_it_ends(self):
        """Never waited for, it runs on, and ends after the entrypoint's run (that order
        forced by an event the entrypoint's end sets); none of the handler's state is left."""
        entrypoint_ended = _WhenEnded("pipeline")
        finished = []

        @task
        def side_effect(x: int) -> int:
            assert entrypoint_ended.ended.wait(10)
            finished.append(x)
            return x

        @entrypoint()
        def pipeline(x: int) -> int:
            side_effect(x)  # never .result()
            return x

        c = NodeMetricsCollector()
        app = instrument(pipeline, c)
        assert 5 == app.invoke(5, {"callbacks": [entrypoint_ended]})
        assert [5] == finished
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "pipeline/side_effect")
        assert nothing_open(app)

    def test_a_task_called_inside_a_tool(self):
        """A tool's run ends by a callback the handler does not hear: nothing is left open."""

        @task
        def lookup(q: str) -> str:
            return q.upper()

        @tool
        def search(q: str) -> str:
            """Search."""
            return lookup(q).result()

        @entrypoint()
        def agent(q: str) -> str:
            return search.invoke({"q": q})

        c = NodeMetricsCollector()
        app = instrument(agent, c)
        assert ["HI", "HI", "HI"] == [app.invoke("hi") for _ in range(3)]
        assert (3, 3, 0, 0, 0, 0) == outcome(c, "agent/lookup")
        assert nothing_open(app)

    @needs_async_tasks
    @needs_task_timeouts
    def test_a_timed_out_task_re_attempted_before_its_run_ended(self):
        """The RetryPolicy starts the next attempt at once, while the cancelled one
        is still open under the same namespace: a timeout, a retry and a success."""
        attempts = []
        release = asyncio.Event()

        @task(
            timeout=0.05,
            retry_policy=RetryPolicy(
                max_attempts=2, initial_interval=0.0, jitter=False, retry_on=NodeTimeoutError
            ),
        )
        async def fetch(x: int) -> int:
            attempts.append(x)
            if len(attempts) == 1:
                await release.wait()  # set by no one: it can only be cancelled
            return x

        @entrypoint()
        async def job(x: int) -> int:
            return await fetch(x)

        c = NodeMetricsCollector()
        app = instrument(job, c)
        assert 3 == asyncio.run(app.ainvoke(3))
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "job/fetch")
        assert 1 == c.get_node_metrics("job/fetch").timeout_errors
        assert nothing_open(app)

    @needs_async_tasks
    def test_two_resumes_of_one_thread_at_once(self):
        """Both runs give their tasks the same ids, so the same namespaces: each
        call is still one execution."""
        calls: list[str] = []

        @task
        async def work(x: int) -> int:
            calls.append("work")
            await asyncio.sleep(0)
            return x

        @task
        async def approve(x: int) -> int:
            calls.append("approve")
            return interrupt("ok?") + x

        @entrypoint(checkpointer=InMemorySaver())
        async def job(x: int) -> int:
            a = await approve(x)
            return a + sum(await asyncio.gather(*(work(i) for i in range(3))))

        async def run() -> list[int]:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            await app.ainvoke(1, config)
            calls.clear()
            resume = Command(resume=10)
            return list(
                await asyncio.gather(app.ainvoke(resume, config), app.ainvoke(resume, config))
            )

        c = NodeMetricsCollector()
        app = instrument(job, c)
        assert [14, 14] == asyncio.run(run())
        assert (6, 2) == (calls.count("work"), calls.count("approve"))
        assert (6, 6, 0, 0, 0, 0) == outcome(c, "job/work")
        assert (2, 2, 0, 0, 0, 1) == outcome(c, "job/approve")
        assert nothing_open(app)

    def test_a_task_named_start(self):
        @task(name="__start__")
        def first(x: int) -> int:
            return x

        @entrypoint()
        def pipeline(x: int) -> int:
            return first(x).result() + first(x).result()

        c = NodeMetricsCollector()
        assert 4 == instrument(pipeline, c).invoke(2)
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "pipeline/__start__")


class _State(TypedDict, total=False):
    xs: list[int]
    out: Annotated[list[int], operator.add]


def _sent_twice() -> StateGraph:
    def fan(state: _State) -> list[Send]:
        return [Send("work", {"xs": [x]}) for x in state["xs"]]

    def work(state: _State) -> _State:
        # Named as the node, one run inside another's: neither is the node's.
        plus = RunnableLambda(lambda v: v + 1, name="work")
        minus = RunnableLambda(lambda v: v - 1, name="work")
        x = (plus | minus).invoke(plus.invoke(state["xs"][0]))
        return {"out": [double(x).result()]}

    graph = StateGraph(_State)
    graph.add_node("work", work)
    graph.add_conditional_edges(START, fan, ["work"])
    graph.add_edge("work", END)
    return graph


def test_a_task_called_from_a_graph_node_sent_to_twice():
    """A task in a node that a Send runs twice: two runs of the node, two of the task;
    runnables inside the node named as the node are neither."""
    c = NodeMetricsCollector()
    app = instrument(_sent_twice().compile(), c)
    assert [4, 6] == sorted(app.invoke({"xs": [1, 2]})["out"])
    assert nothing_open(app)
    assert {"work": (2, 2, 0, 0, 0, 0), "work/double": (2, 2, 0, 0, 0, 0)} == counts(c)


def test_the_same_in_a_subgraph():
    """As above, the node sent to in a subgraph: its runs and its task's named by path."""
    sub = _sent_twice().compile()
    graph = StateGraph(_State)
    graph.add_node("sub", sub)
    graph.add_edge(START, "sub")
    graph.add_edge("sub", END)
    c = NodeMetricsCollector()
    app = instrument(graph.compile(), c)
    assert [4, 6] == sorted(app.invoke({"xs": [1, 2]})["out"])
    assert nothing_open(app)
    assert {
        "sub": (1, 1, 0, 0, 0, 0),
        "sub/work": (2, 2, 0, 0, 0, 0),
        "sub/work/double": (2, 2, 0, 0, 0, 0),
    } == counts(c)
