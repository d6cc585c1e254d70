"""
Count every retry stamina makes, for every node, without per-node wiring.

Needs stamina (``pip install stamina``).

.. code-block:: python

    import stamina
    from nodemetrics.integrations.stamina import instrument_stamina

    instrument_stamina(collector)

    @stamina.retry(on=httpx.HTTPError)
    def fetch(url): ...  # each retry counts for the node "myapp.fetch"
"""

from __future__ import annotations

import weakref

from collections.abc import Callable, Mapping
from typing import cast

from stamina.instrumentation import (
    RetryDetails,
    RetryHook,
    get_on_retry_hooks,
    set_on_retry_hooks,
)

from nodemetrics._collector import NodeMetricsCollector, get_default_collector
from nodemetrics._log import log
from nodemetrics._validate import check_node, safe_repr, type_name


__all__ = ["instrument_stamina", "on_retry_hook"]

NodeNames = Mapping[str, str] | Callable[[str], "str | None"]


def _node_mapping(node_names: Mapping[object, object]) -> dict[str, str]:
    """
    Return a plain copy of a *node_names* mapping, every value a node name.

    Keys and values are copied to exact ``str`` (so that no subclass's own
    ``__hash__`` or ``__eq__`` runs at a retry); a key that is not a ``str``
    could never match stamina's name, so it is refused as the mistake it is.

    Raises:
        TypeError: Reading the mapping raised, or a key or value is not a ``str``.
        ValueError: A value is the empty string.
    """
    try:
        pairs = list(node_names.items())
    except Exception as exc:  # noqa: BLE001 -- a foreign mapping may raise anything
        msg = f"node_names could not be read: {safe_repr(exc)}"
        raise TypeError(msg) from None
    mapping: dict[str, str] = {}
    for key, value in pairs:
        if not issubclass(type(key), str):
            msg = f"node_names must map str names to node names, got a {type_name(key)} key"
            raise TypeError(msg)
        name = str.__str__(cast("str", key))
        mapping[name] = check_node(value, f"node_names[{name!r}]")
    return mapping


def on_retry_hook(
    collector: NodeMetricsCollector | None = None, *, node_names: NodeNames | None = None
) -> RetryHook:
    """
    Return a stamina ``RetryHook`` that records a retry for the retried node.

    The node is named after the retried callable, as stamina names it
    (``RetryDetails.name``: ``"module.qualname"`` for a decorated function,
    the name given to ``stamina.retry_context``). *node_names* maps those
    names to node names: a mapping (names it lacks are kept as they are) or a
    callable (returning ``None`` skips that retry), for example to match the
    names given to :func:`nodemetrics.metered`. A mapping is checked and
    copied when the hook is made, so that a value that is not a node name is
    refused here instead of losing every retry of its name; later changes to
    the mapping have no effect. A callable's result is checked at each retry:
    one that is neither a node name nor ``None`` is logged like any other
    failure of the hook.

    Pass it to ``stamina.instrumentation.set_on_retry_hooks``, or use
    :func:`instrument_stamina`. A failure inside the hook is logged, never
    raised into stamina.

    Args:
        collector: Where to record; :func:`nodemetrics.get_default_collector`
            when omitted.
        node_names: How stamina's names become node names.

    Raises:
        TypeError: *collector* is not a collector; *node_names* is neither a
            mapping nor callable, is a mapping that could not be read, or
            maps something to a value that is not a ``str``.
        ValueError: *node_names* maps a name to the empty string.
    """
    # By real type, as nodemetrics._validate checks: an object's __class__
    # could lie or raise.
    if collector is None:
        collector = get_default_collector()
    elif not issubclass(type(collector), NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector or None, got {type_name(collector)}"
        raise TypeError(msg)
    if node_names is None:
        name_of: Callable[[str], str | None] = str
    elif issubclass(type(node_names), Mapping):
        mapping = _node_mapping(cast("Mapping[object, object]", node_names))

        def name_of(name: str) -> str | None:
            return mapping.get(name, name)
    elif callable(node_names):
        name_of = node_names
    else:
        msg = f"node_names must be a mapping, a callable or None, got {type_name(node_names)}"
        raise TypeError(msg)
    record_retry = collector.record_retry

    def record_stamina_retry(details: RetryDetails) -> None:
        try:
            node = name_of(details.name)
            if node is not None:
                record_retry(node, details.retry_num)
        except Exception:  # noqa: BLE001 -- a metrics hook must not break stamina's retries
            log(
                "ERROR",
                "nodemetrics.stamina_hook_failed: could not record a retry of {name!r}",
                exception=True,
                name=details.name,
            )

    return record_stamina_retry


def instrument_stamina(
    collector: NodeMetricsCollector | None = None, *, node_names: NodeNames | None = None
) -> RetryHook:
    """
    Add :func:`on_retry_hook` to stamina's active on-retry hooks.

    The hooks already active (stamina's own logging and Prometheus hooks, or
    yours) stay, but for one that this function added for the same collector
    before, which the new one replaces (with its *node_names*): called twice,
    it still counts each retry once. Returns the hook added.

    Raises:
        TypeError: As :func:`on_retry_hook`.
        ValueError: As :func:`on_retry_hook`.
    """
    if collector is None:
        collector = get_default_collector()
    hook = on_retry_hook(collector, node_names=node_names)
    # Marked before it is added: any later call (another thread's, a signal
    # handler's, one after this call was cut short) finds every hook added
    # for this collector in stamina's own list, and keeps none of them.
    for key, (added, _) in list(_ADDED.items()):  # copied in one step no handler splits
        if added() is None:
            _ADDED.pop(key, None)
    _ADDED[id(hook)] = (weakref.ref(hook), weakref.ref(collector))
    kept = [other for other in get_on_retry_hooks() if not _added_for(other, collector)]
    set_on_retry_hooks([*kept, hook])
    return hook


#: Each hook instrument_stamina() added, by id: (the hook, its collector),
#: weakly, so that an entry whose hook died (its id reused) matches nothing.
_ADDED: dict[int, tuple[weakref.ref[RetryHook], weakref.ref[NodeMetricsCollector]]] = {}


def _added_for(hook: object, collector: NodeMetricsCollector) -> bool:
    # By identity only: comparing hooks or collectors could run their code.
    entry = _ADDED.get(id(hook))
    return entry is not None and entry[0]() is hook and entry[1]() is collector
