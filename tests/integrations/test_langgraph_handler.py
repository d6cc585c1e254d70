"""NodeMetricsCallbackHandler and instrument() on real compiled LangGraph graphs."""

from __future__ import annotations

import asyncio
import itertools
import operator
import threading
import time
import traceback
import uuid

from typing import Annotated, TypedDict, get_args

# Imported, not importorskip()ped: langgraph is a dev dependency, and a broken
# install must fail these tests, as it does in CI, rather than skip them quietly.
import langgraph  # noqa: F401
import pytest
import tenacity

from conftest import outcome
from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send, StreamMode, interrupt

from nodemetrics import NodeMetricsCollector, get_default_collector, metered
from nodemetrics.integrations.langgraph import (
    NodeMetricsCallbackHandler,
    instrument,
)


# Every mode this LangGraph has, so that a new one is tested when it comes.
STREAM_MODES = get_args(StreamMode)


class State(TypedDict, total=False):
    x: int
    items: Annotated[list, operator.add]


def handler_of(app) -> NodeMetricsCallbackHandler:
    return type(app)._nodemetrics_handler


def assert_nothing_open(handler: NodeMetricsCallbackHandler) -> None:
    assert ({}, {}, {}, {}) == (handler._runs, handler._graphs, handler._pushed, handler._graph_of)


def chain(*names: str, node=None, parallel: bool = False) -> StateGraph:
    """A graph of trivial nodes, one after another (or all from START at once)."""

    def step(state: State) -> State:
        return {"x": state.get("x", 0) + 1}

    def branch(state: State) -> State:
        return {"items": [1]}

    g = StateGraph(State)
    for name in names:
        g.add_node(name, node or (branch if parallel else step))
    if parallel:
        for name in names:
            g.add_edge(START, name)
            g.add_edge(name, END)
    else:
        g.add_edge(START, names[0])
        for a, b in itertools.pairwise(names):
            g.add_edge(a, b)
        g.add_edge(names[-1], END)
    return g


class TestNodes:
    def test_what_is_a_node(self):
        """Nodes as in add_node, subgraph nodes by path; not the run, branches, inner runnables."""
        llm = FakeListChatModel(responses=["hi"])

        def inner(state: State) -> State:
            RunnableLambda(lambda v: v).invoke(1)
            llm.invoke("hello")
            return {"x": state["x"] * 2}

        sub = StateGraph(State)
        sub.add_node("inner", inner)
        sub.add_edge(START, "inner")
        sub.add_edge("inner", END)

        def first(state: State) -> State:
            return {"x": state["x"] + 1}

        def branch(state: State) -> str:
            return "sub"

        g = StateGraph(State)
        g.add_node("first", first)
        g.add_node("sub", sub.compile())
        g.add_edge(START, "first")
        g.add_conditional_edges("first", branch, ["sub"])
        g.add_edge("sub", END)
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)

        assert 4 == app.invoke({"x": 1})["x"]
        assert ["first", "sub", "sub/inner"] == sorted(c.get_all_node_metrics())
        for node in ["first", "sub", "sub/inner"]:
            assert (1, 1, 0, 0, 0, 0) == outcome(c, node)
        assert_nothing_open(handler_of(app))

    def test_nested_subgraphs_and_subgraph_called_inside_a_node(self):
        """Each level of the path is a node name; a subgraph invoked by a node counts too."""
        leaf = chain("leaf").compile()
        mid = StateGraph(State)
        mid.add_node("deep", leaf)
        mid.add_edge(START, "deep")
        mid.add_edge("deep", END)
        mid_app = mid.compile()

        def calls_mid(state: State) -> State:
            return mid_app.invoke(state)

        g = StateGraph(State)
        g.add_node("outer", calls_mid)
        g.add_edge(START, "outer")
        g.add_edge("outer", END)
        c = NodeMetricsCollector()
        instrument(g.compile(), c).invoke({"x": 0})
        assert ["outer", "outer/deep", "outer/deep/leaf"] == sorted(c.get_all_node_metrics())

    def test_send_fan_out(self):
        """Each Send is one execution of its target node."""

        def route(state: State) -> list[Send]:
            return [Send("work", {"x": i}) for i in range(7)]

        def work(state: State) -> State:
            return {"items": [state["x"]]}

        g = StateGraph(State)
        g.add_node("work", work)
        g.add_conditional_edges(START, route, ["work"])  # so LangGraph runs "__start__" too
        g.add_edge("work", END)
        c = NodeMetricsCollector()
        result = instrument(g.compile(), c).invoke({"x": 0})
        assert list(range(7)) == sorted(result["items"])
        assert (7, 7, 0, 0, 0, 0) == outcome(c, "work")
        assert ["work"] == list(c.get_all_node_metrics())

    def test_config_callbacks_form_on_a_graph_compiled_elsewhere(self):
        """The handler in a call's config meters a graph nobody instrumented."""
        app = chain("a", "b").compile()
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        app.invoke({"x": 0}, {"callbacks": [handler]})
        app.invoke({"x": 0})  # without the handler: not metered
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "a")
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "b")
        assert_nothing_open(handler)


class TestOutcomes:
    def test_failure_is_classified_and_untouched(self):
        """A failing node is one classified failure; the same exception reaches the caller."""
        err = TimeoutError("upstream")

        def boom(state: State) -> State:
            raise err

        c = NodeMetricsCollector()
        app = instrument(chain("boom", node=boom).compile(), c)
        with pytest.raises(TimeoutError) as info:
            app.invoke({"x": 0})
        assert err is info.value
        assert "boom" == traceback.extract_tb(info.value.__traceback__)[-1].name
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "boom")
        assert 1 == c.get_node_metrics("boom").timeout_errors
        assert_nothing_open(handler_of(app))

    def test_result_is_untouched(self):
        """A value a node puts in the state comes out as the very same object."""
        payload = object()

        class Loose(TypedDict, total=False):
            payload: object

        def put(state: Loose) -> Loose:
            return {"payload": payload}

        g = StateGraph(Loose)
        g.add_node("put", put)
        g.add_edge(START, "put")
        g.add_edge("put", END)
        result = instrument(g.compile(), NodeMetricsCollector()).invoke({})
        assert payload is result["payload"]

    @pytest.mark.parametrize("succeed_on", [3, None])
    def test_retry_policy_matches_tenacity(self, succeed_on):
        """RetryPolicy attempts count as @metered inside tenacity's @retry with retry_hook."""
        max_attempts = 3

        def flaky_factory():
            attempts = [0]

            def fetch(state: State) -> State:
                attempts[0] += 1
                if attempts[0] != succeed_on:
                    raise ConnectionResetError("reset")
                return {"x": 1}

            return fetch

        c = NodeMetricsCollector()
        g = StateGraph(State)
        policy = RetryPolicy(
            max_attempts=max_attempts, initial_interval=0.0, jitter=False, retry_on=ConnectionError
        )
        g.add_node("fetch", flaky_factory(), retry_policy=policy)
        g.add_edge(START, "fetch")
        g.add_edge("fetch", END)
        app = instrument(g.compile(), c)

        reference = NodeMetricsCollector()
        tenacity_fetch = tenacity.retry(
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=tenacity.wait_none(),
            before_sleep=reference.retry_hook("fetch"),
            reraise=True,
        )(metered("fetch", collector=reference)(flaky_factory()))

        if succeed_on is None:
            with pytest.raises(ConnectionResetError):
                app.invoke({"x": 0})
            with pytest.raises(ConnectionResetError):
                tenacity_fetch({"x": 0})
            assert (3, 0, 3, 2, 0, 0) == outcome(c, "fetch")
        else:
            app.invoke({"x": 0})
            tenacity_fetch({"x": 0})
            assert (3, 1, 2, 2, 0, 0) == outcome(c, "fetch")
        assert outcome(reference, "fetch") == outcome(c, "fetch")
        assert 2 == c.get_node_metrics("fetch").network_errors - (succeed_on is None)
        assert_nothing_open(handler_of(app))

    def test_rerun_after_a_failed_invoke_is_no_retry(self):
        """A task that failed in one invoke and runs in the next is not a retry."""
        calls = [0]

        def once_bad(state: State) -> State:
            calls[0] += 1
            if calls[0] == 1:
                raise ValueError("first call")
            return {"x": 1}

        c = NodeMetricsCollector()
        app = instrument(chain("n", node=once_bad).compile(checkpointer=InMemorySaver()), c)
        config = {"configurable": {"thread_id": "t"}}
        with pytest.raises(ValueError, match="first call"):
            app.invoke({"x": 0}, config)
        app.invoke(None, config)  # resumes the failed task from its checkpoint
        assert (2, 1, 1, 0, 0, 0) == outcome(c, "n")

    def test_interrupt_and_resume(self):
        """The paused run is an interruption only; the resumed run an ordinary execution."""

        def approve(state: State) -> State:
            answer = interrupt("approve?")
            return {"x": state["x"] + answer}

        c = NodeMetricsCollector()
        app = instrument(chain("approve", node=approve).compile(checkpointer=InMemorySaver()), c)
        config = {"configurable": {"thread_id": "t"}}
        paused = app.invoke({"x": 1}, config)
        assert "approve?" == paused["__interrupt__"][0].value
        assert (0, 0, 0, 0, 0, 1) == outcome(c, "approve")
        assert_nothing_open(handler_of(app))
        assert 11 == app.invoke(Command(resume=10), config)["x"]
        assert (1, 1, 0, 0, 0, 1) == outcome(c, "approve")
        assert_nothing_open(handler_of(app))

    def test_interrupt_in_a_subgraph(self):
        """An interrupt inside a subgraph pauses both the inner node and the subgraph node."""

        def ask(state: State) -> State:
            return {"x": interrupt("ok?")}

        sub = chain("ask", node=ask).compile()
        g = StateGraph(State)
        g.add_node("sub", sub)
        g.add_edge(START, "sub")
        g.add_edge("sub", END)
        c = NodeMetricsCollector()
        app = instrument(g.compile(checkpointer=InMemorySaver()), c)
        config = {"configurable": {"thread_id": "t"}}
        app.invoke({"x": 0}, config)
        assert (0, 0, 0, 0, 0, 1) == outcome(c, "sub")
        assert (0, 0, 0, 0, 0, 1) == outcome(c, "sub/ask")
        assert 5 == app.invoke(Command(resume=5), config)["x"]
        assert (1, 1, 0, 0, 0, 1) == outcome(c, "sub")
        assert (1, 1, 0, 0, 0, 1) == outcome(c, "sub/ask")

    def test_command_to_parent_is_a_success(self):
        """A node handing a Command to its parent graph succeeds, and so does its subgraph."""

        def inner(state: State) -> Command:
            return Command(graph=Command.PARENT, goto="after", update={"items": ["inner"]})

        sub = StateGraph(State)
        sub.add_node("inner", inner)
        sub.add_edge(START, "inner")

        def after(state: State) -> State:
            return {"items": ["after"]}

        g = StateGraph(State)
        g.add_node("sub", sub.compile())
        g.add_node("after", after)
        g.add_edge(START, "sub")
        c = NodeMetricsCollector()
        assert {"items": ["inner", "after"]} == instrument(g.compile(), c).invoke({})
        for node in ["sub", "sub/inner", "after"]:
            assert (1, 1, 0, 0, 0, 0) == outcome(c, node)


class TestMeteredInsideLangGraph:
    def test_metered_interrupt_and_parent_command(self):
        """@metered alone follows the same rules with LangGraph's real exceptions."""
        c = NodeMetricsCollector()

        @metered("approve", collector=c)
        def approve(state: State) -> State:
            return {"x": interrupt("approve?")}

        @metered("hand_off", collector=c)
        def hand_off(state: State) -> Command:
            return Command(graph=Command.PARENT, goto="done")

        @metered("done", collector=c)
        def done(state: State) -> State:
            return {"items": ["done"]}

        sub = StateGraph(State)
        sub.add_node("hand_off", hand_off)
        sub.add_edge(START, "hand_off")
        g = StateGraph(State)
        g.add_node("approve", approve)
        g.add_node("sub", sub.compile())
        g.add_node("done", done)
        g.add_edge(START, "approve")
        g.add_edge("approve", "sub")
        app = g.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "t"}}
        app.invoke({"x": 0}, config)
        assert (0, 0, 0, 0, 0, 1) == outcome(c, "approve")
        app.invoke(Command(resume=3), config)
        assert (1, 1, 0, 0, 0, 1) == outcome(c, "approve")
        # Command(graph=PARENT) returned from a node is raised as ParentCommand
        # by LangGraph only after the node function returned: a success either way.
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "hand_off")
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "done")

    def test_metered_and_instrumented_count_twice(self):
        """A node both @metered and under instrument() records twice under one name (README)."""
        c = NodeMetricsCollector()

        @metered("n", collector=c)
        def n(state: State) -> State:
            return {"x": 1}

        instrument(chain("n", node=n).compile(), c).invoke({"x": 0})
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "n")


class TestDurations:
    def test_sync_node_wall_time(self):
        """A sync node that sleeps 20 ms reads about 20 ms (at least, and well under 10x)."""

        def sleepy(state: State) -> State:
            time.sleep(0.02)
            return {}

        c = NodeMetricsCollector()
        instrument(chain("sleepy", "quick").compile(), c).invoke({"x": 0})
        sleepy_app = instrument(chain("sleepy", node=sleepy).compile(), c)
        sleepy_app.invoke({"x": 0})
        ms = c.get_node_metrics("sleepy").last_execution_ms
        assert ms is not None
        assert 20.0 <= ms < 200.0

    async def test_async_node_wall_time(self):
        """An async node that sleeps 20 ms reads about 20 ms."""

        async def sleepy(state: State) -> State:
            await asyncio.sleep(0.02)
            return {}

        c = NodeMetricsCollector()
        await instrument(chain("sleepy", node=sleepy).compile(), c).ainvoke({"x": 0})
        ms = c.get_node_metrics("sleepy").last_execution_ms
        assert ms is not None
        assert 19.0 <= ms < 200.0


class TestConcurrency:
    def test_parallel_branches_in_one_superstep(self):
        """Five branches of one superstep (threads) each count once per run."""
        names = [f"p{i}" for i in range(5)]
        c = NodeMetricsCollector()
        app = instrument(chain(*names, parallel=True).compile(), c)
        for _ in range(20):
            app.invoke({"x": 0})
        for name in names:
            assert (20, 20, 0, 0, 0, 0) == outcome(c, name)
        assert_nothing_open(handler_of(app))

    def test_four_threads_share_one_instrumented_graph(self):
        """Four threads invoking one instrumented graph lose no count."""
        c = NodeMetricsCollector()
        app = instrument(chain("a", "b", "c", parallel=False).compile(), c)
        runs = 50
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def worker():
            try:
                barrier.wait(timeout=10)
                for _ in range(runs):
                    app.invoke({"x": 0})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a thread is stuck"
        assert [] == errors
        for name in "abc":
            assert (4 * runs, 4 * runs, 0, 0, 0, 0) == outcome(c, name)
        assert_nothing_open(handler_of(app))

    async def test_fifty_ainvokes_under_gather(self):
        """50 concurrent ainvoke()s of async and sync nodes count exactly."""

        async def anode(state: State) -> State:
            await asyncio.sleep(0)
            return {"x": state["x"] + 1}

        g = chain("a", "b", node=anode)
        g.add_node("sync", lambda state: {"x": state["x"] + 1})
        g.add_edge("b", "sync")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        results = await asyncio.wait_for(
            asyncio.gather(*(app.ainvoke({"x": i}) for i in range(50))), timeout=60
        )
        assert [i + 3 for i in range(50)] == [r["x"] for r in results]
        for name in ["a", "b", "sync"]:
            assert (50, 50, 0, 0, 0, 0) == outcome(c, name)
        assert_nothing_open(handler_of(app))

    @pytest.mark.parametrize("mode", STREAM_MODES)
    def test_stream_counts_what_invoke_counts(self, mode):
        """stream() in every stream_mode records what invoke() does."""
        by_invoke, by_stream = NodeMetricsCollector(), NodeMetricsCollector()
        graph = fan_out_graph()
        instrument(graph, by_invoke).invoke({"x": 0})
        chunks = list(instrument(graph, by_stream).stream({"x": 0}, stream_mode=mode))
        assert mode in {"custom", "messages", "checkpoints"} or chunks
        assert by_invoke.to_dict().keys() == by_stream.to_dict().keys()
        for node in by_invoke.to_dict():
            assert outcome(by_invoke, node) == outcome(by_stream, node)

    @pytest.mark.parametrize("mode", STREAM_MODES)
    async def test_astream_counts_what_invoke_counts(self, mode):
        """astream() in every stream_mode records what invoke() does."""
        by_invoke, by_stream = NodeMetricsCollector(), NodeMetricsCollector()
        graph = fan_out_graph()
        instrument(graph, by_invoke).invoke({"x": 0})
        app = instrument(graph, by_stream)
        chunks = [chunk async for chunk in app.astream({"x": 0}, stream_mode=mode)]
        assert mode in {"custom", "messages", "checkpoints"} or chunks
        for node in by_invoke.to_dict():
            assert outcome(by_invoke, node) == outcome(by_stream, node)
        assert_nothing_open(handler_of(app))

    def test_batch_and_abatch(self):
        """batch() and abatch() meter each input's run."""
        c = NodeMetricsCollector()
        app = instrument(chain("a", "b").compile(), c)
        assert [2, 3] == [r["x"] for r in app.batch([{"x": 0}, {"x": 1}])]
        assert [2] * 3 == [r["x"] for r in asyncio.run(app.abatch([{"x": 0}] * 3))]
        assert (5, 5, 0, 0, 0, 0) == outcome(c, "a")


def fan_out_graph():
    """A subgraph, a Send fan-out and a retried node: what streaming must not change."""
    attempts = [0]

    def flaky(state: State) -> State:
        attempts[0] += 1
        if attempts[0] % 2:
            raise ConnectionResetError("reset")
        return {"x": state["x"] + 1}

    def route(state: State) -> list[Send]:
        return [Send("work", {"x": i}) for i in range(3)]

    def work(state: State) -> State:
        return {"items": [state["x"]]}

    g = StateGraph(State)
    g.add_node("flaky", flaky, retry_policy=RetryPolicy(initial_interval=0.0, jitter=False))
    g.add_node("sub", chain("inner").compile())
    g.add_node("work", work)
    g.add_edge(START, "flaky")
    g.add_edge("flaky", "sub")
    g.add_conditional_edges("sub", route, ["work"])
    g.add_edge("work", END)
    return g.compile()


class TestEveryEndFreesTheRun:
    async def test_exception_in_another_branch_cancels_the_sibling(self):
        """A failing branch cancels its async sibling: a failure, a cancellation, nothing kept."""
        started = asyncio.Event()

        async def fails(state: State) -> State:
            await started.wait()
            raise ValueError("bad branch")

        async def waits(state: State) -> State:
            started.set()
            await asyncio.Event().wait()
            return {}

        g = StateGraph(State)
        g.add_node("fails", fails)
        g.add_node("waits", waits)
        for name in ["fails", "waits"]:
            g.add_edge(START, name)
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        with pytest.raises(ValueError, match="bad branch"):
            await asyncio.wait_for(app.ainvoke({}), timeout=10)
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "fails")
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "waits")
        assert_nothing_open(handler_of(app))

    async def test_cancelled_ainvoke(self):
        """Cancelling the caller's task cancels the running node, and frees it."""
        started = asyncio.Event()

        async def waits(state: State) -> State:
            started.set()
            await asyncio.Event().wait()
            return {}

        c = NodeMetricsCollector()
        app = instrument(chain("waits", node=waits).compile(), c)
        task = asyncio.create_task(app.ainvoke({"x": 0}))
        await asyncio.wait_for(started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "waits")
        assert_nothing_open(handler_of(app))

    async def test_astream_closed_early(self):
        """Leaving astream() early cancels the node still running, and frees it."""

        async def quick(state: State) -> State:
            return {"items": ["quick"]}

        async def slow(state: State) -> State:
            await asyncio.Event().wait()
            return {}

        g = StateGraph(State)
        g.add_node("quick", quick)
        g.add_node("slow", slow)
        g.add_edge(START, "quick")
        g.add_edge(START, "slow")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        stream = app.astream({}, stream_mode="updates")
        assert {"quick": {"items": ["quick"]}} == await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "quick")
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "slow")
        assert_nothing_open(handler_of(app))

    def test_stream_closed_early(self):
        """Leaving stream() between steps frees everything; the next node never ran."""
        c = NodeMetricsCollector()
        app = instrument(chain("a", "b").compile(), c)
        stream = app.stream({"x": 0})
        assert {"a": {"x": 1}} == next(stream)
        stream.close()
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "a")
        assert "b" not in c.get_all_node_metrics()
        assert_nothing_open(handler_of(app))


class TestHandlerDirectly:
    """LangChain's own callback calls, made by hand, for what LangGraph 1.x never does."""

    def start(self, handler, run, parent, tags=("graph:step:1",), ns="n:task"):
        handler.on_chain_start(
            {},
            {},
            run_id=run,
            parent_run_id=parent,
            tags=list(tags),
            metadata={"langgraph_checkpoint_ns": ns},
        )

    def test_run_left_open_when_its_graph_ends_is_a_cancellation(self):
        """A node run without an end when its graph run ends is cancelled and freed."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, node, late = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        handler.on_chain_start({}, {}, run_id=graph, tags=[], metadata={})
        self.start(handler, node, graph)
        self.start(handler, late, graph, ns="m:task")
        handler.on_chain_end({}, run_id=late)
        handler.on_chain_error(ValueError(), run_id=graph)
        handler.on_chain_end({}, run_id=node)  # too late: already counted
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "n")
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "m")
        assert_nothing_open(handler)

    def test_end_of_an_unknown_run_without_open_graphs(self):
        """An end or error for a run the handler never saw records nothing."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        handler.on_chain_error(ValueError(), run_id=uuid.uuid4())
        handler.on_chain_end({}, run_id=uuid.uuid4())
        assert {} == c.get_all_node_metrics()
        assert_nothing_open(handler)

    def test_orphan_ended_meanwhile_is_counted_once(self):
        """An open run that another thread ends while its graph closes is not also cancelled."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, node = uuid.uuid4(), uuid.uuid4()
        self.start(handler, node, graph)
        # As if another thread had just popped the run, between the two steps of its end.
        handler._runs.pop(node.int)
        handler.on_chain_end({}, run_id=graph)
        assert {} == c.get_all_node_metrics()
        assert_nothing_open(handler)

    @pytest.mark.parametrize(
        ("tags", "metadata", "parent"),
        [
            (None, {"langgraph_checkpoint_ns": "n:t"}, uuid.uuid4()),
            (["seq:step:1"], {"langgraph_checkpoint_ns": "n:t"}, uuid.uuid4()),
            (["graph:step:1"], None, uuid.uuid4()),
            (["graph:step:1"], {"langgraph_checkpoint_ns": "n:t"}, None),
            (["graph:step:1"], {}, uuid.uuid4()),
            (["graph:step:1"], {"langgraph_checkpoint_ns": 3}, uuid.uuid4()),
            (["graph:step:1"], {"langgraph_checkpoint_ns": ""}, uuid.uuid4()),
        ],
    )
    def test_not_a_node_run(self, tags, metadata, parent):
        """Chains that are not LangGraph tasks record nothing and keep nothing."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        run = uuid.uuid4()
        handler.on_chain_start(
            {}, {}, run_id=run, parent_run_id=parent, tags=tags, metadata=metadata
        )
        handler.on_chain_end({}, run_id=run)
        assert {} == c.get_all_node_metrics()
        assert_nothing_open(handler)

    def test_failure_inside_the_handler_is_logged(self, logs, broken_collector):
        """A collector that raises is logged by every callback and never raised."""
        handler = NodeMetricsCallbackHandler(broken_collector)
        graph, ok, bad = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.start(handler, ok, graph)
        handler.on_chain_end({}, run_id=ok)
        self.start(handler, bad, graph)
        handler.on_chain_error(ValueError(), run_id=bad)
        handler.on_chain_start(
            {}, {}, run_id=uuid.uuid4(), parent_run_id=graph, tags=[1], metadata={}
        )
        handler.on_chain_end({}, run_id=graph)
        failed = [m for m in logs.of_level("ERROR") if "nodemetrics.langgraph_handler_failed" in m]
        assert 3 == len(failed)
        assert_nothing_open(handler)

    def test_broken_collector_under_a_real_graph(self, logs, broken_collector):
        """On a real graph, a collector that raises changes neither result nor exception."""
        app = instrument(chain("a", "b").compile(), broken_collector)
        assert 2 == app.invoke({"x": 0})["x"]
        assert any("langgraph_handler_failed" in m for m in logs.of_level("ERROR"))


class TestInstrument:
    def test_original_untouched_and_same_kind(self):
        """instrument() returns a copy of a subclass; the original meters nothing."""
        c = NodeMetricsCollector()
        original = chain("a").compile(checkpointer=InMemorySaver())
        app = instrument(original, c)
        assert type(original) is type(app).__mro__[1]
        assert type(original).__name__ == type(app).__name__
        assert original is not app
        assert original.checkpointer is app.checkpointer
        assert not hasattr(type(original), "_nodemetrics_handler")
        original.invoke({"x": 0}, {"configurable": {"thread_id": "t"}})
        assert {} == c.get_all_node_metrics()
        app.invoke({"x": 0}, {"configurable": {"thread_id": "u"}})
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "a")

    def test_with_config_stays_instrumented(self):
        """A copy made by with_config() of an instrumented graph is still metered."""
        c = NodeMetricsCollector()
        app = instrument(chain("a").compile(), c).with_config(recursion_limit=5)
        app.invoke({"x": 0})
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "a")

    def test_per_call_callbacks_are_kept(self):
        """Callbacks passed per call, as a list or a manager, run next to the handler."""
        c, other, third = NodeMetricsCollector(), NodeMetricsCollector(), NodeMetricsCollector()
        app = instrument(chain("a").compile(), c)
        app.invoke({"x": 0}, {"callbacks": [NodeMetricsCallbackHandler(other)]})
        third_handler = NodeMetricsCallbackHandler(third)
        manager = CallbackManager(handlers=[third_handler], inheritable_handlers=[third_handler])
        app.invoke({"x": 0}, {"callbacks": manager})
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "a")
        assert (1, 1, 0, 0, 0, 0) == outcome(other, "a") == outcome(third, "a")

    def test_handler_already_there_is_not_added_twice(self):
        """A call that already carries the graph's own handler records each run once."""
        c = NodeMetricsCollector()
        app = instrument(chain("a").compile(), c)
        handler = handler_of(app)
        app.invoke({"x": 0}, {"callbacks": [handler]})
        manager = CallbackManager(handlers=[handler], inheritable_handlers=[handler])
        app.invoke({"x": 0}, {"callbacks": manager})
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "a")

    def test_graph_invoked_inside_a_node_stays_its_child(self):
        """An instrumented graph run inside a node keeps that node run as its parent."""
        runs: list[tuple[str, uuid.UUID, uuid.UUID | None]] = []

        class Tree(BaseCallbackHandler):
            def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw):
                runs.append((kw["name"], run_id, parent_run_id))

        c = NodeMetricsCollector()
        inner = instrument(chain("leaf").compile(), c)

        def calls_inner(state: State) -> State:
            return inner.invoke(state)

        g = StateGraph(State)
        g.add_node("outer", calls_inner)
        g.add_edge(START, "outer")
        g.add_edge("outer", END)
        assert 1 == g.compile().invoke({"x": 0}, {"callbacks": [Tree()]})["x"]
        ids = {name: run_id for name, run_id, _ in runs}
        parents = {name: parent for name, _, parent in runs}
        (inner_run,) = [run for name, run, parent in runs if parent == ids["outer"]]
        assert parents["leaf"] == inner_run
        assert parents["outer"] is not None
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "outer/leaf")

    def test_default_collector(self):
        """Without a collector, both entry points record into the default collector."""
        default = get_default_collector()
        assert default is NodeMetricsCallbackHandler().collector
        name = f"default-{uuid.uuid4()}"
        instrument(chain(name).compile()).invoke({"x": 0})
        assert 1 == default.get_node_metrics(name).success_count
        default.reset_node_metrics(name)

    def test_uncompiled_graph_is_refused(self):
        """A StateGraph that was not compiled is a TypeError saying so."""
        with pytest.raises(TypeError, match=r"graph must be a compiled.*compile\(\) first"):
            instrument(chain("a"))  # type: ignore[type-var]
        with pytest.raises(TypeError, match="graph must be a compiled"):
            instrument(object())  # type: ignore[type-var]

    @pytest.mark.parametrize("bad", ["c", object(), NodeMetricsCollector])
    def test_bad_collector_is_refused(self, bad):
        """A collector that is not one is a TypeError naming the argument."""
        with pytest.raises(TypeError, match="collector must be"):
            NodeMetricsCallbackHandler(bad)
        with pytest.raises(TypeError, match="collector must be"):
            instrument(chain("a").compile(), bad)

    def test_repr(self):
        """The handler's repr says how many node runs are open."""
        assert "<NodeMetricsCallbackHandler(open_runs=0)>" == repr(NodeMetricsCallbackHandler())
