"""LangGraph node timeouts, repeated subgraph calls, nested instrumented graphs, Pregel names."""

from __future__ import annotations

import asyncio
import uuid

from typing import Any

# Imported, not importorskip()ped: langgraph is a dev dependency, and a broken
# install must fail these tests, as it does in CI, rather than skip them quietly.
import langgraph.errors
import langgraph.types
import pytest

from conftest import outcome
from integrations.test_langgraph_handler import State, assert_nothing_open, chain, handler_of
from langchain_core.runnables import RunnableConfig
from langgraph.channels import EphemeralValue, LastValue
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import NodeBuilder, Pregel
from langgraph.types import RetryPolicy, Send

from nodemetrics import NodeMetricsCollector
from nodemetrics.integrations.langgraph import NodeMetricsCallbackHandler, instrument


# The oldest supported LangGraph (1.0.0) has no node timeouts.
NodeTimeoutError: Any = getattr(langgraph.errors, "NodeTimeoutError", None)
TimeoutPolicy: Any = getattr(langgraph.types, "TimeoutPolicy", None)
needs_timeouts = pytest.mark.skipif(
    NodeTimeoutError is None, reason="this LangGraph has no node timeouts"
)

# Every node that times out here blocks on an event nobody sets, so it can
# only end by being cancelled; the timeout is short, the bound on the whole
# graph run (asyncio.wait_for) a hundred times longer.
TIMEOUT = 0.1
BOUND = 10.0


async def blocks(state: State) -> State:
    await asyncio.Event().wait()
    return {}


def one_node(node: Any, **kwargs: Any) -> StateGraph:
    g = StateGraph(State)
    g.add_node("slow", node, **kwargs)
    g.add_edge(START, "slow")
    g.add_edge("slow", END)
    return g


def retry_on_timeout(interval: float = 0.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=3, initial_interval=interval, jitter=False, retry_on=NodeTimeoutError
    )


@needs_timeouts
class TestTimeouts:
    @pytest.mark.parametrize(
        "timeout",
        [TIMEOUT, "run", "idle"],
        ids=["seconds", "run_timeout", "idle_timeout"],
    )
    async def test_timeout_is_a_timeout_failure(self, timeout):
        """A node that times out is one timeout failure, timed to its cancellation."""
        if timeout == "run":
            timeout = TimeoutPolicy(run_timeout=TIMEOUT)
        elif timeout == "idle":
            timeout = TimeoutPolicy(idle_timeout=TIMEOUT)
        c = NodeMetricsCollector()
        app = instrument(one_node(blocks, timeout=timeout).compile(), c)
        with pytest.raises(NodeTimeoutError) as info:
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert "slow" == info.value.node
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "slow")
        metrics = c.get_node_metrics("slow")
        assert 1 == metrics.timeout_errors
        assert metrics.last_execution_ms is not None
        assert TIMEOUT * 1000 / 2 <= metrics.last_execution_ms < BOUND * 1000 / 2
        assert_nothing_open(handler_of(app))

    @pytest.mark.parametrize("order", ["cancelled_first", "retried_first"])
    async def test_timeout_then_retry(self, order):
        """A timed-out attempt retried by a RetryPolicy: a timeout failure, a retry, a success."""
        # The end of the cancelled attempt and the start of the next reach the
        # handler in either order. "retried_first" forces the second: the
        # cancelled attempt ends only once the next one runs. "cancelled_first"
        # waits TIMEOUT between attempts, which ordinarily leaves the
        # cancelled attempt ample time to end first.
        attempts = 0
        retried = asyncio.Event()

        async def slow(state: State) -> State:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                try:
                    await asyncio.Event().wait()
                finally:
                    if order == "retried_first":
                        await retried.wait()
            retried.set()
            return {"x": 1}

        policy = retry_on_timeout(interval=TIMEOUT if order == "cancelled_first" else 0.0)
        c = NodeMetricsCollector()
        app = instrument(one_node(slow, timeout=TIMEOUT, retry_policy=policy).compile(), c)
        result = await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert 1 == result["x"]
        assert 2 == attempts
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "slow")
        assert 1 == c.get_node_metrics("slow").timeout_errors
        assert_nothing_open(handler_of(app))

    async def test_timed_out_attempt_that_returns_anyway(self):
        """An attempt that swallows its cancellation and returns still timed out."""
        attempts = 0
        retried = asyncio.Event()

        async def slow(state: State) -> State:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    await retried.wait()
                return {"x": 2}
            retried.set()
            return {"x": 1}

        c = NodeMetricsCollector()
        app = instrument(
            one_node(slow, timeout=TIMEOUT, retry_policy=retry_on_timeout()).compile(), c
        )
        assert 1 == (await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND))["x"]
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "slow")
        assert 1 == c.get_node_metrics("slow").timeout_errors
        assert_nothing_open(handler_of(app))

    async def test_timeout_under_astream_events(self):
        """Under astream_events() (LangGraph then streams each node): as under ainvoke()."""
        attempts = 0

        async def slow(state: State) -> State:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                await asyncio.Event().wait()
            return {"x": 1}

        c = NodeMetricsCollector()
        app = instrument(
            one_node(slow, timeout=TIMEOUT, retry_policy=retry_on_timeout()).compile(), c
        )

        async def drain() -> list[Any]:
            return [event async for event in app.astream_events({"x": 0}, version="v2")]

        assert await asyncio.wait_for(drain(), BOUND)
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "slow")
        assert 1 == c.get_node_metrics("slow").timeout_errors
        assert_nothing_open(handler_of(app))

    async def test_send_fan_out_with_timeouts(self):
        """Of three Sends, the two that time out are two timeout failures, the third a success."""

        async def work(state: State) -> State:
            if state["x"] == 1:
                return {"items": [1]}
            await asyncio.Event().wait()
            return {}

        def route(state: State) -> list[Send]:
            return [Send("work", {"x": i}) for i in range(3)]

        g = StateGraph(State)
        g.add_node("work", work, timeout=TIMEOUT)
        g.add_conditional_edges(START, route, ["work"])
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        with pytest.raises(NodeTimeoutError):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert (3, 1, 2, 0, 0, 0) == outcome(c, "work")
        assert 2 == c.get_node_metrics("work").timeout_errors
        assert_nothing_open(handler_of(app))

    async def test_every_attempt_times_out(self):
        """Three attempts that all time out: three timeout failures and two retries."""
        c = NodeMetricsCollector()
        app = instrument(
            one_node(blocks, timeout=TIMEOUT, retry_policy=retry_on_timeout()).compile(), c
        )
        with pytest.raises(NodeTimeoutError):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert (3, 0, 3, 2, 0, 0) == outcome(c, "slow")
        assert 3 == c.get_node_metrics("slow").timeout_errors
        assert_nothing_open(handler_of(app))

    @pytest.mark.parametrize("sibling_timeout", [None, 100 * BOUND])
    async def test_sibling_of_a_timed_out_node_is_cancelled(self, sibling_timeout):
        """The node that timed out fails; the branch LangGraph cancelled for it is cancelled."""
        g = one_node(blocks, timeout=TIMEOUT)
        g.add_node("other", blocks, timeout=sibling_timeout)
        g.add_edge(START, "other")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        with pytest.raises(NodeTimeoutError):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "slow")
        assert 1 == c.get_node_metrics("slow").timeout_errors
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "other")
        assert_nothing_open(handler_of(app))

    async def test_timeout_inside_a_subgraph(self):
        """An inner node that times out fails as a timeout, and so does the subgraph's node."""
        g = StateGraph(State)
        g.add_node("sub", one_node(blocks, timeout=TIMEOUT).compile())
        g.add_edge(START, "sub")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        with pytest.raises(NodeTimeoutError):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        for node in ["sub", "sub/slow"]:
            assert (1, 0, 1, 0, 0, 0) == outcome(c, node)
            assert 1 == c.get_node_metrics(node).timeout_errors
        assert_nothing_open(handler_of(app))

    async def test_sibling_failure_cancels_a_node_with_a_timeout(self):
        """A node with a timeout, cancelled because its sibling failed, is a cancellation."""
        started = asyncio.Event()

        async def waits(state: State) -> State:
            started.set()
            await asyncio.Event().wait()
            return {}

        async def fails(state: State) -> State:
            await started.wait()
            raise ValueError("bad branch")

        g = one_node(waits, timeout=100 * BOUND)
        g.add_node("fails", fails)
        g.add_edge(START, "fails")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        with pytest.raises(ValueError, match="bad branch"):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "slow")
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "fails")
        assert_nothing_open(handler_of(app))

    async def test_cancelled_ainvoke_of_a_node_with_a_timeout(self):
        """Cancelling the caller's task while a node with a timeout runs is a cancellation."""
        started = asyncio.Event()

        async def waits(state: State) -> State:
            started.set()
            await asyncio.Event().wait()
            return {}

        c = NodeMetricsCollector()
        app = instrument(one_node(waits, timeout=100 * BOUND).compile(), c)
        task = asyncio.create_task(app.ainvoke({"x": 0}))
        await asyncio.wait_for(started.wait(), BOUND)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "slow")
        assert_nothing_open(handler_of(app))

    async def test_astream_closed_early_with_a_timeout(self):
        """Leaving astream() early while a node with a timeout runs is a cancellation."""

        async def quick(state: State) -> State:
            return {"items": ["quick"]}

        g = one_node(blocks, timeout=100 * BOUND)
        g.add_node("quick", quick)
        g.add_edge(START, "quick")
        c = NodeMetricsCollector()
        app = instrument(g.compile(), c)
        stream = app.astream({}, stream_mode="updates")
        assert {"quick": {"items": ["quick"]}} == await asyncio.wait_for(anext(stream), BOUND)
        await stream.aclose()
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "quick")
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "slow")
        assert_nothing_open(handler_of(app))

    def test_sync_invoke_refuses_timeouts(self):
        """LangGraph refuses a node timeout under invoke(): nothing recorded, nothing kept."""
        c = NodeMetricsCollector()
        app = instrument(one_node(blocks, timeout=TIMEOUT).compile(), c)
        with pytest.raises(ValueError, match="only supported for async nodes"):
            app.invoke({"x": 0})
        assert {} == c.get_all_node_metrics()
        assert_nothing_open(handler_of(app))


def inner_graph(node: Any = None) -> Any:
    def inner(state: State) -> State:
        return {"items": ["inner"]}

    return chain("inner", node=node or inner).compile()


class TestRepeatedSubgraphCalls:
    def test_subgraph_called_three_times_in_one_node_run(self):
        """Three calls of a subgraph from one node run are three runs of "caller/inner"."""
        sub = inner_graph()

        def caller(state: State) -> State:
            for i in range(3):
                sub.invoke({"x": i})
            return {"x": 1}

        c = NodeMetricsCollector()
        app = instrument(chain("caller", node=caller).compile(), c)
        app.invoke({"x": 0})
        assert ["caller", "caller/inner"] == sorted(c.get_all_node_metrics())
        assert (3, 3, 0, 0, 0, 0) == outcome(c, "caller/inner")
        assert_nothing_open(handler_of(app))

    async def test_subgraph_awaited_three_times_at_once(self):
        """Three concurrent ainvoke()s of a subgraph per node run, twice: six "caller/inner"."""

        async def inner(state: State) -> State:
            return {"items": ["inner"]}

        sub = inner_graph(inner)

        async def caller(state: State, config: RunnableConfig) -> State:
            # The config passed on, which Python 3.10 cannot pass to a task.
            await asyncio.gather(*(sub.ainvoke({"x": i}, config) for i in range(3)))
            return {"x": 1}

        c = NodeMetricsCollector()
        app = instrument(chain("caller", node=caller).compile(), c)
        for _ in range(2):
            await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert ["caller", "caller/inner"] == sorted(c.get_all_node_metrics())
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "caller")
        assert (6, 6, 0, 0, 0, 0) == outcome(c, "caller/inner")
        assert_nothing_open(handler_of(app))

    def test_subgraph_called_twice_inside_a_subgraph(self):
        """The call-counter level is skipped at any depth: "outer/caller/inner"."""
        sub = inner_graph()

        def caller(state: State) -> State:
            sub.invoke({"x": 0})
            sub.invoke({"x": 1})
            return {"x": 1}

        g = StateGraph(State)
        g.add_node("outer", chain("caller", node=caller).compile())
        g.add_edge(START, "outer")
        c = NodeMetricsCollector()
        instrument(g.compile(), c).invoke({"x": 0})
        assert ["outer", "outer/caller", "outer/caller/inner"] == sorted(c.get_all_node_metrics())
        assert (2, 2, 0, 0, 0, 0) == outcome(c, "outer/caller/inner")


class TestNestedInstrumentedGraphs:
    def test_instrumented_subgraph_in_an_instrumented_graph(self):
        """Instrumented graphs as a node and inside a node of one of the same collector: once."""
        c = NodeMetricsCollector()
        sub = instrument(inner_graph(), c)

        def caller(state: State) -> State:
            sub.invoke({"x": 1})
            return {"items": ["caller"]}

        g = StateGraph(State)
        g.add_node("sub", sub)
        g.add_node("caller", caller)
        g.add_edge(START, "sub")
        g.add_edge(START, "caller")
        app = instrument(g.compile(), c)
        app.invoke({"x": 0})
        assert ["caller", "caller/inner", "sub", "sub/inner"] == sorted(c.get_all_node_metrics())
        for node in c.get_all_node_metrics():
            assert (1, 1, 0, 0, 0, 0) == outcome(c, node)
        assert_nothing_open(handler_of(app))
        assert_nothing_open(handler_of(sub))

    async def test_instrumented_subgraph_under_ainvoke(self):
        """The same under ainvoke(), with the subgraph awaited inside an async node."""
        c = NodeMetricsCollector()
        sub = instrument(inner_graph(), c)

        async def caller(state: State, config: RunnableConfig) -> State:
            # The config passed on, which Python 3.10 cannot pass to a task.
            await sub.ainvoke({"x": 1}, config)
            return {"x": 1}

        app = instrument(chain("caller", node=caller).compile(), c)
        await asyncio.wait_for(app.ainvoke({"x": 0}), BOUND)
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "caller/inner")

    def test_other_collectors_each_record_once(self):
        """An instrumented graph inside one of another collector: each collector counts once."""
        outer_c, inner_c = NodeMetricsCollector(), NodeMetricsCollector()
        sub = instrument(inner_graph(), inner_c)
        g = StateGraph(State)
        g.add_node("sub", sub)
        g.add_edge(START, "sub")
        instrument(g.compile(), outer_c).invoke({"x": 0})
        assert (1, 1, 0, 0, 0, 0) == outcome(outer_c, "sub/inner")
        assert (1, 1, 0, 0, 0, 0) == outcome(inner_c, "sub/inner")

    def test_instrumented_twice(self):
        """instrument() of an instrumented graph: once per collector, whatever the nesting."""
        same = NodeMetricsCollector()
        instrument(instrument(inner_graph(), same), same).invoke({"x": 0})
        assert (1, 1, 0, 0, 0, 0) == outcome(same, "inner")
        first, second = NodeMetricsCollector(), NodeMetricsCollector()
        instrument(instrument(inner_graph(), first), second).invoke({"x": 0})
        assert (1, 1, 0, 0, 0, 0) == outcome(first, "inner") == outcome(second, "inner")

    def test_handler_of_the_same_collector_passed_per_call(self):
        """A call passing its own handler of the graph's collector records each run once."""
        c = NodeMetricsCollector()
        app = instrument(inner_graph(), c)
        app.invoke({"x": 0}, {"callbacks": [NodeMetricsCallbackHandler(c)]})
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "inner")
        assert_nothing_open(handler_of(app))


def pregel(names: list[str]) -> Pregel:
    """A low-level Pregel graph: one node per name, all reading "inp"."""
    nodes = {
        name: NodeBuilder().subscribe_only("inp").do(lambda x: x + "!").write_to(f"out{i}")
        for i, name in enumerate(names)
    }
    outputs = [f"out{i}" for i in range(len(names))]
    return Pregel(
        nodes=nodes,
        channels={"inp": EphemeralValue(str), **{out: LastValue(str) for out in outputs}},
        input_channels=["inp"],
        output_channels=outputs,
    )


class TestPregelNames:
    def test_reserved_characters_in_node_names(self):
        """Names with ':' or '|' are kept whole, as the graph names its nodes."""
        names = ["llm:gpt", "llm:claude", "tool|search", "a:b|c:d"]
        c = NodeMetricsCollector()
        app = instrument(pregel(names), c)
        assert {f"out{i}": "x!" for i in range(4)} == app.invoke({"inp": "x"})
        assert sorted(names) == sorted(c.get_all_node_metrics())
        for name in names:
            assert (1, 1, 0, 0, 0, 0) == outcome(c, name)
        assert_nothing_open(handler_of(app))

    def test_subgraph_under_a_name_with_a_colon(self):
        """A subgraph run by a Pregel node "agent:v2" names its nodes "agent:v2/inner"."""
        sub = inner_graph()
        outer = Pregel(
            nodes={
                "agent:v2": NodeBuilder()
                .subscribe_only("inp")
                .do(lambda x: sub.invoke({"x": 0}) and x)
                .write_to("out")
            },
            channels={"inp": EphemeralValue(str), "out": LastValue(str)},
            input_channels=["inp"],
            output_channels=["out"],
        )
        c = NodeMetricsCollector()
        instrument(outer, c).invoke({"inp": "x"})
        assert ["agent:v2", "agent:v2/inner"] == sorted(c.get_all_node_metrics())


class TestOtherEnds:
    def test_keyboard_interrupt_in_a_node_is_a_cancellation(self):
        """A node left by a KeyboardInterrupt is a cancellation; the interrupt propagates."""

        def interrupted(state: State) -> State:
            raise KeyboardInterrupt

        c = NodeMetricsCollector()
        app = instrument(chain("n", node=interrupted).compile(), c)
        with pytest.raises(KeyboardInterrupt):
            app.invoke({"x": 0})
        assert (0, 0, 0, 0, 1, 0) == outcome(c, "n")
        assert_nothing_open(handler_of(app))


class TestHandlerDirectly:
    """LangChain's own callback calls, made by hand, for what LangGraph never does."""

    def start(self, handler, run, parent, ns, node=None):
        metadata = {"langgraph_checkpoint_ns": ns}
        if node is not None:
            metadata["langgraph_node"] = node
        handler.on_chain_start(
            {}, {}, run_id=run, parent_run_id=parent, tags=["graph:step:1"], metadata=metadata
        )

    @pytest.mark.parametrize(
        ("ns", "node", "expected"),
        [
            ("a:1|b:2", "b", "a/b"),
            ("a:1|7|b:2", "b", "a/b"),
            ("a:x:1|b|c:2", "b|c", "a:x/b|c"),
            ("b|c:2", "b|c", "b|c"),
            ("a:1|b:2", "other", "a/other"),  # not the namespace's: the levels above the last
            ("a:1|b:2", "x|y", "a/x|y"),
            ("a:1|7|s:2|b:3", "b", "a/s/b"),
            ("a:1|b:2", None, "a/b"),  # no name: the namespace's last level
            ("a:x:1", None, "a:x"),
        ],
    )
    def test_names(self, ns, node, expected):
        """The node's own name from the metadata, the names above it from the namespace."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, run = uuid.uuid4(), uuid.uuid4()
        self.start(handler, run, graph, ns, node)
        handler.on_chain_end({}, run_id=run)
        handler.on_chain_end({}, run_id=graph)
        assert [expected] == list(c.get_all_node_metrics())
        assert_nothing_open(handler)

    def test_other_task_after_a_failure_is_no_retry(self):
        """Another task that starts after a task of the same graph run failed is no retry."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, failed, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.start(handler, failed, graph, "a:1")
        handler.on_chain_error(ValueError(), run_id=failed)
        self.start(handler, other, graph, "b:2")
        handler.on_chain_end({}, run_id=other)
        handler.on_chain_end({}, run_id=graph)
        assert (1, 0, 1, 0, 0, 0) == outcome(c, "a")
        assert (1, 1, 0, 0, 0, 0) == outcome(c, "b")
        assert_nothing_open(handler)

    def test_rerun_of_a_task_whose_open_run_ended_meanwhile(self):
        """A rerun while another thread ends the run before it: a retry, and nothing kept."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.start(handler, first, graph, "a:1")
        # As if another thread had just popped the run, between the two steps of its end.
        handler._runs.pop(first.int)
        self.start(handler, second, graph, "a:1")
        handler.on_chain_end({}, run_id=second)
        handler.on_chain_end({}, run_id=graph)
        assert (1, 1, 0, 1, 0, 0) == outcome(c, "a")
        assert_nothing_open(handler)

    def test_run_timed_out_still_open_when_its_graph_succeeds(self):
        """A replaced run still open when its graph run ends is a timeout failure."""
        c = NodeMetricsCollector()
        handler = NodeMetricsCallbackHandler(c)
        graph, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.start(handler, first, graph, "a:1")
        self.start(handler, second, graph, "a:1")
        handler.on_chain_end({}, run_id=second)
        handler.on_chain_end({}, run_id=graph)
        handler.on_chain_error(asyncio.CancelledError(), run_id=first)  # too late: counted
        assert (2, 1, 1, 1, 0, 0) == outcome(c, "a")
        assert 1 == c.get_node_metrics("a").timeout_errors
        assert_nothing_open(handler)
