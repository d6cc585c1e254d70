"""
The integrations' and format_table()'s arguments are checked by their real type.

An object whose ``__class__`` raises, or claims a type it is not, is refused
with a TypeError naming the argument, never a foreign exception and never
accepted to fail later; a mapping that cannot be read, or that maps to
something that is not a node name, is refused when it is passed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

# Imported, not importorskip()ped: stamina and langgraph are dev
# dependencies, and a broken install must fail these tests, not skip them.
import pytest

from _hostile import RaisingClass, masquerade
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from stamina.instrumentation import RetryDetails

from nodemetrics import NodeMetrics, NodeMetricsCollector, format_table
from nodemetrics.integrations.langgraph import NodeMetricsCallbackHandler, instrument
from nodemetrics.integrations.stamina import instrument_stamina, on_retry_hook


class UnreadableMapping(Mapping[Any, Any]):
    """A mapping whose every way of reading raises."""

    def __getitem__(self, key: object) -> Any:
        raise KeyError(key)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Any]:
        raise ZeroDivisionError("iter raised")

    def items(self) -> Any:
        raise ZeroDivisionError("items raised")


class HalfReadableMapping(dict[Any, Any]):
    """A mapping whose items() raises halfway through."""

    def items(self) -> Any:
        yield from super().items()
        raise ZeroDivisionError("items raised halfway")


def details(name: str) -> RetryDetails:
    return RetryDetails(
        name=name,
        args=(),
        kwargs={},
        retry_num=1,
        wait_for=0.0,
        waited_so_far=0.0,
        caused_by=ConnectionError(),
    )


NOT_COLLECTORS = [
    pytest.param(RaisingClass(), id="class-raises"),
    pytest.param(masquerade(NodeMetricsCollector), id="claims-collector"),
]


class TestStamina:
    @pytest.mark.parametrize("collector", NOT_COLLECTORS)
    @pytest.mark.parametrize("make", [on_retry_hook, instrument_stamina])
    def test_collector_by_real_type(self, make: Any, collector: object) -> None:
        """A collector is one by its real type; nothing else is installed."""
        with pytest.raises(TypeError, match=r"^collector must be a NodeMetricsCollector"):
            make(collector)

    @pytest.mark.parametrize(
        "node_names",
        [
            pytest.param(RaisingClass(), id="class-raises"),
            pytest.param(masquerade(dict), id="claims-dict"),
        ],
    )
    def test_node_names_by_real_type(self, node_names: Any) -> None:
        """node_names is a mapping or a callable by its real type."""
        with pytest.raises(TypeError, match=r"^node_names must be a mapping, a callable or None"):
            on_retry_hook(NodeMetricsCollector(), node_names=node_names)

    @pytest.mark.parametrize(
        ("node_names", "error", "match"),
        [
            pytest.param(
                {"app.f": 5}, TypeError, r"^node_names\['app.f'\] must be a str, got int", id="int"
            ),
            pytest.param(
                {"app.f": None},
                TypeError,
                r"^node_names\['app.f'\] must be a str, got NoneType",
                id="None",
            ),
            pytest.param(
                {"app.f": ""},
                ValueError,
                r"^node_names\['app.f'\] must be a non-empty str",
                id="empty",
            ),
            pytest.param(
                {3: "f"},
                TypeError,
                r"^node_names must map str names to node names, got a int key",
                id="int-key",
            ),
            pytest.param(
                UnreadableMapping(),
                TypeError,
                r"^node_names could not be read: ZeroDivisionError",
                id="items-raises",
            ),
            pytest.param(
                HalfReadableMapping({"app.f": "f"}),
                TypeError,
                r"^node_names could not be read: ZeroDivisionError",
                id="items-raises-halfway",
            ),
        ],
    )
    def test_mapping_of_node_names(
        self, node_names: Any, error: type[Exception], match: str
    ) -> None:
        """A mapping's values are node names, checked when the hook is made."""
        with pytest.raises(error, match=match):
            on_retry_hook(NodeMetricsCollector(), node_names=node_names)

    def test_mapping_is_copied(self) -> None:
        """The hook keeps the mapping it checked: later changes cannot slip a bad name in."""
        c = NodeMetricsCollector()
        names = {"app.f": "f"}
        hook = on_retry_hook(c, node_names=names)
        names["app.f"] = 5  # type: ignore[assignment]
        names["app.g"] = "g"
        hook(details("app.f"))
        hook(details("app.g"))
        assert {"f": 1, "app.g": 1} == {
            node: m.retry_count for node, m in c.get_all_node_metrics().items()
        }

    def test_str_subclass_names_are_plain(self) -> None:
        """A str subclass in the mapping is used as its plain value; its __eq__ never runs."""

        class Hostile(str):
            __slots__ = ()

            __hash__ = str.__hash__

            def __eq__(self, other: object) -> bool:
                raise ZeroDivisionError("__eq__ raised")

        c = NodeMetricsCollector()
        hook = on_retry_hook(c, node_names={Hostile("app.f"): Hostile("f")})
        hook(details("app.f"))
        assert 1 == c.get_node_metrics("f").retry_count


class State(TypedDict):
    n: int


def compiled() -> Pregel:  # type: ignore[type-arg]
    g = StateGraph(State)
    g.add_node("step", lambda state: {"n": state["n"] + 1})
    g.add_edge(START, "step")
    g.add_edge("step", END)
    return g.compile()


class TestLangGraph:
    @pytest.mark.parametrize(
        "graph",
        [
            pytest.param(RaisingClass(), id="class-raises"),
            pytest.param(masquerade(Pregel), id="claims-pregel"),
        ],
    )
    def test_graph_by_real_type(self, graph: Any) -> None:
        """A graph is a compiled graph by its real type."""
        with pytest.raises(TypeError, match=r"^graph must be a compiled LangGraph graph"):
            instrument(graph, NodeMetricsCollector())

    @pytest.mark.parametrize("collector", NOT_COLLECTORS)
    def test_instrument_collector_by_real_type(self, collector: Any) -> None:
        """instrument()'s collector is one by its real type."""
        with pytest.raises(TypeError, match=r"^collector must be a NodeMetricsCollector"):
            instrument(compiled(), collector)

    @pytest.mark.parametrize("collector", NOT_COLLECTORS)
    def test_handler_collector_by_real_type(self, collector: Any) -> None:
        """NodeMetricsCallbackHandler's collector is one by its real type."""
        with pytest.raises(TypeError, match=r"^collector must be a NodeMetricsCollector"):
            NodeMetricsCallbackHandler(collector)


def snapshot() -> NodeMetrics:
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    return c.get_node_metrics("n")


class TestFormatTable:
    @pytest.mark.parametrize(
        "metrics",
        [
            pytest.param(UnreadableMapping(), id="items-raises"),
            pytest.param(HalfReadableMapping({"n": snapshot()}), id="items-raises-halfway"),
        ],
    )
    def test_unreadable_mapping(self, metrics: Any) -> None:
        """A mapping that cannot be read is a TypeError naming metrics, as from_dict() does."""
        with pytest.raises(TypeError, match=r"^metrics could not be read: ZeroDivisionError"):
            format_table(metrics)
