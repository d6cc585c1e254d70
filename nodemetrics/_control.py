"""
Recognising the exceptions that graph frameworks use for control flow.

LangGraph pauses a graph by raising ``GraphInterrupt`` from the node that
called ``interrupt()``, and hands a ``Command`` to a parent graph by raising
``ParentCommand``; both derive from ``GraphBubbleUp``. Neither is a failure of
the node. They are recognised here by class name along the exception's MRO,
as :func:`nodemetrics.classify_error` recognises httpx timeouts, so that the
core never imports langgraph.
"""

from __future__ import annotations

from typing import Literal


#: The node paused (LangGraph's ``GraphInterrupt`` and its subclasses).
INTERRUPTION: Literal["interruption"] = "interruption"
#: The node handed control on (any other ``GraphBubbleUp``): a success.
CONTROL_FLOW: Literal["control_flow"] = "control_flow"

ControlKind = Literal["interruption", "control_flow"]

_INTERRUPT_NAMES = frozenset({"GraphInterrupt"})
_CONTROL_FLOW_NAMES = frozenset({"GraphBubbleUp"})

# Exception classes are few and long-lived; what they mean never changes.
_BY_TYPE: dict[type[BaseException], ControlKind | None] = {}
_BY_TYPE_MAX = 1024


def control_flow_kind(exc: BaseException) -> ControlKind | None:
    """
    Say whether *exc* is a framework's control flow rather than a failure.

    Returns:
        :data:`INTERRUPTION` for LangGraph's ``GraphInterrupt`` (and its
        subclasses, such as ``NodeInterrupt``), :data:`CONTROL_FLOW` for any
        other ``GraphBubbleUp`` (``ParentCommand``), else ``None``. Anything
        that goes wrong while looking (a hostile class) means ``None``.
    """
    try:
        exc_type = type(exc)
        if exc_type in _BY_TYPE:
            return _BY_TYPE[exc_type]
        names = {cls.__name__ for cls in exc_type.__mro__}
        kind: ControlKind | None = None
        if not names.isdisjoint(_INTERRUPT_NAMES):
            kind = INTERRUPTION
        elif not names.isdisjoint(_CONTROL_FLOW_NAMES):
            kind = CONTROL_FLOW
        if len(_BY_TYPE) >= _BY_TYPE_MAX:
            _BY_TYPE.clear()
        _BY_TYPE[exc_type] = kind
    except Exception:  # noqa: BLE001 -- a hostile class is simply not control flow
        return None
    return kind
