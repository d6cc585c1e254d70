from __future__ import annotations

import fractions
import itertools
import json
import math

import attrs
import pytest

from _internals import fake_clock, holding_lock_between_changes
from hypothesis import given
from hypothesis import strategies as st

from nodemetrics import NodeHistogram, NodeMetricsCollector, metered
from nodemetrics._histogram import DEFAULT_BUCKETS_MS, MAX_BOUNDS, check_buckets


B = (1.0, 10.0, 100.0)


def oracle_counts(bounds, values):
    """Per-bucket counts, computed the slow and obvious way."""
    edges = [-math.inf, *bounds, math.inf]
    return tuple(sum(1 for v in values if lo < v <= hi) for lo, hi in itertools.pairwise(edges))


def hist_of(bounds, values):
    c = NodeMetricsCollector(buckets=bounds)
    for v in values:
        c.record_success("n", v)
    return c.get_node_histogram("n")


class TestDefaultBuckets:
    def test_series(self):
        """The default is the 1-2.5-5 series from 0.1 ms to 100 s: 19 bounds."""
        assert 19 == len(DEFAULT_BUCKETS_MS)
        assert 0.1 == DEFAULT_BUCKETS_MS[0]
        assert 100_000.0 == DEFAULT_BUCKETS_MS[-1]
        assert DEFAULT_BUCKETS_MS == check_buckets(DEFAULT_BUCKETS_MS)

    def test_spacing(self):
        """No two adjacent default bounds are more than 2.5x apart."""
        ratios = [b / a for a, b in itertools.pairwise(DEFAULT_BUCKETS_MS)]
        assert max(ratios) <= 2.5

    def test_collector_default(self):
        """A collector's buckets default to DEFAULT_BUCKETS_MS."""
        assert DEFAULT_BUCKETS_MS == NodeMetricsCollector().buckets


class _RaisingFloat(float):
    def __float__(self):
        raise RuntimeError("hostile")


class _RaisingReal(fractions.Fraction):
    def __float__(self):
        raise RuntimeError("hostile")


class _RaisingIterable:
    def __iter__(self):
        yield 1.0
        raise RuntimeError("hostile")


class _BigInt(int):
    def __float__(self):
        raise RuntimeError("hostile")


class TestCheckBuckets:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ([1, 2, 3], (1.0, 2.0, 3.0)),
            ((0.5,), (0.5,)),
            ((x for x in (1, 2.5)), (1.0, 2.5)),
            ([fractions.Fraction(1, 4), 1], (0.25, 1.0)),
            ([_RaisingFloat(2.0), 3], (2.0, 3.0)),
            ([_BigInt(2), 3], (2.0, 3.0)),
            ([1e-300, 1e300], (1e-300, 1e300)),
        ],
    )
    def test_valid(self, value, expected):
        """Real numbers > 0, strictly increasing, become a tuple of plain floats."""
        result = check_buckets(value)
        assert expected == result
        assert tuple is type(result)
        assert all(type(b) is float for b in result)

    @pytest.mark.parametrize(
        ("value", "error"),
        [
            (None, TypeError),
            (5, TypeError),
            (1.5, TypeError),
            ("1,2", TypeError),
            (b"\x01\x02", TypeError),
            ([True, 2], TypeError),
            ([1, "2"], TypeError),
            ([1, None], TypeError),
            ([1, complex(2, 0)], TypeError),
            ([_RaisingReal(1, 2)], TypeError),
            (_RaisingIterable(), TypeError),
            ([], ValueError),
            ((), ValueError),
            ([math.nan], ValueError),
            ([1, math.inf], ValueError),
            ([0, 1], ValueError),
            ([0.0], ValueError),
            ([-1, 1], ValueError),
            ([2, 1], ValueError),
            ([1, 1], ValueError),
            ([1, 2, 2], ValueError),
            ([10**400], ValueError),
            (itertools.count(1), ValueError),
            (range(1, MAX_BOUNDS + 2), ValueError),
        ],
    )
    def test_invalid(self, value, error):
        """Anything else raises, naming buckets."""
        with pytest.raises(error, match="^buckets"):
            check_buckets(value)

    def test_longest(self):
        """MAX_BOUNDS bounds are accepted."""
        assert MAX_BOUNDS == len(check_buckets(range(1, MAX_BOUNDS + 1)))

    def test_name(self):
        """The messages name the argument given."""
        with pytest.raises(ValueError, match="^bounds must not be empty"):
            check_buckets([], "bounds")

    @pytest.mark.parametrize(
        ("value", "error"), [("abc", TypeError), ([], ValueError), ([3, 2], ValueError)]
    )
    def test_collector_refuses(self, value, error):
        """The collector's buckets= is checked, naming buckets."""
        with pytest.raises(error, match="buckets"):
            NodeMetricsCollector(buckets=value)

    def test_collector_option_is_frozen(self):
        """A collector's buckets cannot be changed after construction."""
        c = NodeMetricsCollector(buckets=[1, 2])
        assert (1.0, 2.0) == c.buckets
        with pytest.raises(attrs.exceptions.FrozenAttributeError):
            c.buckets = (3.0,)  # type: ignore[misc]


class TestNodeHistogram:
    def test_fields(self):
        """The fields are stored as given, converted to plain tuples and floats."""
        h = NodeHistogram(bounds=[1, 10], counts=[1, 0, 2], count=3, sum_ms=40)
        assert (1.0, 10.0) == h.bounds
        assert (1, 0, 2) == h.counts
        assert 3 == h.count
        assert 40.0 == h.sum_ms
        assert float is type(h.sum_ms)

    def test_frozen(self):
        """A histogram cannot be changed."""
        h = NodeHistogram.empty(B)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            h.count = 1  # type: ignore[misc]

    def test_empty(self):
        """empty() has the bounds given and nothing counted; the default bounds by default."""
        assert NodeHistogram(B, (0, 0, 0, 0), 0, 0.0) == NodeHistogram.empty(B)
        assert DEFAULT_BUCKETS_MS == NodeHistogram.empty().bounds

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"bounds": []}, ValueError, "^bounds"),
            ({"bounds": [2, 1, 3]}, ValueError, "^bounds"),
            ({"bounds": "abc"}, TypeError, "^bounds"),
            ({"counts": "0000"}, TypeError, "^counts"),
            ({"counts": 4}, TypeError, "^counts"),
            ({"counts": _RaisingIterable()}, TypeError, "^counts"),
            ({"counts": [0, 0, 0, 0.0]}, TypeError, "^counts"),
            ({"counts": [0, 0, 0, True]}, TypeError, "^counts"),
            ({"counts": [0, 0, 0, -1]}, ValueError, "^counts"),
            ({"counts": [0, 0, 0]}, ValueError, "^counts"),
            ({"counts": [0, 0, 0, 0, 0]}, ValueError, "^counts"),
            ({"count": 1}, ValueError, "^count must be sum"),
            ({"count": -1}, ValueError, "^count"),
            ({"count": 0.0}, TypeError, "^count"),
            ({"count": False}, TypeError, "^count"),
            ({"sum_ms": 1.0}, ValueError, "^sum_ms must be 0.0"),
            ({"sum_ms": -1.0}, ValueError, "^sum_ms"),
            ({"sum_ms": math.nan}, ValueError, "^sum_ms"),
            ({"sum_ms": math.inf}, ValueError, "^sum_ms"),
            ({"sum_ms": 10**400}, ValueError, "^sum_ms"),
            ({"sum_ms": "1"}, TypeError, "^sum_ms"),
            ({"sum_ms": None}, TypeError, "^sum_ms"),
            ({"sum_ms": True}, TypeError, "^sum_ms"),
        ],
    )
    def test_invalid(self, kwargs, error, match):
        """Bad fields, alone or together, raise naming the field."""
        fields = {"bounds": B, "counts": (0, 0, 0, 0), "count": 0, "sum_ms": 0.0, **kwargs}
        with pytest.raises(error, match=match):
            NodeHistogram(**fields)

    def test_int_subclass_counts_become_ints(self):
        """Counts of an int subclass are stored as plain ints."""

        class Count(int):
            pass

        h = NodeHistogram(B, [Count(1), 0, 0, 0], 1, 0.5)
        assert all(type(c) is int for c in h.counts)

    def test_cumulative(self):
        """cumulative() gives the running totals, ending with count."""
        h = NodeHistogram(B, (1, 0, 2, 3), 6, 1234.0)
        assert (1, 1, 3, 6) == h.cumulative()
        assert (0, 0, 0, 0) == NodeHistogram.empty(B).cumulative()

    def test_merge(self):
        """merge() and + add counts and sums."""
        a = NodeHistogram(B, (1, 0, 2, 0), 3, 30.5)
        b = NodeHistogram(B, (0, 4, 0, 1), 5, 1000.25)
        expected = NodeHistogram(B, (1, 4, 2, 1), 8, 1030.75)
        assert expected == a.merge(b)
        assert expected == a + b
        assert expected == b + a
        assert a == a + NodeHistogram.empty(B)
        assert expected == sum([a, b], NodeHistogram.empty(B))

    def test_merge_refuses_other_bounds(self):
        """Histograms with different bounds do not merge."""
        with pytest.raises(ValueError, match="^other has different bounds"):
            NodeHistogram.empty(B).merge(NodeHistogram.empty((1.0, 10.0)))
        with pytest.raises(ValueError, match="^other has different bounds"):
            NodeHistogram.empty(B) + NodeHistogram.empty((1.0, 10.0, 1000.0))

    def test_merge_refuses_other_types(self):
        """merge() of something else is a TypeError naming other; + is unsupported."""
        with pytest.raises(TypeError, match="^other must be a NodeHistogram"):
            NodeHistogram.empty(B).merge({"count": 0})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unsupported operand"):
            NodeHistogram.empty(B) + 1  # type: ignore[operator]

    @pytest.mark.parametrize(
        ("counts", "q", "expected"),
        [
            # 4 in (0, 1]: the median is half way up the first bucket.
            ((4, 0, 0, 0), 0.5, 0.5),
            ((4, 0, 0, 0), 1.0, 1.0),
            # 2 in (0, 1], 2 in (1, 10]: p75 is half way through (1, 10].
            ((2, 2, 0, 0), 0.75, 5.5),
            # rank exactly at a bucket's top is that bucket's upper bound.
            ((2, 2, 0, 0), 0.5, 1.0),
            # empty buckets are skipped.
            ((0, 0, 4, 0), 0.25, 10.0 + 90.0 * 0.25),
            # above the top bound: the top bound.
            ((1, 0, 0, 3), 0.9, 100.0),
            # q = 0: the lower edge of the first non-empty bucket.
            ((0, 3, 0, 0), 0.0, 1.0),
            ((3, 0, 0, 0), 0.0, 0.0),
        ],
    )
    def test_quantile(self, counts, q, expected):
        """quantile() interpolates linearly inside the bucket, like histogram_quantile."""
        h = NodeHistogram(B, counts, sum(counts), 1.0)
        assert expected == pytest.approx(h.quantile(q))

    def test_quantile_of_empty(self):
        """An empty histogram has no quantile."""
        assert NodeHistogram.empty(B).quantile(0.5) is None

    @pytest.mark.parametrize(
        ("q", "error"),
        [(-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError), ("0.5", TypeError)],
    )
    def test_quantile_refuses(self, q, error):
        """q must be a real number in [0, 1]."""
        with pytest.raises(error, match="^q must"):
            NodeHistogram.empty(B).quantile(q)

    def test_dict_round_trip(self):
        """from_dict(to_dict()) gives back the histogram, through JSON too."""
        h = NodeHistogram(B, (1, 0, 2, 3), 6, 1234.5)
        assert {
            "bounds": [1.0, 10.0, 100.0],
            "counts": [1, 0, 2, 3],
            "count": 6,
            "sum_ms": 1234.5,
        } == h.to_dict()
        assert h == NodeHistogram.from_dict(h.to_dict())
        assert h == NodeHistogram.from_dict(json.loads(json.dumps(h.to_dict())))

    @pytest.mark.parametrize(
        ("mapping", "error", "match"),
        [
            ([1, 2], TypeError, "^mapping"),
            ({"bounds": [1], "counts": [0, 0], "count": 0}, ValueError, "missing.*sum_ms"),
            (
                {"bounds": [1], "counts": [0, 0], "count": 0, "sum_ms": 0, "p99": 1},
                ValueError,
                "no field.*p99",
            ),
            (
                {"bounds": [1], "counts": [0, 1], "count": 0, "sum_ms": 0},
                ValueError,
                "^count",
            ),
        ],
    )
    def test_from_dict_refuses(self, mapping, error, match):
        """from_dict() refuses non-mappings, missing, unknown and invalid fields."""
        with pytest.raises(error, match=match):
            NodeHistogram.from_dict(mapping)

    def test_from_dict_reads_hostile_input_as_its_plain_twin_or_refuses_it(self):
        """Field names given as a str subclass whose hash and equality raise are read as
        plain strs; a mapping whose items() raises, or a non-mapping whose __class__ claims
        to be a dict, is a TypeError; no hostile code runs."""

        class Name(str):
            __slots__ = ()

            def __hash__(self):
                raise AssertionError("hostile __hash__ ran")

            def __eq__(self, other):
                raise AssertionError("hostile __eq__ ran")

        class Unreadable(dict):
            def items(self):
                raise RuntimeError("no")

        class Liar:
            __class__ = property(lambda self: dict)  # type: ignore[assignment]

        plain = NodeHistogram((1.0,), (1, 0), 1, 0.5)
        pairs = [(Name(k), v) for k, v in plain.to_dict().items()]

        class Pairs(dict):
            def items(self):
                return pairs

        assert plain == NodeHistogram.from_dict(Pairs())
        with pytest.raises(TypeError, match="could not be read"):
            NodeHistogram.from_dict(Unreadable(plain.to_dict()))
        with pytest.raises(TypeError, match="^mapping must be a mapping, got Liar"):
            NodeHistogram.from_dict(Liar())

    @given(
        bounds=st.lists(
            st.floats(min_value=0.001, max_value=1e6), min_size=1, max_size=8, unique=True
        ).map(sorted),
        values=st.lists(st.floats(min_value=0.0, max_value=2e6), max_size=60),
        q=st.floats(min_value=0.0, max_value=1.0),
    )
    def test_against_oracle(self, bounds, values, q):
        """Bucketing, totals and quantile estimates agree with a plain-Python oracle."""
        h = hist_of(bounds, values)
        assert oracle_counts(h.bounds, values) == h.counts
        assert len(values) == h.count
        assert math.fsum(values) == pytest.approx(h.sum_ms)
        if not values:
            assert h.quantile(q) is None
            return
        # The estimate lies inside the bucket that holds the exact quantile
        # (the sample of rank ceil(q * n), or the smallest for q = 0).
        exact = sorted(values)[max(math.ceil(q * len(values)), 1) - 1]
        i = next((i for i, b in enumerate(h.bounds) if exact <= b), len(h.bounds))
        lower = h.bounds[i - 1] if i else 0.0
        upper = h.bounds[i] if i < len(h.bounds) else h.bounds[-1]
        estimate = h.quantile(q)
        assert lower - 1e-9 * upper <= estimate <= upper * (1 + 1e-9)

    @given(
        a=st.lists(st.floats(min_value=0.0, max_value=300.0), max_size=30),
        b=st.lists(st.floats(min_value=0.0, max_value=300.0), max_size=30),
    )
    def test_merge_is_the_histogram_of_both(self, a, b):
        """Merging the histograms of two runs gives the histogram of both runs' samples."""
        merged = hist_of(B, a) + hist_of(B, b)
        both = hist_of(B, a + b)
        assert both.counts == merged.counts
        assert both.count == merged.count
        assert both.sum_ms == pytest.approx(merged.sum_ms)


class TestCollectorHistogram:
    def test_unknown_node_is_empty(self):
        """An unknown node has the empty histogram with the collector's bounds."""
        c = NodeMetricsCollector(buckets=B)
        assert NodeHistogram.empty(B) == c.get_node_histogram("nope")

    @pytest.mark.parametrize(("bad", "error"), [(3, TypeError), ("", ValueError)])
    def test_bad_node(self, bad, error):
        """The node name is checked."""
        with pytest.raises(error, match="node"):
            NodeMetricsCollector().get_node_histogram(bad)

    def test_records(self):
        """Successes and failures are counted in the bucket of their duration; bounds inclusive."""
        c = NodeMetricsCollector(buckets=B)
        for v in (0.0, 1.0, 1.0000001, 10.0, 99.0, 100.0, 100.5, 5000.0):
            c.record_success("n", v)
        c.record_failure("n", 3.0, ValueError("bad"))
        c.record_failure("n", 200.0, category="timeout")
        c.record_retry("n")
        c.record_cancellation("n")
        h = c.get_node_histogram("n")
        assert (2, 3, 2, 3) == h.counts
        assert 10 == h.count
        assert math.fsum((0, 1, 1.0000001, 10, 99, 100, 100.5, 5000, 3, 200)) == pytest.approx(
            h.sum_ms
        )
        m = c.get_node_metrics("n")
        assert m.total_executions == h.count

    def test_negative_duration_is_zero(self):
        """A negative duration is counted as 0.0, in the first bucket."""
        c = NodeMetricsCollector(buckets=B)
        c.record_success("n", -5.0)
        assert (1, 0, 0, 0) == c.get_node_histogram("n").counts

    def test_track(self):
        """track() counts successes (batched past the first) and failures exactly."""
        durations = [0.5] + [5.0] * 40 + [50.0] * 3 + [500.0]
        c = NodeMetricsCollector(buckets=B)
        with fake_clock([round(d * 1e6) for d in durations]):
            for _ in range(44):
                with c.track("n"):
                    pass
            with pytest.raises(KeyError), c.track("n"):
                raise KeyError
        h = c.get_node_histogram("n")
        assert (1, 40, 3, 1) == h.counts
        assert 0.5 + 200.0 + 150.0 + 500.0 == pytest.approx(h.sum_ms)

    async def test_metered(self):
        """metered() counts sync and async calls, successes and failures, exactly."""
        durations = [2.0] * 35 + [20.0, 20.0, 2000.0]
        c = NodeMetricsCollector(buckets=B)

        @metered("n", collector=c)
        def sync_node(fail):
            if fail:
                raise ValueError(fail)

        @metered("n", collector=c)
        async def async_node():
            return 1

        with fake_clock([round(d * 1e6) for d in durations]):
            for _ in range(35):
                sync_node(None)
            await async_node()
            await async_node()
            with pytest.raises(ValueError, match="boom"):
                sync_node("boom")
        h = c.get_node_histogram("n")
        assert (0, 35, 2, 1) == h.counts
        assert 70.0 + 40.0 + 2000.0 == pytest.approx(h.sum_ms)

    def test_queued_recordings_are_counted(self):
        """Recordings queued while the lock was held are in the next histogram."""
        c = NodeMetricsCollector(buckets=B)
        with holding_lock_between_changes(c):
            c.record_success("n", 5.0)
            c.record_failure("n", 500.0)
        assert (0, 1, 0, 1) == c.get_node_histogram("n").counts

    def test_reset_empties(self):
        """A reset empties a node's histogram; others keep theirs."""
        c = NodeMetricsCollector(buckets=B)
        c.record_success("n", 5.0)
        c.record_success("m", 5.0)
        c.reset_node_metrics("n")
        assert NodeHistogram.empty(B) == c.get_node_histogram("n")
        assert 1 == c.get_node_histogram("m").count
        c.reset_node_metrics()
        assert {} == c.get_all_node_histograms()

    def test_sum_never_decreases(self):
        """The issue's sequence: the sum never goes down between reads."""
        c = NodeMetricsCollector()
        sums = []
        for v in [1.1, 2.2] + [0.0] * 10:
            c.record_success("n", v)
            sums.append(c.get_node_histogram("n").sum_ms)
        assert sums == sorted(sums)
        assert 1.1 + 2.2 == sums[-1]

    @given(values=st.lists(st.floats(min_value=0.0, max_value=1e5), min_size=1, max_size=80))
    def test_sum_never_decreases_property(self, values):
        """Whatever the durations, successive sums never decrease."""
        c = NodeMetricsCollector()
        previous = 0.0
        for v in values:
            with holding_lock_between_changes(c):  # queued, then applied by the read
                c.record_success("n", v)
            current = c.get_node_histogram("n").sum_ms
            assert previous <= current
            previous = current

    def test_read_is_cached_until_a_change(self):
        """An unchanged node gives the same histogram object; a change, a new one."""
        c = NodeMetricsCollector(buckets=B)
        c.record_success("n", 5.0)
        first = c.get_node_histogram("n")
        assert first is c.get_node_histogram("n")
        c.record_success("n", 5.0)
        assert (0, 2, 0, 0) == c.get_node_histogram("n").counts

    def test_all_and_read_all_agree(self):
        """get_all_node_histograms() and _read_all() agree with each other and the snapshots."""
        c = NodeMetricsCollector(buckets=B)
        c.record_success("a", 0.5)
        c.record_failure("b", 50.0)
        c.record_retry("c")
        histograms = c.get_all_node_histograms()
        assert {"a", "b", "c"} == set(histograms)
        assert (1, 0, 0, 0) == histograms["a"].counts
        assert (0, 0, 1, 0) == histograms["b"].counts
        assert NodeHistogram.empty(B) == histograms["c"]
        read = c._read_all()
        for node, (snapshot, histogram) in read.items():
            assert c.get_node_metrics(node) == snapshot
            assert histograms[node] == histogram
            assert snapshot.total_executions == histogram.count
            assert snapshot.avg_execution_ms * snapshot.total_executions == pytest.approx(
                histogram.sum_ms
            )


class TestNegativeZero:
    def test_sum_ms_stored_as_zero(self):
        """A sum_ms of -0.0 is kept as 0.0, so that no histogram shows "-0.0"."""
        assert "0.0" == repr(NodeHistogram((1.0,), (0, 0), 0, -0.0).sum_ms)
        assert "0.0" == repr(NodeHistogram((1.0,), (1, 0), 1, -0.0).sum_ms)
        assert "-" not in json.dumps(
            NodeHistogram.from_dict(
                {"bounds": [1.0], "counts": [1, 0], "count": 1, "sum_ms": -0.0}
            ).to_dict()
        )
