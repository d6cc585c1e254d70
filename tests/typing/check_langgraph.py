"""Checked by mypy, never run: instrument() returns the graph's own type."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import assert_type

from nodemetrics import NodeMetricsCollector
from nodemetrics.integrations.langgraph import NodeMetricsCallbackHandler, instrument


class State(TypedDict):
    x: int


compiled = StateGraph(State).compile()
app = instrument(compiled, NodeMetricsCollector())
assert_type(app, CompiledStateGraph[State, None, State, State])
assert_type(NodeMetricsCallbackHandler().collector, NodeMetricsCollector)

instrument(StateGraph(State))  # type: ignore[type-var]
