"""
Meter every node of a LangGraph graph with one call, no decorator per node.

Needs the ``langgraph`` extra: ``pip install 'nodemetrics[langgraph]'``.

.. code-block:: python

    from nodemetrics.integrations.langgraph import instrument

    app = instrument(graph.compile(), collector)
    app.invoke({"question": "..."})  # every node run is recorded

LangGraph runs each node as a task whose LangChain callbacks carry the
node's checkpoint namespace; :class:`NodeMetricsCallbackHandler` listens to
those callbacks alone, so the graph's own run, its edges and branches, and
runnables called inside a node (an LLM, a ``RunnableLambda``) are not nodes.
A node of a subgraph is named by its path, ``"sub/inner"``.

What is recorded for one run of a node:

- a return: a success, timed from the start to the end of the run;
- an :class:`Exception`: a failure, classified as usual; if LangGraph's
  ``RetryPolicy`` then runs the same task again, that attempt is an
  execution of its own and records one retry;
- ``GraphInterrupt`` (the node called ``interrupt()``): an interruption,
  neither a success nor a failure; the run that resumes it is an ordinary
  execution;
- any other ``GraphBubbleUp`` (``ParentCommand``, from
  ``Command(graph=Command.PARENT, ...)``): a success;
- any other :class:`BaseException` (:class:`asyncio.CancelledError` when
  LangGraph cancels a sibling of a failed task, or when the caller stops an
  ``astream`` early): a cancellation;
- a run that is still open when the graph run that started it ends (nothing
  in LangGraph 1.x does this, but a handler must not leak): a cancellation.

Concurrency: the handler keeps, per open node run, one small tuple, and per
open graph run the set of its open node runs and of its tasks that failed.
Each is touched by single ``dict``/``set`` operations, which the GIL makes
atomic, so one handler may serve any number of threads and asyncio tasks at
once; everything is freed when the run ends, whichever way it ends.
"""

from __future__ import annotations

import functools

from time import perf_counter_ns
from typing import Any, TypeVar, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager, Callbacks
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.pregel import Pregel
from typing_extensions import override  # langchain-core's dependency; typing has it from 3.12

from nodemetrics._collector import NodeMetricsCollector, get_default_collector
from nodemetrics._control import INTERRUPTION, control_flow_kind
from nodemetrics._log import log
from nodemetrics._tracker import record_timed
from nodemetrics._validate import type_name


__all__ = ["NodeMetricsCallbackHandler", "instrument"]

GraphT = TypeVar("GraphT", bound=Pregel)  # type: ignore[type-arg]

# LangGraph gives each task's callback manager this tag (never inherited by
# what runs inside the task), and each task's metadata its checkpoint
# namespace: "node:<task id>", "sub:<task id>|inner:<task id>" in a subgraph.
_TASK_TAG = "graph:step:"
_NS_KEY = "langgraph_checkpoint_ns"
# The graph's input step runs as a task of this name when START has a branch.
_NODE_KEY = "langgraph_node"
_START = "__start__"
_NS_SEP = "|"
_NS_END = ":"


class _GraphRun:
    """What the handler knows of one open parent run: its open node runs, its failed tasks."""

    __slots__ = ("failed", "open")

    def __init__(self) -> None:
        self.open: set[int] = set()
        self.failed: set[str] = set()


def _node_name(namespace: str) -> str:
    if _NS_SEP not in namespace:
        return namespace.partition(_NS_END)[0]
    return "/".join(level.partition(_NS_END)[0] for level in namespace.split(_NS_SEP))


def _check_collector(collector: object) -> NodeMetricsCollector:
    if collector is None:
        return get_default_collector()
    # By real type, as nodemetrics._validate checks: an object's __class__
    # could lie (and every callback would then fail) or raise.
    if not issubclass(type(collector), NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector or None, got {type_name(collector)}"
        raise TypeError(msg)
    return cast("NodeMetricsCollector", collector)


class NodeMetricsCallbackHandler(BaseCallbackHandler):
    """
    A LangChain callback handler that records every node run of a LangGraph graph.

    Pass it in the config of any graph (``app.invoke(x, {"callbacks":
    [handler]})``), or bind it with :func:`instrument`. Each run of a node is
    one execution of the node named as in ``add_node``, a subgraph's nodes by
    their path (``"sub/inner"``); what each outcome records is listed in the
    module's documentation. Durations are each node run's own wall time,
    measured with :func:`time.perf_counter_ns`.

    The handler runs inline (``run_inline = True``), also for ``ainvoke`` and
    ``astream``, and listens to chain events only. One handler may serve any
    number of graphs, threads and asyncio tasks at once. Anything that goes
    wrong inside it is logged (``nodemetrics.langgraph_handler_failed``),
    never raised into the graph, whose results and exceptions it never
    touches.

    Args:
        collector: Where to record; :func:`nodemetrics.get_default_collector`
            when omitted.

    Attributes:
        collector: The collector it records into.

    Raises:
        TypeError: *collector* is not a collector.
    """

    run_inline = True
    ignore_llm = True
    ignore_retry = True
    ignore_agent = True
    ignore_retriever = True
    ignore_chat_model = True
    ignore_custom_event = True

    def __init__(self, collector: NodeMetricsCollector | None = None) -> None:
        self.collector = _check_collector(collector)
        # Open node runs by run id: (node, start in ns, checkpoint namespace, parent).
        self._runs: dict[int, tuple[str, int, str, _GraphRun]] = {}
        # Open parent runs (those that started a node run) by run id.
        self._graphs: dict[int, _GraphRun] = {}

    def __repr__(self) -> str:
        return f"<NodeMetricsCallbackHandler(open_runs={len(self._runs)})>"

    @override
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a node run, if this chain is one; count a retry if its task failed before."""
        start = perf_counter_ns()
        if not tags or parent_run_id is None or metadata is None:
            return
        try:
            for tag in tags:
                if tag.startswith(_TASK_TAG):
                    break
            else:
                return
            namespace = metadata.get(_NS_KEY)
            if type(namespace) is not str or not namespace:
                return
            if metadata.get(_NODE_KEY) == _START:
                return
            node = _node_name(namespace)
            parent_key = parent_run_id.int
            graph = self._graphs.get(parent_key)
            if graph is None:
                graph = self._graphs.setdefault(parent_key, _GraphRun())
            key = run_id.int
            graph.open.add(key)
            self._runs[key] = (node, start, namespace, graph)
            if graph.failed and namespace in graph.failed:
                self.collector.record_retry(node)
        except Exception:  # noqa: BLE001 -- metering must never break the graph
            _log_failure("on_chain_start")

    @override
    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a node run's success; close a parent run."""
        end = perf_counter_ns()
        try:
            key = run_id.int
            run = self._runs.pop(key, None)
            if run is not None:
                node, start, _, graph = run
                graph.open.discard(key)
                # The timed path of track() and @metered: a success batched
                # without the lock once the node exists (2% of invoke).
                record_timed(self.collector, node, (end - start) / 1e6)
            if key in self._graphs:
                self._close(key)
        except Exception:  # noqa: BLE001 -- metering must never break the graph
            _log_failure("on_chain_end")

    @override
    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record how a node run ended by an exception; close a parent run."""
        end = perf_counter_ns()
        try:
            key = run_id.int
            run = self._runs.pop(key, None)
            if run is not None:
                node, start, namespace, graph = run
                graph.open.discard(key)
                self._record_error(node, (end - start) / 1e6, namespace, graph, error)
            if key in self._graphs:
                self._close(key)
        except Exception:  # noqa: BLE001 -- metering must never break the graph
            _log_failure("on_chain_error")

    def _record_error(
        self, node: str, ms: float, namespace: str, graph: _GraphRun, error: BaseException
    ) -> None:
        collector = self.collector
        if not isinstance(error, Exception):
            collector.record_cancellation(node)
            return
        kind = control_flow_kind(error)
        if kind is None:
            graph.failed.add(namespace)
            collector.record_failure(node, ms, error)
        elif kind is INTERRUPTION:
            collector.record_interruption(node)
        else:
            collector.record_success(node, ms)

    def _close(self, key: int) -> None:
        graph = self._graphs.pop(key, None)
        if graph is None or not graph.open:
            return
        # A node run its graph stopped waiting for: abandoned, so cancelled.
        for orphan in list(graph.open):
            run = self._runs.pop(orphan, None)
            if run is not None:
                self.collector.record_cancellation(run[0])


def _log_failure(callback: str) -> None:
    log(
        "ERROR",
        "nodemetrics.langgraph_handler_failed: {callback} raised; the graph is unaffected",
        exception=True,
        callback=callback,
    )


def _with_handler(config: RunnableConfig | None, handler: BaseCallbackHandler) -> RunnableConfig:
    # The handler joins the callbacks this run would have had anyway: the
    # call's own, else those inherited from an enclosing run (so that a graph
    # invoked inside a node stays that node's child in every tracer).
    callbacks = config.get("callbacks") if config else None
    if callbacks is None:
        inherited = var_child_runnable_config.get()
        callbacks = inherited.get("callbacks") if inherited else None
    if callbacks is None:
        merged: Callbacks = [handler]
    elif isinstance(callbacks, BaseCallbackManager):
        if handler in callbacks.inheritable_handlers:
            return config or {}
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        merged = manager
    elif handler in callbacks:
        return config or {}
    else:
        merged = [*callbacks, handler]
    return {**(config or {}), "callbacks": merged}


_INSTRUMENTED = "_nodemetrics_handler"


def instrument(graph: GraphT, collector: NodeMetricsCollector | None = None) -> GraphT:
    """
    Return a copy of a compiled LangGraph graph that meters every node run.

    The copy adds a :class:`NodeMetricsCallbackHandler` to the callbacks of
    every run, whatever callbacks a call passes, so ``invoke``, ``ainvoke``,
    ``stream``, ``astream``, ``batch`` and ``abatch`` are all metered (they
    all run through ``stream`` or ``astream``, which the copy's class, a
    subclass of *graph*'s, extends). It shares *graph*'s nodes, config and
    checkpointer, stays instrumented through ``with_config``, and *graph*
    itself is left untouched. Instrumenting an instrumented graph adds a
    second handler.

    Args:
        graph: A compiled graph (``StateGraph(...).compile()``, or any
            ``Pregel``).
        collector: Where to record; :func:`nodemetrics.get_default_collector`
            when omitted.

    Returns:
        The instrumented copy, an instance of a subclass of ``type(graph)``.

    Raises:
        TypeError: *graph* is not a compiled graph, or *collector* not a
            collector.
    """
    # By real type: an object's __class__ could lie or raise. The hint asks
    # the type too, so that none of the object's own code runs.
    if not issubclass(type(graph), Pregel):
        hint = " (call .compile() first)" if hasattr(type(graph), "compile") else ""
        msg = f"graph must be a compiled LangGraph graph{hint}, got {type_name(graph)}"
        raise TypeError(msg)
    handler = NodeMetricsCallbackHandler(_check_collector(collector))
    base = type(graph)

    # LangGraph before 1.2.x lets a call's callbacks replace those bound with
    # with_config(), so the handler is added to each call's config instead.
    def stream(self: Any, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002 -- LangGraph's name
        return super(cls, self).stream(input, _with_handler(config, handler), **kwargs)

    def astream(self: Any, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002 -- LangGraph's name
        return super(cls, self).astream(input, _with_handler(config, handler), **kwargs)

    cls: type[Any] = type(
        base.__name__,
        (base,),
        {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "stream": functools.wraps(base.stream)(stream),
            "astream": functools.wraps(base.astream)(astream),
            _INSTRUMENTED: handler,
        },
    )
    # What Pregel.copy() passes to the constructor.
    kwargs = {k: v for k, v in graph.__dict__.items() if k != "__orig_class__"}
    return cast("GraphT", cls(**kwargs))
