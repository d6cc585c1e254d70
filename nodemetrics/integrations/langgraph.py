"""
Meter every node of a LangGraph graph with one call, no decorator per node.

Needs the ``langgraph`` extra: ``pip install 'nodemetrics[langgraph]'``.

.. code-block:: python

    from nodemetrics.integrations.langgraph import instrument

    app = instrument(graph.compile(), collector)
    app.invoke({"question": "..."})  # every node run is recorded

LangGraph runs each node as a task whose LangChain callbacks carry the
node's name and checkpoint namespace; :class:`NodeMetricsCallbackHandler`
listens to those callbacks alone, so the graph's own run, its edges and
branches, and runnables called inside a node (an LLM, a ``RunnableLambda``)
are not nodes. A node is named exactly as its graph names it (``:`` and
``|`` included, which a low-level ``Pregel`` allows), and a node of a
subgraph by its path, ``"sub/inner"``, however many times the node above it
called the subgraph.

The functional API's tasks have no task of their own in those callbacks:
LangGraph "pushes" each call of a ``@task`` and runs its function directly,
with the task's name, a namespace one level below its caller's and the
push trigger in its metadata. Such a run is metered as a node, named by its
path below its caller (``"pipeline/fetch"``), unless it runs inside a pushed
run that the handler metered (a task's, or a node's that a ``Send`` ran),
whose namespace it then shares: a runnable named as its task or node. It
belongs to its caller's parent run (the graph run, which waits for every
task), not to its caller's run, which a task never waited for outlives; a
task's timeout that its caller catches ends the task's run by
:class:`asyncio.CancelledError` and fails nothing the handler hears, so it
is a cancellation.

What is recorded for one run of a node:

- a return: a success, timed from the start to the end of the run;
- an :class:`Exception`: a failure, classified as usual; if LangGraph's
  ``RetryPolicy`` then runs the same task again, that attempt is an
  execution of its own and records one retry;
- a node timeout (``add_node(..., timeout=...)``): LangGraph cancels the run
  and raises ``NodeTimeoutError`` in the task that awaits it, so the run
  itself ends by :class:`asyncio.CancelledError`. It is a failure classified
  as ``timeout``, timed from the start of the run to its cancellation, once
  the handler knows it timed out: when the same task runs again in the same
  graph run (which only a ``RetryPolicy`` after a timeout does; that attempt
  records one retry), or when the graph run that started it fails with a
  ``NodeTimeoutError`` of a node of that name. Every task of that node
  cancelled in that graph run counts as timed out: the error names the node,
  not the task;
- ``GraphInterrupt`` (the node called ``interrupt()``): an interruption,
  neither a success nor a failure; the run that resumes it is an ordinary
  execution;
- any other ``GraphBubbleUp`` (``ParentCommand``, from
  ``Command(graph=Command.PARENT, ...)``): a success;
- any other :class:`BaseException` (:class:`asyncio.CancelledError` when
  LangGraph cancels a sibling of a failed task, or when the caller stops an
  ``astream`` early): a cancellation, recorded, for a
  :class:`asyncio.CancelledError`, when its graph run ends;
- a run that is still open when the graph run that started it ends
  (LangGraph does not wait for a run it cancelled at a timeout, or when its
  caller was cancelled): a cancellation, or a timeout failure as above,
  timed to the end of the graph run.

Concurrency: the handler keeps, per open node run, one small tuple, and per
open graph run its open node runs, the tasks whose last run failed or was
cancelled, and the namespace of each node run it had (for a task that run
did not wait for). Each is touched by single ``dict``/``set``/``list``
operations, which the GIL makes atomic, so one handler may serve any number
of threads and asyncio tasks at once; everything is freed when the graph
run ends, whichever way it ends.
"""

from __future__ import annotations

import asyncio
import functools

from collections.abc import Iterable
from time import perf_counter_ns
from typing import Any, TypeVar, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager, Callbacks
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph import errors as langgraph_errors
from langgraph.pregel import Pregel
from typing_extensions import override  # langchain-core's dependency; typing has it from 3.12

from nodemetrics._classify import ErrorCategory
from nodemetrics._collector import NodeMetricsCollector, get_default_collector
from nodemetrics._control import INTERRUPTION, control_flow_kind
from nodemetrics._log import log
from nodemetrics._tracker import record_timed
from nodemetrics._validate import type_name


__all__ = ["NodeMetricsCallbackHandler", "instrument"]

GraphT = TypeVar("GraphT", bound=Pregel)  # type: ignore[type-arg]

# LangGraph gives each task's callback manager this tag (never inherited by
# what runs inside the task), and each task's metadata its node's name and
# its checkpoint namespace: "node:<task id>", "sub:<task id>|inner:<task id>"
# in a subgraph, "node:<task id>|1|inner:<task id>" for the second subgraph
# call made by one run of "node".
_TASK_TAG = "graph:step:"
_NS_KEY = "langgraph_checkpoint_ns"
_NODE_KEY = "langgraph_node"
# A task of the functional API (@task), called from an entrypoint or a node,
# runs as a "push" task with no such tag: its function's own run carries the
# task's name, these triggers, and a namespace one level below its caller's,
# "wf:<task id>|double:<task id>".
_TRIGGERS_KEY = "langgraph_triggers"
_PUSHED = ("__pregel_push",)
# The graph's input step runs as a task of this name when START has a branch.
_START = "__start__"
_NS_SEP = "|"
_NS_END = ":"
# LangGraph 1.0 has no node timeouts, nor this error.
_NODE_TIMEOUT: type[BaseException] | None = getattr(langgraph_errors, "NodeTimeoutError", None)
_TIMEOUT = ErrorCategory.TIMEOUT


class _GraphRun:
    """What the handler knows of one open parent run: its open node runs, its failed tasks."""

    __slots__ = ("failed", "names", "open", "superseded")

    def __init__(self) -> None:
        # Run id of each task's open run, by namespace.
        self.open: dict[str, int] = {}
        # The namespace of every run opened under it, which the handler
        # finds it by (for a functional task called by that run) until it ends.
        self.names: list[str] = []
        # Tasks whose last run failed (None) or was cancelled ((node, name,
        # ms), until it is known whether by a timeout), by namespace.
        self.failed: dict[str, tuple[str, str, float] | None] = {}
        # Open runs that a later run of their task replaced: timed out.
        self.superseded: set[int] = set()


def _level_name(level: str) -> str:
    # "name:<task id>"; a task id has no ":", a name may (in a Pregel graph).
    name, sep, _ = level.rpartition(_NS_END)
    return name if sep else level


def _node_path(namespace: str, node: str) -> str:
    # The names above *node*, from its namespace: its levels but the last,
    # *node*'s own (unless *node* is not from LangGraph's metadata). A
    # numeric level is a call counter, not a node: LangGraph's
    # recast_checkpoint_ns() skips it too.
    if _NS_SEP not in node:
        parents = namespace.rpartition(_NS_SEP)[0]
    else:
        # A Pregel node's name may have a "|": its level is what ends with it.
        cut = namespace.rfind(_NS_END) - len(node) - 1
        if cut == -1 and namespace.startswith(node):
            return node
        if cut >= 0 and namespace[cut] == _NS_SEP and namespace.startswith(node, cut + 1):
            parents = namespace[:cut]
        else:
            parents = namespace.rpartition(_NS_SEP)[0]
    if _NS_SEP not in parents:
        # One subgraph above, the usual case, spelt out for speed (this
        # function: 470 -> 254 ns a call).
        return f"{parents.rpartition(_NS_END)[0]}/{node}"
    names = [
        level.rpartition(_NS_END)[0] for level in parents.split(_NS_SEP) if not level.isdigit()
    ]
    names.append(node)
    return "/".join(names)


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
        # Open node runs by run id: (node, its own name, start in ns,
        # checkpoint namespace or None once timed out, parent).
        self._runs: dict[int, tuple[str, str, int, str | None, _GraphRun]] = {}
        # Open parent runs (those that started a node run) by run id.
        self._graphs: dict[int, _GraphRun] = {}
        # Open pushed runs (functional API tasks, nodes a Send ran) by
        # namespace: a runnable run inside one has its namespace and, even
        # named as it, is not another.
        self._pushed: dict[str, int] = {}
        # The parent run of each metered run, by the run's namespace, until
        # that parent run ends (a task the run never waited for may start
        # after the run ended): one entry per node run of an open graph run.
        self._graph_of: dict[str, _GraphRun] = {}

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
        """Open a node run, if this chain is one; count a retry if its task ran before."""
        start = perf_counter_ns()
        if parent_run_id is None or metadata is None:
            return
        try:
            graph = None
            for tag in tags or ():
                if tag.startswith(_TASK_TAG):
                    pushed = metadata.get(_TRIGGERS_KEY) == _PUSHED
                    break
            else:
                if metadata.get(_TRIGGERS_KEY) != _PUSHED:
                    return
                graph = self._task_graph(kwargs.get("name"), parent_run_id.int, metadata)
                if graph is None:
                    return
                pushed = True
            namespace = metadata.get(_NS_KEY)
            if type(namespace) is not str or not namespace:
                return
            name = metadata.get(_NODE_KEY)
            if type(name) is not str or not name:
                name = _level_name(namespace.rpartition(_NS_SEP)[2])
            elif name == _START and graph is None:
                # The graph's input step, not a task of that name.
                return
            node = name if _NS_SEP not in namespace else _node_path(namespace, name)
            self._open(run_id.int, parent_run_id.int, node, name, start, namespace, graph, pushed)
        except Exception:  # noqa: BLE001 -- metering must never break the graph
            _log_failure("on_chain_start")

    def _open(  # noqa: PLR0913, PLR0917 -- positional: the hot path of every node run
        self,
        key: int,
        parent_key: int,
        node: str,
        name: str,
        start: int,
        namespace: str,
        graph: _GraphRun | None,
        pushed: bool,
    ) -> None:
        if graph is None:
            graph = self._graphs.get(parent_key)
            if graph is None:
                graph = self._graphs.setdefault(parent_key, _GraphRun())
        self._runs[key] = (node, name, start, namespace, graph)
        self._graph_of[namespace] = graph
        graph.names.append(namespace)
        if pushed:
            self._pushed[namespace] = key
        previous = graph.open.setdefault(namespace, key)
        if previous != key or graph.failed:
            self._check_retry(key, previous, node, namespace, graph)

    def _task_graph(
        self, name: object, parent_key: int, metadata: dict[str, Any]
    ) -> _GraphRun | None:
        """
        Return the parent run of a functional API task's run, else ``None``.

        The parent run is its caller's (the graph run or subgraph run that
        waits for every task its nodes push), not the caller's own run, which
        a task it does not wait for outlives, and which may be a tool's.
        """
        # Pushed (the caller checked).
        if type(name) is not str or name != metadata.get(_NODE_KEY):
            return None
        namespace = metadata.get(_NS_KEY)
        if type(namespace) is not str:
            return None
        parent = self._runs.get(parent_key)
        if parent is not None:
            # Called by a metered run (an entrypoint's, a node's, a task's),
            # unless it is one of that run's own runnables, named as it, which
            # have its namespace: a re-attempt of a task has its caller's.
            return parent[4] if parent[3] != namespace else None
        if namespace in self._pushed:
            # A runnable deeper inside an open pushed run, named as it.
            return None
        # Called from inside a runnable or a tool of its caller.
        graph = self._graph_of.get(namespace.rpartition(_NS_SEP)[0])
        return graph if graph is not None else self._graphs.setdefault(parent_key, _GraphRun())

    def _forget_pushed(self, key: int, namespace: str | None) -> None:
        if namespace is not None and self._pushed.get(namespace) == key:
            self._pushed.pop(namespace, None)

    def _check_retry(
        self, key: int, previous: int, node: str, namespace: str, graph: _GraphRun
    ) -> None:
        if previous != key:
            # Its task runs again before its last run ended: LangGraph
            # stopped waiting for that one at a timeout, and retries.
            run = self._runs.get(previous)
            if run is not None:
                # No namespace: whatever ends it, that run timed out.
                self._runs[previous] = (run[0], run[1], run[2], None, graph)
                graph.superseded.add(previous)
            graph.open[namespace] = key
        elif namespace in graph.failed:
            cancelled = graph.failed.pop(namespace, None)
            if cancelled is not None:
                # Run again after a cancellation: LangGraph retries a timeout.
                self.collector.record_failure(cancelled[0], cancelled[2], category=_TIMEOUT)
        else:
            return
        self.collector.record_retry(node)

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
                node, _, start, namespace, graph = run
                if self._pushed:
                    self._forget_pushed(key, namespace)
                if namespace is not None:
                    graph.open.pop(namespace, None)
                    # The timed path of track() and @metered: a success batched
                    # without the lock once the node exists (2% of invoke).
                    record_timed(self.collector, node, (end - start) / 1e6)
                else:
                    graph.superseded.discard(key)
                    self.collector.record_failure(node, (end - start) / 1e6, category=_TIMEOUT)
            if key in self._graphs:
                self._close(key, None)
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
                if self._pushed:
                    self._forget_pushed(key, run[3])
                self._record_error(key, run, (end - run[2]) / 1e6, error)
            if key in self._graphs:
                self._close(key, error)
        except Exception:  # noqa: BLE001 -- metering must never break the graph
            _log_failure("on_chain_error")

    def _record_error(
        self,
        key: int,
        run: tuple[str, str, int, str | None, _GraphRun],
        ms: float,
        error: BaseException,
    ) -> None:
        node, name, _, namespace, graph = run
        collector = self.collector
        if namespace is None:
            graph.superseded.discard(key)
            collector.record_failure(node, ms, category=_TIMEOUT)
            return
        graph.open.pop(namespace, None)
        if not isinstance(error, Exception):
            if issubclass(type(error), asyncio.CancelledError):
                # A timeout or not: the task's next run, or the end of its
                # graph run, tells.
                graph.failed[namespace] = (node, name, ms)
            else:
                collector.record_cancellation(node)
            return
        kind = control_flow_kind(error)
        if kind is None:
            graph.failed[namespace] = None
            collector.record_failure(node, ms, error)
        elif kind is INTERRUPTION:
            collector.record_interruption(node)
        else:
            collector.record_success(node, ms)

    def _close(self, key: int, error: BaseException | None) -> None:
        graph = self._graphs.pop(key, None)
        if graph is None:
            return
        graph_of = self._graph_of
        for namespace in graph.names:
            if graph_of.get(namespace) is graph:
                graph_of.pop(namespace, None)
        if not (graph.open or graph.failed or graph.superseded):
            return
        end = perf_counter_ns()
        # (node, name, ms, timed out for sure) of each run that ended by a
        # cancellation, or that its graph run stopped waiting for. All are
        # taken before any is recorded, so that a collector that raises
        # leaves none behind.
        ended = [
            (cancelled[0], cancelled[1], cancelled[2], False)
            for cancelled in [graph.failed.pop(namespace, None) for namespace in list(graph.failed)]
            if cancelled is not None
        ]
        for orphan in [*graph.open.values(), *graph.superseded]:
            run = self._runs.pop(orphan, None)
            if run is not None:
                self._forget_pushed(orphan, run[3])
                ended.append((run[0], run[1], (end - run[2]) / 1e6, run[3] is None))
        timed_out = None
        if _NODE_TIMEOUT is not None and issubclass(type(error), _NODE_TIMEOUT):
            timed_out = getattr(error, "node", None)
        collector = self.collector
        for node, name, ms, superseded in ended:
            if superseded or name == timed_out:
                collector.record_failure(node, ms, category=_TIMEOUT)
            else:
                collector.record_cancellation(node)


def _log_failure(callback: str) -> None:
    log(
        "ERROR",
        "nodemetrics.langgraph_handler_failed: {callback} raised; the graph is unaffected",
        exception=True,
        callback=callback,
    )


def _records_into(handlers: Iterable[object], collector: NodeMetricsCollector) -> bool:
    return any(
        issubclass(type(h), NodeMetricsCallbackHandler)
        and cast("NodeMetricsCallbackHandler", h).collector is collector
        for h in handlers
    )


def _with_handler(
    config: RunnableConfig | None, handler: NodeMetricsCallbackHandler
) -> RunnableConfig:
    # The handler joins the callbacks this run would have had anyway: the
    # call's own, else those inherited from an enclosing run (so that a graph
    # invoked inside a node stays that node's child in every tracer). Not if
    # they hold a handler of the same collector already (an enclosing
    # instrumented graph's, or this one's instrumented again), which meters
    # every node of this run: a second would count each twice.
    callbacks = config.get("callbacks") if config else None
    if callbacks is None:
        inherited = var_child_runnable_config.get()
        callbacks = inherited.get("callbacks") if inherited else None
    if callbacks is None:
        merged: Callbacks = [handler]
    elif isinstance(callbacks, BaseCallbackManager):
        if _records_into(callbacks.inheritable_handlers, handler.collector):
            return config or {}
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        merged = manager
    elif _records_into(callbacks, handler.collector):
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
    itself is left untouched. No handler is added to a run whose callbacks
    already hold one recording into the same collector (one passed by the
    call, or inherited from an enclosing instrumented graph that runs this
    one as a subgraph or inside a node), so each node run is recorded once
    per collector; instrumenting an instrumented graph again for the same
    collector changes nothing, for another collector adds its handler.

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
