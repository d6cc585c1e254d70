from __future__ import annotations

import pytest

from nodemetrics import _control
from nodemetrics._control import CONTROL_FLOW, INTERRUPTION, control_flow_kind


# LangGraph's hierarchy, rebuilt by name: the core must recognise it without langgraph.
class GraphBubbleUp(Exception):
    pass


class GraphInterrupt(GraphBubbleUp):
    pass


class NodeInterrupt(GraphInterrupt):
    pass


class ParentCommand(GraphBubbleUp):
    pass


class Hostile(type):
    def __hash__(cls):
        raise RuntimeError("no hash for you")


class HostileError(Exception, metaclass=Hostile):
    pass


class TestControlFlowKind:
    @pytest.mark.parametrize("exc_type", [GraphInterrupt, NodeInterrupt])
    def test_interruption(self, exc_type):
        """GraphInterrupt and its subclasses are interruptions."""
        assert INTERRUPTION == control_flow_kind(exc_type())

    @pytest.mark.parametrize("exc_type", [GraphBubbleUp, ParentCommand])
    def test_control_flow(self, exc_type):
        """Any other GraphBubbleUp is control flow."""
        assert CONTROL_FLOW == control_flow_kind(exc_type())

    @pytest.mark.parametrize("exc", [ValueError(), KeyboardInterrupt(), TimeoutError()])
    def test_neither(self, exc):
        """Ordinary exceptions are neither."""
        assert control_flow_kind(exc) is None

    def test_hostile_class_is_neither(self):
        """A class that raises when looked at is neither, and nothing is raised."""
        assert control_flow_kind(HostileError()) is None

    def test_cache_is_bounded(self, monkeypatch):
        """The per-class cache is emptied when full, and answers stay right."""
        monkeypatch.setattr(_control, "_BY_TYPE", {})
        monkeypatch.setattr(_control, "_BY_TYPE_MAX", 2)
        kinds = [control_flow_kind(t()) for t in [ValueError, GraphInterrupt, ParentCommand]]
        assert [None, INTERRUPTION, CONTROL_FLOW] == kinds
        assert 1 == len(_control._BY_TYPE)
        assert INTERRUPTION == control_flow_kind(GraphInterrupt())
