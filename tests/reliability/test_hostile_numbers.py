"""Issue 10, item 8: hostile numbers and names are recorded as their plain twins, or refused."""

from __future__ import annotations

import contextlib
import math

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from _hostile import (
    HostileStr,
    LyingInt,
    RaisingClass,
    RaisingFloat,
    RaisingFraction,
    RaisingInt,
    UnconvertibleFraction,
    ZeroDivisionReal,
    hostile,
    masquerade,
)
from loguru import logger

from nodemetrics import NodeMetrics, NodeMetricsCollector, classify_error, format_table, metered


class UnreprStr(str):  # noqa: SLOT000 -- a hostile caller's str need not be slotted
    """A str whose repr raises."""

    __repr__ = hostile
    __hash__ = hostile


class HostileKey(str):  # noqa: SLOT000 -- a hostile caller's str need not be slotted
    """A str usable as a dict key whose == raises."""

    __hash__ = str.__hash__
    __eq__ = hostile
    __ne__ = hostile


@pytest.fixture(autouse=True)
def _quiet():
    logger.disable("nodemetrics")
    yield
    logger.enable("nodemetrics")


def ok(twin: object) -> tuple[str, object]:
    """Expect the value to act exactly as its plain *twin*."""
    return ("ok", twin)


def refused(error: type[Exception]) -> tuple[str, object]:
    """Expect *error*, naming the argument."""
    return ("refused", error)


# (label, make the hostile value, what must happen)
NAMES = [
    ("str_subclass", lambda: HostileStr("n"), ok("n")),
    ("str_subclass_new_name", lambda: HostileStr("fresh\x00ü"), ok("fresh\x00ü")),
    ("str_subclass_empty", lambda: HostileStr(""), refused(ValueError)),
    ("float_subclass", lambda: RaisingFloat(1.0), refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_str", lambda: masquerade(str), refused(TypeError)),
]
DURATIONS = [
    ("float_subclass", lambda: RaisingFloat(2.5), ok(2.5)),
    ("float_subclass_negative", lambda: RaisingFloat(-1.0), ok(-1.0)),
    ("float_subclass_nan", lambda: RaisingFloat(math.nan), refused(ValueError)),
    ("float_subclass_inf", lambda: RaisingFloat(math.inf), refused(ValueError)),
    ("float_subclass_huge", lambda: RaisingFloat(1e308), refused(ValueError)),
    ("real_zero_division", ZeroDivisionReal, refused(ValueError)),
    ("int_subclass", lambda: RaisingInt(3), ok(3)),
    ("int_subclass_lying_negative", lambda: LyingInt(-2), ok(-2)),
    ("int_subclass_huge", lambda: RaisingInt(10**400), refused(ValueError)),
    ("fraction_subclass", lambda: RaisingFraction(1, 2), ok(0.5)),
    ("fraction_unconvertible", lambda: UnconvertibleFraction(1, 2), refused(ValueError)),
    ("str_subclass", lambda: HostileStr("1.0"), refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_float", lambda: masquerade(float), refused(TypeError)),
    ("fake_int", lambda: masquerade(int), refused(TypeError)),
]
ATTEMPTS = [
    ("int_subclass", lambda: RaisingInt(3), ok(3)),
    ("int_subclass_lying_zero", lambda: LyingInt(0), refused(ValueError)),
    ("int_subclass_lying_negative", lambda: LyingInt(-4), refused(ValueError)),
    ("float_subclass", lambda: RaisingFloat(2.0), refused(TypeError)),
    ("real_zero_division", ZeroDivisionReal, refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_int", lambda: masquerade(int), refused(TypeError)),
]
CATEGORY_VALUES = [
    ("str_subclass", lambda: HostileStr("timeout"), ok("timeout")),
    ("str_subclass_unknown", lambda: HostileStr("bogus"), refused(ValueError)),
    ("float_subclass", lambda: RaisingFloat(1.0), refused(ValueError)),
    ("str_subclass_unrepr", lambda: UnreprStr("bogus"), refused(ValueError)),
    ("raising_class", RaisingClass, refused(ValueError)),
    ("fake_str", lambda: masquerade(str), refused(ValueError)),
]

# Each method, with plain arguments for those not under attack, and the
# hostile values for each argument.
CALLS: dict[str, dict[str, tuple[object, list[Any]]]] = {
    "record_success": {"node": ("n", NAMES), "duration_ms": (1.0, DURATIONS)},
    "record_failure": {
        "node": ("n", NAMES),
        "duration_ms": (1.0, DURATIONS),
        "category": (None, CATEGORY_VALUES),
    },
    "record_retry": {"node": ("n", NAMES), "attempt_number": (None, ATTEMPTS)},
    "record_cancellation": {"node": ("n", NAMES)},
    "record_interruption": {"node": ("n", NAMES)},
    "get_node_metrics": {"node": ("n", NAMES)},
    "get_node_histogram": {"node": ("n", NAMES)},
    "reset_node_metrics": {"node": ("n", NAMES)},
    "track": {"node": ("n", NAMES)},
    "retry_hook": {"node": ("n", NAMES)},
}
TARGETS = [
    pytest.param(method, argument, make, expected, id=f"{method}-{argument}-{label}")
    for method, arguments in CALLS.items()
    for argument, (_, values) in arguments.items()
    for label, make, expected in values
]


def seeded() -> NodeMetricsCollector:
    """A collector with some of everything, thresholds watched."""
    c = NodeMetricsCollector(
        window_size=5,
        min_samples=1,
        failure_rate_threshold=0.5,
        on_failure_rate_threshold=lambda node, rate: None,
    )
    c.record_success("n", 3.0)
    c.record_failure("n", 4.0, TimeoutError())
    c.record_retry("other")
    return c


def untimed(c: NodeMetricsCollector) -> dict[str, dict[str, object]]:
    """Every node's snapshot, with each duration reduced to whether it is set."""
    return {
        node: {k: (v is not None) if k in DURATION_FIELDS else v for k, v in d.items()}
        for node, d in c.to_dict().items()
    }


def call(c: NodeMetricsCollector, method: str, kwargs: dict[str, object]) -> object:
    result = getattr(c, method)(**kwargs)
    if method == "track":
        with result:  # type: ignore[attr-defined]
            pass
    return result


class TestArguments:
    @pytest.mark.parametrize(("method", "argument", "make", "expected"), TARGETS)
    def test_hostile_argument(self, method, argument, make, expected):
        """A hostile argument acts exactly as its plain twin, or is refused naming it, unchanged."""
        kwargs = {name: plain for name, (plain, _) in CALLS[method].items()}
        c = seeded()
        before = c.to_json()
        outcome, detail = expected
        if outcome == "refused":
            with pytest.raises(detail) as info:
                call(c, method, {**kwargs, argument: make()})
            assert argument in str(info.value)
            assert before == c.to_json()
        else:
            twin = seeded()
            call(c, method, {**kwargs, argument: make()})
            call(twin, method, {**kwargs, argument: detail})
            assert untimed(twin) == untimed(c)
            if method != "track":  # a timed block's duration is the real clock's
                assert twin.to_json() == c.to_json()
            assert all(str is type(node) for node in c.get_all_node_metrics())

    @pytest.mark.parametrize(
        ("label", "make", "expected"), NAMES[:3], ids=[n[0] for n in NAMES[:3]]
    )
    def test_metered_name(self, label, make, expected):
        """metered(name=...) with a hostile str: its plain twin's node, or refused naming 'name'."""
        c = NodeMetricsCollector()
        outcome, detail = expected
        if outcome == "refused":
            with pytest.raises(detail, match="name"):
                metered(make(), collector=c)
            return
        assert 7 == metered(make(), collector=c)(lambda: 7)()
        assert [detail] == list(c.get_all_node_metrics())
        assert str is type(next(iter(c.get_all_node_metrics())))


INT_OPTIONS = ["window_size", "min_samples", "max_nodes"]
INT_VALUES = [
    ("int_subclass", lambda: RaisingInt(3), ok(3)),
    ("int_subclass_lying_zero", lambda: LyingInt(0), refused(ValueError)),
    ("int_subclass_lying_negative", lambda: LyingInt(-5), refused(ValueError)),
    ("float_subclass", lambda: RaisingFloat(3.0), refused(TypeError)),
    ("real_zero_division", ZeroDivisionReal, refused(TypeError)),
    ("fraction_subclass", lambda: RaisingFraction(3), refused(TypeError)),
    ("str_subclass", lambda: HostileStr("3"), refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_int", lambda: masquerade(int), refused(TypeError)),
]
RATE_VALUES = [
    ("float_subclass", lambda: RaisingFloat(0.25), ok(0.25)),
    ("float_subclass_nan", lambda: RaisingFloat(math.nan), refused(ValueError)),
    ("int_subclass", lambda: RaisingInt(0), ok(0.0)),
    # No rate exceeds 1: a threshold there could never be crossed.
    ("int_subclass_one", lambda: RaisingInt(1), refused(ValueError)),
    ("int_subclass_lying_negative", lambda: LyingInt(-1), refused(ValueError)),
    ("fraction_subclass", lambda: RaisingFraction(1, 4), ok(0.25)),
    ("fraction_subclass_above_one", lambda: RaisingFraction(3, 2), refused(ValueError)),
    ("fraction_unconvertible", lambda: UnconvertibleFraction(1, 4), refused(ValueError)),
    ("real_zero_division", ZeroDivisionReal, refused(ValueError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_float", lambda: masquerade(float), refused(TypeError)),
]
LATENCY_VALUES = [
    ("float_subclass", lambda: RaisingFloat(2.5), ok(2.5)),
    ("float_subclass_inf", lambda: RaisingFloat(math.inf), refused(ValueError)),
    ("int_subclass", lambda: RaisingInt(3), ok(3.0)),
    ("int_subclass_lying_negative", lambda: LyingInt(-1), refused(ValueError)),
    ("fraction_subclass", lambda: RaisingFraction(5, 2), ok(2.5)),
    ("fraction_unconvertible", lambda: UnconvertibleFraction(5, 2), refused(ValueError)),
    ("real_zero_division", ZeroDivisionReal, refused(ValueError)),
    ("raising_class", RaisingClass, refused(TypeError)),
    ("fake_float", lambda: masquerade(float), refused(TypeError)),
]
OPTION_TARGETS = [
    pytest.param(option, make, expected, id=f"{option}-{label}")
    for options, values in [
        (INT_OPTIONS, INT_VALUES),
        (["failure_rate_threshold"], RATE_VALUES),
        (["latency_threshold_ms"], LATENCY_VALUES),
    ]
    for option in options
    for label, make, expected in values
]


def workload(option: str, value: object) -> tuple[str, list[tuple[str, str, float]]]:
    """Build a collector with *option*, run a fixed workload, return its JSON and crossings."""
    crossings: list[tuple[str, str, float]] = []
    c = NodeMetricsCollector(
        **{
            "min_samples": 1,
            "failure_rate_threshold": 0.25,
            "latency_threshold_ms": 2.5,
            option: value,
        },
        on_failure_rate_threshold=lambda node, rate: crossings.append(("rate", node, rate)),
        on_latency_threshold=lambda node, p99: crossings.append(("latency", node, p99)),
    )
    for name in ["a", "b", "c", "d", "e"]:
        for i in range(8):
            c.record_success(name, float(i))
            c.record_failure(name, float(i) / 2, TimeoutError())
            with c.track(name):
                pass
    for name, m in c.get_all_node_metrics().items():
        assert m == NodeMetrics.from_dict(m.to_dict()), name
    stored = getattr(c, option)
    assert type(stored) in (int, float)
    # track() durations are real; compare the counts and what recording set.
    counts = {
        node: (m.total_executions, m.failure_count, m.timeout_errors)
        for node, m in c.get_all_node_metrics().items()
    }
    return f"{stored!r} {type(stored).__name__} {counts}", crossings


class TestOptions:
    @pytest.mark.parametrize(("option", "make", "expected"), OPTION_TARGETS)
    def test_hostile_option(self, option, make, expected):
        """A hostile option acts as its plain twin (stored exactly), or is refused naming it."""
        outcome, detail = expected
        if outcome == "refused":
            with pytest.raises(detail) as info:
                NodeMetricsCollector(**{option: make()})
            assert option in str(info.value)
            return
        hostile_run = workload(option, make())
        twin_run = workload(option, detail)
        assert twin_run[0] == hostile_run[0]
        assert [(kind, node) for kind, node, _ in twin_run[1]] == [
            (kind, node) for kind, node, _ in hostile_run[1]
        ]

    def test_window_size_lying_zero(self):
        """The issue's case: window_size=LyingInt(0) is refused, so no node is ever torn."""
        with pytest.raises(ValueError, match="window_size must be >= 1, got 0"):
            NodeMetricsCollector(window_size=LyingInt(0))

    def test_fraction_threshold_compared_as_float(self):
        """A Fraction-subclass threshold is stored as a float; crossing it runs none of its code."""
        crossed: list[tuple[str, float]] = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=RaisingFraction(1, 3),
            on_failure_rate_threshold=lambda node, rate: crossed.append((node, rate)),
        )
        assert float is type(c.failure_rate_threshold)
        c.record_success("n", 1.0)
        c.record_failure("n", 1.0)
        assert [("n", 0.5)] == crossed


COUNT_FIELDS = [
    "total_executions",
    "success_count",
    "failure_count",
    "retry_count",
    "timeout_errors",
    "validation_errors",
    "network_errors",
    "other_errors",
    "cancelled_count",
]
DURATION_FIELDS = ["last_execution_ms", "avg_execution_ms", "p50", "p90", "p99"]


def executed(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "total_executions": 1,
        "success_count": 1,
        "last_execution_ms": 2.0,
        "avg_execution_ms": 2.0,
        "p50": 2.0,
        "p90": 2.0,
        "p99": 2.0,
    }
    return {**base, **fields}


class TestNodeMetricsFields:
    @pytest.mark.parametrize("field", COUNT_FIELDS)
    @pytest.mark.parametrize(
        "make", [lambda: RaisingInt(1), lambda: LyingInt(-2)], ids=["raising", "lying"]
    )
    def test_int_subclass_count(self, field, make):
        """A count of an int subclass (raising or lying comparisons) is a TypeError naming it."""
        with pytest.raises(TypeError, match=field):
            NodeMetrics(**{field: make()})

    @pytest.mark.parametrize("field", [*COUNT_FIELDS, *DURATION_FIELDS])
    def test_unrepresentable_value(self, field):
        """A value whose repr raises is still a TypeError naming the field."""
        with pytest.raises(TypeError, match=f"{field} must be .*<UnreprStr object>"):
            NodeMetrics(**executed(**{field: UnreprStr("1")}))  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", [*COUNT_FIELDS, *DURATION_FIELDS])
    @pytest.mark.parametrize(
        "make",
        [RaisingClass, lambda: masquerade(int), lambda: masquerade(float)],
        ids=["raising_class", "fake_int", "fake_float"],
    )
    def test_class_liar(self, field, make):
        """A value whose __class__ raises or lies is a TypeError naming the field."""
        with pytest.raises(TypeError, match=field):
            NodeMetrics(**executed(**{field: make()}))  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", DURATION_FIELDS)
    def test_float_subclass_duration(self, field):
        """A duration of a hostile float subclass is stored as the plain float."""
        m = NodeMetrics(**executed(**{field: RaisingFloat(2.0)}))  # type: ignore[arg-type]
        assert NodeMetrics(**executed()) == m  # type: ignore[arg-type]
        assert float is type(getattr(m, field))

    @pytest.mark.parametrize("field", DURATION_FIELDS)
    @pytest.mark.parametrize(
        "make",
        [lambda: RaisingInt(10**400), lambda: RaisingFloat(math.nan), ZeroDivisionReal],
        ids=["huge_int", "nan_float", "zero_division"],
    )
    def test_bad_duration(self, field, make):
        """An unusable hostile duration is a TypeError/ValueError naming the field."""
        with pytest.raises((TypeError, ValueError), match=field):
            NodeMetrics(**executed(**{field: make()}))  # type: ignore[arg-type]


def test_every_public_method_is_covered() -> None:
    """Every method of the collector that takes arguments is attacked above."""
    public: list[Callable[..., object]] = [
        getattr(NodeMetricsCollector, name)
        for name in dir(NodeMetricsCollector)
        if not name.startswith("_") and callable(getattr(NodeMetricsCollector, name))
    ]
    taking = {f.__name__ for f in public if f.__code__.co_argcount > 1}
    assert taking == set(CALLS)


class UnreprKey:
    """A dict key whose repr raises."""

    __repr__ = hostile


class HostileMapping(dict):  # type: ignore[type-arg]
    """A mapping whose items() raises."""

    items = hostile  # type: ignore[assignment]


class TestFromDict:
    def test_str_subclass_keys(self):
        """Field names given as a str subclass whose hash and == raise are read as plain strs."""
        snapshot = NodeMetrics(**executed())  # type: ignore[arg-type]
        keyed = {HostileKey(k): v for k, v in snapshot.to_dict().items()}
        assert snapshot == NodeMetrics.from_dict(keyed)

    def test_unknown_hostile_key(self):
        """An unknown key whose repr raises is still a ValueError naming it as unknown."""
        fields = {**NodeMetrics().to_dict(), HostileKey("p75"): 1.0, UnreprKey(): 2.0}
        with pytest.raises(ValueError, match=r"has no field\(s\): .*UnreprKey object.*p75"):
            NodeMetrics.from_dict(fields)

    @pytest.mark.parametrize(
        "make", [RaisingClass, lambda: masquerade(dict)], ids=["raising_class", "fake_dict"]
    )
    def test_class_liar(self, make):
        """A mapping whose __class__ raises or lies is a TypeError naming 'mapping'."""
        with pytest.raises(TypeError, match="mapping must be a mapping"):
            NodeMetrics.from_dict(make())

    def test_unreadable_mapping(self):
        """A mapping whose items() raises is a TypeError naming 'mapping'."""
        with pytest.raises(TypeError, match="mapping could not be read"):
            NodeMetrics.from_dict(HostileMapping(NodeMetrics().to_dict()))


class TestClassLiars:
    @pytest.mark.parametrize(
        "make", [RaisingClass, lambda: masquerade(Exception)], ids=["raising_class", "fake"]
    )
    def test_classify_error(self, make):
        """classify_error() of an object whose __class__ raises or lies: TypeError naming exc."""
        with pytest.raises(TypeError, match="exc must be an exception"):
            classify_error(make())

    def test_record_failure_error(self):
        """record_failure(error=) of an object whose __class__ raises: a TypeError naming error."""
        c = seeded()
        before = c.to_json()
        with pytest.raises(TypeError, match="error"):
            c.record_failure("n", 1.0, RaisingClass())  # type: ignore[arg-type]
        assert before == c.to_json()

    def test_metered_collector(self):
        """metered(collector=) of an object whose __class__ raises: a TypeError naming it."""
        with pytest.raises(TypeError, match="collector"):
            metered("n", collector=RaisingClass())  # type: ignore[arg-type]


class Pairs(Mapping):
    """A mapping of fixed pairs that never hashes or compares its keys (a dict would)."""

    def __init__(self, pairs):
        self._pairs = pairs

    def __getitem__(self, key):
        for k, v in self._pairs:
            if k is key:
                return v
        raise KeyError(id(key))

    def __iter__(self):
        return (k for k, _ in self._pairs)

    def __len__(self):
        return len(self._pairs)


class TestOutsideTheCollector:
    """Public functions outside the collector's own files; gaps found here are pinned."""

    @pytest.mark.parametrize(
        "make",
        [
            lambda: Pairs([(HostileStr("n"), NodeMetrics())]),
            RaisingClass,
            lambda: {"n": RaisingClass()},
        ],
        ids=["str_subclass_name", "raising_class", "raising_class_value"],
    )
    def test_format_table(self, make):
        """format_table() of hostile input: a table, or a TypeError/ValueError."""
        with contextlib.suppress(TypeError, ValueError):
            format_table(make())

    def test_prometheus_namespace(self):
        """PrometheusExporter(namespace=) of a hostile str is read as its plain twin."""
        from nodemetrics.exporters.prometheus import PrometheusExporter

        exporter = PrometheusExporter(NodeMetricsCollector(), namespace=HostileStr("ns"))
        names = [family.name for family in exporter.describe()]
        assert names
        assert all(type(n) is str and n.startswith("ns_node_") for n in names), names
