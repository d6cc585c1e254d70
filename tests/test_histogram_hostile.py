"""
Hostile numbers and objects given to buckets= and NodeHistogram: plain twins, or refused.

The equivalent, for the histogram, of ``reliability/test_hostile_numbers.py``:
a value whose ``__class__`` raises or lies, an ``int``/``float``/``Fraction``
subclass whose comparisons or conversions raise or lie, acts exactly as its
plain value or is refused with a TypeError/ValueError whose message begins
with the argument's name. Also: bounds the exporters could not tell apart
once divided by 1000 are refused.
"""

from __future__ import annotations

import json
import math

from collections.abc import Callable

import pytest

from _hostile import (
    Hostile,
    HostileStr,
    LyingFloat,
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

from nodemetrics import NodeHistogram, NodeMetricsCollector
from nodemetrics._histogram import check_buckets


class RaisingIterable:
    """An iterable whose iteration raises after one item."""

    def __iter__(self):
        yield 1.0
        raise Hostile("hostile iteration")


def ok(twin: object) -> tuple[str, object]:
    """Expect the value to act exactly as its plain *twin*."""
    return ("ok", twin)


def refused(error: type[Exception], match: str = "") -> tuple[str, object]:
    """Expect *error*, its message beginning with the argument's name (and *match*)."""
    return ("refused", (error, match))


def ids(table: list[tuple[str, Callable[[], object], tuple[str, object]]]) -> list[str]:
    return [label for label, _, _ in table]


def outcome_of(
    expected: tuple[str, object], argument: str, attempt: Callable[[], object]
) -> object | None:
    """Run *attempt*; if *expected* is a refusal, check it and return None, else the result."""
    kind, detail = expected
    if kind == "ok":
        return attempt()
    error, match = detail  # type: ignore[misc]
    with pytest.raises(error, match=f"^{argument}{match}"):
        attempt()
    return None


B = (1.0, 10.0, 100.0)


def workload(c: NodeMetricsCollector) -> str:
    """Record a fixed workload into *c*; return its histograms as JSON."""
    for v in (0.5, 1.0, 2.5, 10.0, 99.0, 500.0, 5000.0):
        c.record_success("n", v)
        c.record_failure("m", v / 2, TimeoutError())
    return json.dumps({node: h.to_dict() for node, h in c.get_all_node_histograms().items()})


# -- buckets= ------------------------------------------------------------------

#: One hostile bound, put between 0.5 and 1000 ms.
BOUND_ITEMS = [
    ("float_subclass", lambda: RaisingFloat(2.5), ok(2.5)),
    ("float_subclass_nan", lambda: RaisingFloat(math.nan), refused(ValueError, r"\[1\]")),
    ("float_subclass_inf", lambda: RaisingFloat(math.inf), refused(ValueError, r"\[1\]")),
    ("float_subclass_lying_negative", lambda: LyingFloat(-2.0), refused(ValueError, r"\[1\]")),
    ("int_subclass", lambda: RaisingInt(3), ok(3.0)),
    ("int_subclass_lying_zero", lambda: LyingInt(0), refused(ValueError, r"\[1\]")),
    ("int_subclass_lying_negative", lambda: LyingInt(-5), refused(ValueError, r"\[1\]")),
    ("int_subclass_huge", lambda: RaisingInt(10**400), refused(ValueError, r"\[1\]")),
    ("fraction_subclass", lambda: RaisingFraction(1, 2) + RaisingFraction(2), ok(2.5)),
    # check_buckets() has always made a failed conversion a TypeError.
    ("fraction_unconvertible", lambda: UnconvertibleFraction(5, 2), refused(TypeError, r"\[1\]")),
    ("real_zero_division", ZeroDivisionReal, refused(TypeError, r"\[1\]")),
    ("bool", lambda: True, refused(TypeError, r"\[1\]")),
    ("str_subclass", lambda: HostileStr("3"), refused(TypeError, r"\[1\]")),
    ("raising_class", RaisingClass, refused(TypeError, r"\[1\] must be a real number")),
    ("fake_float", lambda: masquerade(float), refused(TypeError, r"\[1\] must be a real number")),
    ("fake_int", lambda: masquerade(int), refused(TypeError, r"\[1\] must be a real number")),
]

#: A hostile buckets= as a whole.
BUCKET_CONTAINERS = [
    ("raising_class", RaisingClass, refused(TypeError, " must be a sequence")),
    ("fake_list", lambda: masquerade(list), refused(TypeError, " must be a sequence")),
    ("fake_tuple", lambda: masquerade(tuple), refused(TypeError, " must be a sequence")),
    ("str_subclass", lambda: HostileStr("12"), refused(TypeError, " must be a sequence")),
    ("raising_iterable", RaisingIterable, refused(TypeError, " could not be read")),
]


class TestBuckets:
    @pytest.mark.parametrize(("label", "make", "expected"), BOUND_ITEMS, ids=ids(BOUND_ITEMS))
    def test_hostile_bound(self, label, make, expected):
        """A hostile bound acts as its plain twin (stored as a plain float), or is refused."""
        result = outcome_of(
            expected, "buckets", lambda: NodeMetricsCollector(buckets=[0.5, make(), 1000])
        )
        if result is None:
            return
        twin = NodeMetricsCollector(buckets=[0.5, expected[1], 1000])
        assert twin.buckets == result.buckets  # type: ignore[attr-defined]
        assert all(type(b) is float for b in result.buckets)  # type: ignore[attr-defined]
        assert workload(twin) == workload(result)  # type: ignore[arg-type]

    @pytest.mark.parametrize(("label", "make", "expected"), BOUND_ITEMS, ids=ids(BOUND_ITEMS))
    def test_hostile_histogram_bound(self, label, make, expected):
        """The same for NodeHistogram's bounds, through the constructor, empty() and from_dict()."""
        attempts = [
            lambda: NodeHistogram([0.5, make(), 1000], (0, 0, 0, 0), 0, 0.0),
            lambda: NodeHistogram.empty([0.5, make(), 1000]),
            lambda: NodeHistogram.from_dict(
                {"bounds": [0.5, make(), 1000], "counts": [0] * 4, "count": 0, "sum_ms": 0.0}
            ),
        ]
        for attempt in attempts:
            result = outcome_of(expected, "bounds", attempt)
            if result is not None:
                assert NodeHistogram.empty([0.5, expected[1], 1000]) == result
                assert all(type(b) is float for b in result.bounds)  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        ("label", "make", "expected"), BUCKET_CONTAINERS, ids=ids(BUCKET_CONTAINERS)
    )
    def test_hostile_buckets(self, label, make, expected):
        """A hostile buckets= or bounds= as a whole is refused, naming it."""
        outcome_of(expected, "buckets", lambda: NodeMetricsCollector(buckets=make()))
        outcome_of(expected, "bounds", lambda: NodeHistogram.empty(make()))


# -- bounds the exporters cannot tell apart in seconds (finding 9) -------------------


class TestBucketsInSeconds:
    @pytest.mark.parametrize(
        ("bounds", "match"),
        [
            # The review's case: adjacent floats, one number of seconds.
            (
                (1023.5824282348027, 1023.5824282348028),
                " must be strictly increasing in seconds too: .* too close to tell apart",
            ),
            ((1.0, 2.0, 1023.5824282348027, 1023.5824282348028), " .* at index 3 are too close"),
            # Denormals: both 0.0 s.
            ((5e-324, 1e-323), r"\[0\] is too small to tell apart from 0 in seconds"),
            ((5e-324,), r"\[0\] is too small to tell apart from 0 in seconds"),
            ((2e-321, 1.0), r"\[0\] is too small"),
        ],
    )
    def test_refused(self, bounds, match):
        """Bounds equal (or 0) once divided by 1000 are a ValueError naming buckets (or bounds)."""
        with pytest.raises(ValueError, match=f"^buckets{match}"):
            NodeMetricsCollector(buckets=bounds)
        with pytest.raises(ValueError, match=f"^buckets{match}"):
            check_buckets(bounds)
        with pytest.raises(ValueError, match=f"^bounds{match}"):
            NodeHistogram.empty(bounds)
        with pytest.raises(ValueError, match=f"^bounds{match}"):
            NodeHistogram.from_dict(
                {"bounds": list(bounds), "counts": [0] * (len(bounds) + 1), "count": 0, "sum_ms": 0}
            )

    def test_neighbours(self):
        """For any bound and its next float, either seconds tell them apart or buckets= refuses.

        The bounds are 5,000 steps spread evenly over 60 orders of magnitude;
        every accepted pair keeps strictly increasing seconds, as the
        exporters compute them, and at least one pair of them is refused.
        """
        refusals = 0
        for step in range(5_000):
            low = 10 ** (-30 + 60 * step / 5_000)
            high = math.nextafter(low, math.inf)
            try:
                accepted = check_buckets((low, high))
            except ValueError as exc:
                assert str(exc).startswith("buckets must be strictly increasing in seconds")
                assert low / 1000 == high / 1000
                refusals += 1
                continue
            assert 0.0 < accepted[0] / 1000 < accepted[1] / 1000
        assert refusals > 0

    def test_smallest_first_bound(self):
        """The smallest float that is > 0 in seconds is accepted; the one below is not."""
        low = math.ulp(0.0)
        while low / 1000 == 0.0:
            low = math.nextafter(low, math.inf)
        assert (low,) == check_buckets((low,))
        with pytest.raises(ValueError, match="^buckets"):
            check_buckets((math.nextafter(low, 0.0),))

    def test_prometheus_le_is_unique(self):
        """The review's repro: a collector that used to expose duplicate le series.

        Now its buckets are refused; the nearest accepted pair gives distinct le.
        """
        pytest.importorskip("prometheus_client")
        from prometheus_client import CollectorRegistry, generate_latest

        from nodemetrics.exporters.prometheus import PrometheusExporter

        low = 1023.5824282348027
        with pytest.raises(ValueError, match="^buckets"):
            NodeMetricsCollector(buckets=(low, math.nextafter(low, math.inf)))
        high = math.nextafter(low, math.inf)
        while low / 1000 == high / 1000:
            high = math.nextafter(high, math.inf)
        c = NodeMetricsCollector(buckets=(low, high))
        c.record_success("n", 1.0)
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c))
        lines = [
            line.rsplit(" ", 1)[0]
            for line in generate_latest(registry).decode().splitlines()
            if line.startswith("nodemetrics_node_duration_seconds_bucket")
        ]
        assert 3 == len(lines)
        assert len(lines) == len(set(lines))


# -- NodeHistogram's fields ------------------------------------------------------

COUNT_ITEMS = [
    ("int_subclass", lambda: RaisingInt(1), ok(1)),
    (
        "int_subclass_lying_negative",
        lambda: LyingInt(-1),
        refused(ValueError, r"\[0\] must be >= 0"),
    ),
    ("bool", lambda: True, refused(TypeError, r"\[0\] must be an int")),
    ("float_subclass", lambda: RaisingFloat(1.0), refused(TypeError, r"\[0\] must be an int")),
    ("raising_class", RaisingClass, refused(TypeError, r"\[0\] must be an int")),
    ("fake_int", lambda: masquerade(int), refused(TypeError, r"\[0\] must be an int")),
]
COUNT_VALUES = [
    ("int_subclass", lambda: RaisingInt(1), ok(1)),
    ("int_subclass_lying_negative", lambda: LyingInt(-1), refused(ValueError, " must be >= 0")),
    ("bool", lambda: True, refused(TypeError, " must be an int")),
    ("float_subclass", lambda: RaisingFloat(1.0), refused(TypeError, " must be an int")),
    ("raising_class", RaisingClass, refused(TypeError, " must be an int")),
    ("fake_int", lambda: masquerade(int), refused(TypeError, " must be an int")),
]
SUM_VALUES = [
    ("float_subclass", lambda: RaisingFloat(1.5), ok(1.5)),
    ("float_subclass_lying_negative", lambda: LyingFloat(-3.0), refused(ValueError)),
    ("float_subclass_lying_inf", lambda: LyingFloat(math.inf), refused(ValueError)),
    ("float_subclass_nan", lambda: RaisingFloat(math.nan), refused(ValueError)),
    ("int_subclass", lambda: RaisingInt(2), ok(2.0)),
    ("int_subclass_lying_negative", lambda: LyingInt(-2), refused(ValueError)),
    ("int_subclass_huge", lambda: RaisingInt(10**400), refused(ValueError)),
    ("fraction_subclass", lambda: RaisingFraction(3, 2), refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError, " must be a float")),
    ("fake_float", lambda: masquerade(float), refused(TypeError, " must be a float")),
]
COUNTS_CONTAINERS = [
    ("raising_class", RaisingClass, refused(TypeError, " must be a sequence")),
    ("fake_tuple", lambda: masquerade(tuple), refused(TypeError, " must be a sequence")),
    ("raising_iterable", RaisingIterable, refused(TypeError, " could not be read")),
]


def plain_equal(result: NodeHistogram, twin: NodeHistogram) -> None:
    """*result* equals *twin* and holds only exact ints and floats, JSON-equal too."""
    assert twin == result
    assert all(type(b) is float for b in result.bounds)
    assert all(type(c) is int for c in result.counts)
    assert type(result.count) is int
    assert type(result.sum_ms) is float
    assert json.dumps(twin.to_dict()) == json.dumps(result.to_dict())
    assert result == NodeHistogram.from_dict(result.to_dict())


class TestNodeHistogramFields:
    @pytest.mark.parametrize(("label", "make", "expected"), COUNT_ITEMS, ids=ids(COUNT_ITEMS))
    def test_hostile_counts_item(self, label, make, expected):
        """An item of counts acts as its plain twin (stored as a plain int), or is refused."""
        result = outcome_of(expected, "counts", lambda: NodeHistogram((1.0,), (make(), 0), 1, 0.5))
        if result is not None:
            plain_equal(result, NodeHistogram((1.0,), (expected[1], 0), 1, 0.5))  # type: ignore[arg-type]

    @pytest.mark.parametrize(("label", "make", "expected"), COUNT_VALUES, ids=ids(COUNT_VALUES))
    def test_hostile_count(self, label, make, expected):
        """count acts as its plain twin (stored as a plain int, as counts are), or is refused."""
        result = outcome_of(expected, "count", lambda: NodeHistogram((1.0,), (0, 1), make(), 0.5))
        if result is not None:
            plain_equal(result, NodeHistogram((1.0,), (0, 1), expected[1], 0.5))  # type: ignore[arg-type]

    @pytest.mark.parametrize(("label", "make", "expected"), SUM_VALUES, ids=ids(SUM_VALUES))
    def test_hostile_sum_ms(self, label, make, expected):
        """sum_ms acts as its plain twin (stored as a plain float), or is refused."""
        result = outcome_of(expected, "sum_ms", lambda: NodeHistogram((1.0,), (0, 1), 1, make()))
        if result is not None:
            plain_equal(result, NodeHistogram((1.0,), (0, 1), 1, expected[1]))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("label", "make", "expected"), COUNTS_CONTAINERS, ids=ids(COUNTS_CONTAINERS)
    )
    def test_hostile_counts(self, label, make, expected):
        """A hostile counts as a whole is refused, naming counts."""
        outcome_of(expected, "counts", lambda: NodeHistogram((1.0,), make(), 0, 0.0))

    def test_from_dict(self):
        """from_dict() of hostile field values: the plain twin, or refused naming the field."""
        fields = {
            "bounds": [RaisingFloat(1.0)],
            "counts": [RaisingInt(0), LyingInt(2)],
            "count": RaisingInt(2),
            "sum_ms": RaisingFloat(3.5),
        }
        plain_equal(NodeHistogram.from_dict(fields), NodeHistogram((1.0,), (0, 2), 2, 3.5))
        with pytest.raises(ValueError, match="^sum_ms"):
            NodeHistogram.from_dict({**fields, "sum_ms": LyingFloat(-1.0)})
        with pytest.raises(ValueError, match="^count must be >= 0"):
            NodeHistogram.from_dict({**fields, "count": LyingInt(-1)})


# -- quantile() ------------------------------------------------------------------

#: The start of quantile()'s message for a q out of range, after "q".
IN_RANGE = r" must be in \[0, 1\]"

QUANTILES = [
    ("float_subclass", lambda: RaisingFloat(0.5), ok(0.5)),
    (
        "float_subclass_lying_above",
        lambda: LyingFloat(5.0),
        refused(ValueError, IN_RANGE),
    ),
    (
        "float_subclass_lying_below",
        lambda: LyingFloat(-1.0),
        refused(ValueError, IN_RANGE),
    ),
    (
        "float_subclass_nan",
        lambda: RaisingFloat(math.nan),
        refused(ValueError, IN_RANGE),
    ),
    ("int_subclass", lambda: RaisingInt(1), ok(1.0)),
    ("int_subclass_lying", lambda: LyingInt(2), refused(ValueError, IN_RANGE)),
    ("fraction_subclass", lambda: RaisingFraction(1, 4), ok(0.25)),
    ("fraction_subclass_above_one", lambda: RaisingFraction(3, 2), refused(ValueError)),
    ("fraction_unconvertible", lambda: UnconvertibleFraction(1, 4), refused(ValueError)),
    ("real_zero_division", ZeroDivisionReal, refused(ValueError)),
    ("bool", lambda: True, refused(TypeError)),
    ("str_subclass", lambda: HostileStr("0.5"), refused(TypeError)),
    ("raising_class", RaisingClass, refused(TypeError, " must be a real number")),
    ("fake_float", lambda: masquerade(float), refused(TypeError, " must be a real number")),
]


class TestQuantile:
    @pytest.mark.parametrize(("label", "make", "expected"), QUANTILES, ids=ids(QUANTILES))
    def test_hostile_q(self, label, make, expected):
        """q acts as its plain twin, or is refused naming q."""
        h = NodeHistogram(B, (2, 2, 0, 0), 4, 12.0)
        result = outcome_of(expected, "q", lambda: h.quantile(make()))
        if result is not None:
            assert h.quantile(expected[1]) == result  # type: ignore[arg-type]
            assert type(result) is float
        # An empty histogram checks q all the same.
        outcome_of(expected, "q", lambda: NodeHistogram.empty(B).quantile(make()))


# -- merge() and + ------------------------------------------------------------------


class Unchecked(NodeHistogram):
    """A subclass that stores its fields without validating them."""

    def __init__(self, bounds, counts, count, sum_ms):
        for name, value in zip(
            ("bounds", "counts", "count", "sum_ms"), (bounds, counts, count, sum_ms), strict=True
        ):
            object.__setattr__(self, name, value)


class Relabelled(NodeHistogram):
    """A valid subclass whose fields are shadowed by properties that raise."""

    bounds = property(hostile)  # type: ignore[assignment]
    counts = property(hostile)  # type: ignore[assignment]
    count = property(hostile)  # type: ignore[assignment]
    sum_ms = property(hostile)  # type: ignore[assignment]


def relabelled(bounds, counts, count, sum_ms) -> NodeHistogram:
    """A Relabelled holding valid values, stored through NodeHistogram's own slots."""
    h = object.__new__(Relabelled)
    for name, value in zip(
        ("bounds", "counts", "count", "sum_ms"), (bounds, counts, count, sum_ms), strict=True
    ):
        NodeHistogram.__dict__[name].__set__(h, value)
    return h


class TestMerge:
    @pytest.mark.parametrize(
        "make",
        [RaisingClass, lambda: masquerade(NodeHistogram), lambda: masquerade(dict)],
        ids=["raising_class", "fake_histogram", "fake_dict"],
    )
    def test_class_liar(self, make):
        """merge() of an object whose __class__ raises or lies: a TypeError naming other.

        ``+`` of one is unsupported, as of any non-histogram.
        """
        h = NodeHistogram(B, (1, 0, 0, 0), 1, 0.5)
        with pytest.raises(TypeError, match="^other must be a NodeHistogram"):
            h.merge(make())
        with pytest.raises(TypeError, match="unsupported operand"):
            h + make()  # type: ignore[operator]
        assert NodeHistogram(B, (1, 0, 0, 0), 1, 0.5) == h

    @pytest.mark.parametrize(
        ("fields", "error", "match"),
        [
            ((B, (LyingInt(-1), 2, 0, 0), 1, 0.5), ValueError, r"counts\[0\] must be >= 0"),
            ((B, (0, 1, 0, 0), LyingInt(-1), 0.5), ValueError, "count must be >= 0"),
            ((B, (0, 1, 0, 0), 1, LyingFloat(-3.0)), ValueError, "sum_ms"),
            ((B, (0, 1, 0, 0), 1, math.inf), ValueError, "sum_ms"),
            ((B, (0, 1, 0, 0), 1, RaisingClass()), TypeError, "sum_ms"),
            ((B, (0, 1, 0), 1, 0.5), ValueError, "counts must have"),
        ],
        ids=["lying_count_item", "lying_count", "lying_sum", "inf_sum", "raising_sum", "short"],
    )
    def test_unvalidated_subclass(self, fields, error, match):
        """A subclass that skipped validation is validated again: refused naming other, then
        the field."""
        h = NodeHistogram(B, (1, 0, 0, 0), 1, 0.5)
        with pytest.raises(error, match=f"^other is not a valid NodeHistogram: {match}"):
            h.merge(Unchecked(*fields))
        with pytest.raises(error, match=f"^other is not a valid NodeHistogram: {match}"):
            h + Unchecked(*fields)

    def test_unset_subclass(self):
        """A subclass whose __init__ set no field: a TypeError naming other."""

        class Unset(NodeHistogram):
            def __init__(self):
                pass

        with pytest.raises(TypeError, match="^other is not a valid NodeHistogram: a field"):
            NodeHistogram.empty(B).merge(Unset())

    def test_valid_subclass(self):
        """A valid subclass merges as its plain twin: its stored values, read without its code."""
        h = NodeHistogram(B, (1, 0, 0, 0), 1, 0.5)
        other = Unchecked(B, (RaisingInt(0), 2, 0, 0), RaisingInt(2), RaisingFloat(3.0))
        twin = NodeHistogram(B, (0, 2, 0, 0), 2, 3.0)
        plain_equal(h.merge(other), h.merge(twin))
        plain_equal(h + other, h + twin)
        plain_equal(h + relabelled(B, (0, 2, 0, 0), 2, 3.0), h + twin)

    def test_sum_overflow(self):
        """Two valid sums adding up to inf: a ValueError naming other, nothing made."""
        big = NodeHistogram((1.0,), (0, 1), 1, 1.7e308)
        with pytest.raises(ValueError, match="^other cannot be merged: the sum of both sum_ms"):
            big.merge(big)
        with pytest.raises(ValueError, match="^other"):
            big + big
        with pytest.raises(ValueError, match="^other"):
            sum([big, big], NodeHistogram.empty((1.0,)))
        assert NodeHistogram((1.0,), (0, 1), 1, 1.7e308) == big
        # Just below the limit, the sum is kept.
        near = NodeHistogram((1.0,), (0, 1), 1, 8.9e307)
        assert 1.78e308 == (near + near).sum_ms
        assert near + near == NodeHistogram.from_dict((near + near).to_dict())


def test_every_public_method_is_covered() -> None:
    """Every NodeHistogram method that takes arguments is attacked above."""
    taking = {
        name
        for name in dir(NodeHistogram)
        if not name.startswith("_")
        and callable(getattr(NodeHistogram, name))
        and getattr(NodeHistogram, name).__code__.co_argcount > 1
    }
    assert {"empty", "from_dict", "merge", "quantile"} == taking


class TestLargestCounts:
    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            (
                ((1.0,), (2**63, 0), 2**63, 0.5),
                r"^counts\[0\] must be at most 2\*\*63 - 1, got 9223372036854775808$",
            ),
            (
                ((1.0,), (0, 10**5000), 1, 0.5),
                r"^counts\[1\] must be at most .*, got an int of 16,610 bits",
            ),
            (
                ((1.0,), (0, 1), 2**64, 0.5),
                r"^count must be at most 2\*\*63 - 1, got 18446744073709551616$",
            ),
        ],
        ids=["counts item", "huge counts item", "count"],
    )
    def test_refused(self, fields, match):
        """A count above 2**63 - 1 is a ValueError naming the field."""
        with pytest.raises(ValueError, match=match):
            NodeHistogram(*fields)

    def test_largest_kept(self):
        """A count of 2**63 - 1 is kept, and survives JSON."""
        h = NodeHistogram((1.0,), (2**63 - 1, 0), 2**63 - 1, 0.5)
        assert h == NodeHistogram.from_dict(json.loads(json.dumps(h.to_dict())))

    def test_merge_past_the_largest(self):
        """Merging histograms whose counts add up past 2**63 - 1: a ValueError naming other."""
        h = NodeHistogram((1.0,), (2**62, 0), 2**62, 0.5)
        with pytest.raises(
            ValueError,
            match=r"^other cannot be merged: the counts add up to 9223372036854775808, above",
        ):
            h.merge(h)
        with pytest.raises(ValueError, match="^other"):
            h + h
        one_less = NodeHistogram((1.0,), (2**62 - 1, 0), 2**62 - 1, 0.5)
        assert 2**63 - 1 == (h + one_less).count
