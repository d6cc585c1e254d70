from __future__ import annotations

import random
import statistics

from collections import deque

import pytest

from _internals import written_in_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodemetrics import NodeMetricsCollector, _window
from nodemetrics._window import RollingWindow


def oracle(values: list[float]) -> list[float | None]:
    """p50/p90/p99 by the standard library."""
    if not values:
        return [None, None, None]
    if len(values) == 1:
        return [values[0]] * 3
    q = statistics.quantiles(values, n=100, method="inclusive")
    return [q[49], q[89], q[98]]


def close(expected: list[float | None], actual: list[float | None]) -> bool:
    return all(
        (e is None and a is None) or (e is not None and a == pytest.approx(e, rel=1e-9, abs=1e-9))
        for e, a in zip(expected, actual, strict=True)
    )


values = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
# An action is a sample to add, a list of successes to extend by, or a read
# (which catches the sorted chunks up with everything since the last one).
actions = st.lists(
    st.just("read") | st.tuples(values, st.booleans()) | st.lists(values, max_size=90),
    max_size=300,
)
# Few distinct values, so that equal samples are common.
ties = st.integers(0, 6).map(float)


def fresh(size: int, samples: list[float]) -> RollingWindow:
    """A window that was given *samples* and never read: its first read sorts afresh."""
    window = RollingWindow(size)
    for value in samples:
        window.add(value, False)
    return window


def add_then_read(window: RollingWindow, model: deque[float], value: float) -> None:
    """Add a sample, read at once, and check the read against the model."""
    window.add(value, False)
    model.append(value)
    read = window.p50_p90_p99()
    assert close(oracle(list(model)), list(read))
    # A fresh window finds the ranks afresh, without the look-ups that
    # p50_p90_p99() moved along: the very same floats.
    assert fresh(window._size, list(model)).p50_p90_p99() == read


@pytest.fixture(params=[1024, 3, 1], ids=["one-chunk", "many-chunks", "tiny-chunks"])
def load(request, monkeypatch):
    """Run each test with the real chunk size and with tiny chunks that split and empty."""
    monkeypatch.setattr(_window, "_LOAD", request.param)
    return request.param


class TestRollingWindow:
    # The fixture only patches a constant, the same for every example.
    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(size=st.integers(1, 40), script=actions)
    def test_matches_oracle(self, load, size, script):
        """Percentiles, length and failure count match a plain model at every read."""
        window = RollingWindow(size, count_failures=True)
        model: deque[tuple[float, bool]] = deque(maxlen=size)
        for action in [*script, "read"]:
            if isinstance(action, str):
                samples = [v for v, _ in model]
                read = window.p50_p90_p99()
                assert close(oracle(samples), list(read))
                assert fresh(size, samples).p50_p90_p99() == read
                assert read == window.p50_p90_p99()  # a second read changes nothing
                assert len(model) == len(window)
                assert sum(f for _, f in model) == window.failures
            elif isinstance(action, list):
                window.extend(action)
                model.extend((v, False) for v in action)
            else:
                window.add(*action)
                model.append(action)

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(size=st.integers(1, 40), samples=st.lists(ties | values, max_size=150))
    def test_read_after_every_add(self, load, size, samples):
        """Reading after each sample (one in, one out once full) stays exact."""
        window = RollingWindow(size)
        model: deque[float] = deque(maxlen=size)
        for value in samples:
            add_then_read(window, model, value)

    def test_empty(self, load):
        """An empty window has no percentiles."""
        assert (None, None, None) == RollingWindow(5).p50_p90_p99()
        assert 0 == len(RollingWindow(5))

    def test_single_sample(self, load):
        """With one sample every percentile is that sample."""
        w = RollingWindow(5)
        w.add(7.25, False)
        assert (7.25, 7.25, 7.25) == w.p50_p90_p99()

    def test_linear_interpolation(self, load):
        """The documented formula: h=(n-1)p/100 between the closest ranks."""
        w = RollingWindow(100)
        for v in [10.0, 20.0, 30.0, 40.0]:
            w.add(v, False)
        # n=4: h(50)=1.5 -> 25; h(90)=2.7 -> 37; h(99)=2.97 -> 39.7
        assert (25.0, 37.0, pytest.approx(39.7)) == w.p50_p90_p99()

    def test_evicts_oldest(self, load):
        """Past its size the window forgets the oldest samples first."""
        w = RollingWindow(3)
        for v in [100.0, 1.0, 2.0, 3.0]:
            w.add(v, False)
        assert (2.0, 2.8, pytest.approx(2.98)) == w.p50_p90_p99()

    def test_stale_rebuild_at_scale(self, load):
        """Many adds between reads (the sort-afresh path) stay exact."""
        w = RollingWindow(1000)
        data = [float((i * 7919) % 1009) for i in range(5000)]
        for i, v in enumerate(data):
            w.add(v, False)
            if i in (10, 2500):
                w.p50_p90_p99()
        assert close(oracle(data[-1000:]), list(w.p50_p90_p99()))

    @pytest.mark.parametrize("k", [2, 37, 249])
    def test_many_notes_merged_across_chunks(self, load, k):
        """k samples in and out between reads (fewer than a quarter): exact at every read."""
        rng = random.Random(k)  # noqa: S311 -- reproducible test data
        w = RollingWindow(1000)
        model: deque[float] = deque(maxlen=1000)
        for _ in range(12):
            for _ in range(k):
                value = float(rng.randint(0, 50)) if rng.random() < 0.3 else rng.random() * 100
                w.add(value, False)
                model.append(value)
            read = w.p50_p90_p99()
            assert close(oracle(list(model)), list(read))
            assert fresh(1000, list(model)).p50_p90_p99() == read

    @pytest.mark.parametrize("extra", [0, 1])
    @pytest.mark.parametrize("how", ["add", "extend"])
    @pytest.mark.parametrize("filling", [False, True], ids=["full", "filling"])
    @pytest.mark.parametrize("size", [100, 20])
    def test_notes_up_to_a_quarter_and_sorts_afresh_past_it(self, size, filling, how, extra):
        """Notes up to a quarter of the window (at least 8) are merged; one more sorts afresh."""
        limit = max(8, size // 4)
        w = RollingWindow(size)
        w.extend([float(i % 7) for i in range(size // 2 if filling else size)])
        w.p50_p90_p99()
        came = [float(i % 5) + 0.5 for i in range(limit + extra)]
        if how == "add":
            for value in came:
                w.add(value, False)
        else:
            w.extend(came)
        assert w._stale == bool(extra)
        assert len(w._new) == (0 if extra else limit)
        assert close(oracle(w.latest(size)), list(w.p50_p90_p99()))

    def test_ranks_of_every_length_with_an_empty_cache(self, monkeypatch):
        """
        Every window length's ranks, computed afresh (the cache emptied, so
        that no earlier test's lengths hide a wrong rank), give the oracle's
        percentiles; and the cache then holds exactly those ranks.
        """
        monkeypatch.setattr(_window, "_RANKS", {})
        for n in range(1, 260):
            samples = [float(v * v % 1013) for v in range(n)]  # distinct enough
            assert close(oracle(samples), list(fresh(n, samples).p50_p90_p99()))
            assert _window._ranks(n) == _window._RANKS[n]

    def test_rank_cache_is_bounded(self, monkeypatch):
        """Ranks are kept for a bounded number of window lengths, right either way."""
        monkeypatch.setattr(_window, "_RANKS", {})
        monkeypatch.setattr(_window, "_RANKS_KEPT", 2)
        for n in (3, 4, 5):
            w = fresh(n, [float(v) for v in range(n)])
            assert close(oracle([float(v) for v in range(n)]), list(w.p50_p90_p99()))
        assert {3, 4} == set(_window._RANKS)

    def test_failures_not_counted_by_default(self, load):
        """Without count_failures the window keeps no outcome flags."""
        w = RollingWindow(3)
        w.add(1.0, True)
        assert 0 == w.failures


class TestChunks:
    def test_emptied_chunk_is_removed(self, monkeypatch):
        """Evicting every sample of a chunk removes the chunk and its maximum."""
        monkeypatch.setattr(_window, "_LOAD", 1)
        w = fresh(3, [1.0, 2.0, 3.0])
        assert (2.0, 2.8, pytest.approx(2.98)) == w.p50_p90_p99()
        for v in [4.0, 5.0, 6.0]:
            w.add(v, False)
        assert (5.0, 5.8, pytest.approx(5.98)) == w.p50_p90_p99()
        assert [4.0, 5.0, 6.0] == [v for chunk in w._chunks for v in chunk]
        assert len(w._chunks) == len(w._maxes)
        assert [c[-1] for c in w._chunks] == w._maxes

    @pytest.mark.parametrize("k", [1, 7])
    def test_chunks_never_exceed_twice_the_load(self, monkeypatch, k):
        """Reading after every k samples, no chunk is ever empty or over 2 * _LOAD long."""
        monkeypatch.setattr(_window, "_LOAD", 3)
        rng = random.Random(k)  # noqa: S311 -- reproducible test data
        w = RollingWindow(40)
        for _ in range(300):
            for _ in range(k):
                w.add(rng.random(), False)
            w.p50_p90_p99()
            assert all(1 <= len(chunk) <= 6 for chunk in w._chunks)
            if len(w._chunks) > 1:  # a lone chunk's maximum may lag; nothing reads it
                assert [chunk[-1] for chunk in w._chunks] == w._maxes

    @pytest.mark.parametrize("load", [1, 2, 3])
    def test_moved_look_ups_stay_exact(self, monkeypatch, load):
        """Seeded runs reading after every sample move ranks across chunks every way."""
        monkeypatch.setattr(_window, "_LOAD", load)
        for seed in range(120):
            rng = random.Random(seed)  # noqa: S311 -- reproducible test data
            size = rng.randint(2, 30)
            w = RollingWindow(size)
            model: deque[float] = deque(maxlen=size)
            for _ in range(rng.randint(1, 100)):
                value = float(rng.randint(0, 8)) if rng.random() < 0.5 else rng.random() * 10
                add_then_read(w, model, value)


class TestUpkeep:
    def test_repair_keeps_a_consistent_window(self):
        """repair() on a consistent window keeps its samples, order and failure count."""
        w = RollingWindow(5, count_failures=True)
        outcomes = [(float(v), v % 2 == 1) for v in range(1, 9)]
        for value, failed in outcomes:
            w.add(value, failed)
        w.repair()
        kept = outcomes[-5:]
        assert sum(failed for _, failed in kept) == w.failures
        assert [v for v, _ in kept] == w.latest(5)
        assert close(oracle([v for v, _ in kept]), list(w.p50_p90_p99()))
        w.add(9.0, True)  # evicts 4.0, a success
        assert [5.0, 6.0, 7.0, 8.0, 9.0] == w.latest(5)
        assert 3 == w.failures

    def test_reset_forgets_every_sample(self):
        """After reset() the window is empty, counts no failure, and refills from the start."""
        w = RollingWindow(3, count_failures=True)
        for v in [1.0, 2.0, 3.0, 4.0]:
            w.add(v, True)
        w.reset()
        assert (0, 0) == (len(w), w.failures)
        assert (None, None, None) == w.p50_p90_p99()
        assert [] == w.latest(3)
        for v, failed in [(5.0, True), (6.0, False), (7.0, False), (8.0, False)]:
            w.add(v, failed)
        assert [6.0, 7.0, 8.0] == w.latest(3)  # 5.0, the oldest, went first
        assert 0 == w.failures
        assert close(oracle([6.0, 7.0, 8.0]), list(w.p50_p90_p99()))

    def test_newest(self):
        """newest() is 0.0 when empty, else the last sample added, before and after wrapping."""
        w = RollingWindow(4)
        assert 0.0 == w.newest()
        for v in [3.0, 1.0, 2.0]:
            w.add(v, False)
        assert 2.0 == w.newest()
        w.extend([5.0, 4.0, 6.0])
        assert 6.0 == w.newest()

    def test_added_counts_modulo_the_size_once_full(self):
        """added() counts the samples added while the ring fills, then counts modulo the size."""
        w = RollingWindow(3)
        counts = []
        for v in range(1, 8):
            w.add(float(v), False)
            counts.append(w.added())
        assert [n if n < 3 else n % 3 for n in range(1, 8)] == counts

    # Failures at 1.0, 3.0 and 4.0: the first two samples keep one of them.
    @pytest.mark.parametrize("added", [0, 2])
    def test_disown_drops_the_later_samples_of_a_ring_not_yet_full(self, added):
        """disown(k) on a ring not yet full keeps its first k samples and their failures only."""
        outcomes = [(1.0, True), (2.0, False), (3.0, True), (4.0, True)]
        w = RollingWindow(10, count_failures=True)
        for value, failed in outcomes:
            w.add(value, failed)
        w.disown(added)
        kept = outcomes[:added]
        assert [v for v, _ in kept] == w.latest(10)
        assert (added, sum(f for _, f in kept)) == (w.added(), w.failures)
        assert close(oracle([v for v, _ in kept]), list(w.p50_p90_p99()))

    def test_disown_makes_a_full_rings_later_samples_its_oldest(self):
        """disown(k) on a full ring makes the samples after the first k the next to be evicted."""
        w = RollingWindow(3)
        for v in [1.0, 2.0, 3.0, 4.0, 5.0]:
            w.add(v, False)
        w.disown(4)  # 5.0 took 2.0's slot; it is now the oldest
        assert (4.0, 4 % 3) == (w.newest(), w.added())
        w.add(6.0, False)
        assert [3.0, 4.0, 6.0] == w.latest(3)

    @pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
    def test_latest(self, k):
        """latest(k) is the k newest samples, oldest first, whether or not the ring wrapped."""
        model: deque[float] = deque(maxlen=4)
        w = RollingWindow(4)
        for v in [3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 0.5]:
            assert list(model)[len(model) - min(k, len(model)) :] == w.latest(k)
            w.add(v, False)
            model.append(v)
        assert list(model)[len(model) - min(k, len(model)) :] == w.latest(k)

    @pytest.mark.parametrize("size", [1, 5, 1024, 2500])
    def test_stretches(self, size):
        """add() ends a stretch at exactly every 1,024th slot and the ring's last, each round."""
        w = RollingWindow(size)
        for i in range(2 * size + 1030):
            slot = i % size
            ends = slot == size - 1 or (slot + 1) % _window.STRETCH == 0
            assert ends == w.add(float(i), False), i


class TestWrittenInLine:
    """The window tells record_success() to write its ring in line exactly when it is full
    and keeps no failure flags, however it got there."""

    def test_from_the_add_that_fills_the_ring(self):
        """Not while the ring fills; from the add that fills it on."""
        w = RollingWindow(3)
        seen = []
        for v in range(5):
            seen.append(written_in_line(w))
            w.add(float(v), False)
        seen.append(written_in_line(w))
        assert [False, False, False, True, True, True] == seen

    def test_from_the_extend_that_fills_the_ring(self):
        """An extend that leaves room does not; the one that fills the ring does."""
        w = RollingWindow(5)
        w.extend([1.0, 2.0])
        assert not written_in_line(w)
        w.extend([3.0, 4.0, 5.0, 6.0])
        assert written_in_line(w)
        w.extend([7.0])
        assert written_in_line(w)
        assert [3.0, 4.0, 5.0, 6.0, 7.0] == w.latest(5)

    def test_never_when_it_counts_failures(self):
        """A ring with failure flags is never written in line, full or repaired."""
        w = RollingWindow(2, count_failures=True)
        w.add(1.0, False)
        w.extend([2.0, 3.0])
        w.add(4.0, True)
        assert not written_in_line(w)
        w.repair()
        assert not written_in_line(w)

    def test_not_after_a_reset_until_full_again(self):
        """A reset empties the ring: not written in line until it is full again."""
        w = RollingWindow(2)
        w.extend([1.0, 2.0])
        assert written_in_line(w)
        w.reset()
        assert not written_in_line(w)
        w.add(3.0, False)
        assert not written_in_line(w)
        w.add(4.0, False)
        assert written_in_line(w)
        assert [3.0, 4.0] == w.latest(2)

    def test_repair_tells_it_as_it_finds_it(self):
        """A repaired ring is written in line if it is full, and not if it is not."""
        full = RollingWindow(2)
        full.extend([1.0, 2.0, 3.0])
        full.repair()
        assert written_in_line(full)
        partial = RollingWindow(3)
        partial.extend([1.0, 2.0])
        partial.repair()
        assert not written_in_line(partial)


# A window that saves its leavers: the smallest such and one with a short
# last stretch.
saving_sizes = st.sampled_from([_window._SAVED_FROM, _window._SAVED_FROM + 700])
# Runs of adds long enough to cross stretches and the stale rule's quarter.
runs = st.tuples(st.integers(1, 1500), st.integers(0, 2**32), st.booleans())
saving_actions = st.lists(
    st.just("read")
    | st.just("repair")
    | st.just("disown")
    | st.just("reset")
    | runs
    | st.lists(values, max_size=1500),
    max_size=25,
)


def run_of(count: int, seed: int, failing: bool) -> list[tuple[float, bool]]:
    """*count* samples, many of them ties, some failures if *failing*."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    return [
        (
            float(rng.randint(0, 40)) if rng.random() < 0.3 else rng.random() * 100,
            failing and rng.random() < 0.3,
        )
        for _ in range(count)
    ]


class TestSavedLeavers:
    # The fixture only patches a constant, the same for every example.
    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(size=saving_sizes, failures=st.booleans(), script=saving_actions)
    def test_matches_oracle(self, load, size, failures, script):
        """A large window, full or filling, read after runs of any length, stays exact."""
        window = RollingWindow(size, count_failures=failures)
        for action in [*script, "read"]:
            if action == "read":
                samples = window.latest(size)
                read = window.p50_p90_p99()
                assert close(oracle(samples), list(read))
                assert fresh(size, samples).p50_p90_p99() == read
                assert read == window.p50_p90_p99()
            elif action == "repair":
                window.repair()
            elif action == "disown":
                window.disown(window.added() // 2)
            elif action == "reset":
                window.reset()
            elif isinstance(action, list):
                window.extend(action)
            else:
                for value, failed in run_of(*action):
                    window.add(value, failed)

    def test_collector_records_and_reads(self):
        """record_success() written out in line saves the leavers as add() does."""
        size = _window._SAVED_FROM + 300
        collector = NodeMetricsCollector(window_size=size)
        model: deque[float] = deque(maxlen=size)
        for count in [size, 1, 100, 1500, 7, 2 * size, 600, 1]:
            for value, _ in run_of(count, count, False):
                collector.record_success("n", value + 1.0)
                model.append(value + 1.0)
            m = collector.get_node_metrics("n")
            assert close(oracle(list(model)), [m.p50, m.p90, m.p99])

    def test_saves_once_full(self):
        """A large window notes samples while it fills, and saves its leavers once full."""
        size = _window._SAVED_FROM
        w = RollingWindow(size)
        for i in range(size - 1):
            w.add(float(i), False)
            if i % 400 == 0:
                w.p50_p90_p99()
        assert (w._notes, w._saving is not None) == (True, False)
        w.add(0.5, False)
        assert (w._notes, w._saving is not None) == (False, True)
        assert close(oracle(w.latest(size)), list(w.p50_p90_p99()))
        # Read after one sample in and one out, while the window is still one
        # chunk (its maximum not kept): 1e9 leaves 0.0 its chunk's maximum.
        assert 1 == len(w._chunks)
        for value in [0.25, 1e9, 0.0, 3.0]:
            w.add(value, False)
            assert not w._gone
            assert close(oracle(w.latest(size)), list(w.p50_p90_p99()))

    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_read_every_few_samples_with_several_chunks(self, k):
        """A window that saves its leavers, in several chunks, read every k samples stays exact."""
        size = _window._SAVED_FROM + 300
        w = RollingWindow(size)
        model: deque[float] = deque(maxlen=size)
        for value, _ in run_of(size, 0, False):
            w.add(value, False)
            model.append(value)
        w.p50_p90_p99()
        assert len(w._chunks) > 1
        assert w._saving is not None
        for seed in range(1, 31):
            for value, _ in run_of(k, seed, False):
                w.add(value, False)
                model.append(value)
            assert close(oracle(list(model)), list(w.p50_p90_p99()))

    def test_saves_from_a_head_inside_a_stretch(self):
        """Sorted afresh with its head inside a stretch, a window saves the rest of that stretch."""
        size = _window._SAVED_FROM * 2
        w = RollingWindow(size)
        model: deque[float] = deque(maxlen=size)
        for value, _ in run_of(size + 300, 1, False):
            w.add(value, False)
            model.append(value)
        w.p50_p90_p99()  # stale since it filled: sorts afresh, then saves
        assert (300, True) == (w._head, w._saving is not None)
        for value, _ in run_of(2 * _window.STRETCH, 2, False):
            w.add(value, False)
            model.append(value)
            if not w._head % 100:
                assert close(oracle(list(model)), list(w.p50_p90_p99()))
        assert w._saving is not None

    @pytest.mark.parametrize("extra", [0, 1])
    def test_sorts_afresh_past_a_quarter_read_by_read(self, extra):
        """More than a quarter of the window since the last read sorts afresh; a quarter merges."""
        size = _window._SAVED_FROM * 2
        w = RollingWindow(size)
        w.extend([float(i % 97) for i in range(size)])
        w.p50_p90_p99()
        for i in range(size // 4 + extra):
            w.add(float(i % 89) + 0.5, False)
        # What the read does first: the notes, or none and stale.
        w._collect()
        assert w._stale == bool(extra)
        assert len(w._new) == (0 if extra else size // 4)
        assert close(oracle(w.latest(size)), list(w.p50_p90_p99()))

    def test_goes_stale_at_a_stretch_past_a_quarter(self):
        """A window that saves its leavers stops saving them at the first stretch past a quarter."""
        size = _window._SAVED_FROM * 2
        w = RollingWindow(size)
        w.extend([float(i % 97) for i in range(size)])
        w.p50_p90_p99()
        most = 0
        for i in range(size // 4 + _window.STRETCH):
            w.add(float(i % 89), False)
            if w._saving is not None:
                most = max(most, len(w._saving.old))
        # README "Bounded": the copy never holds more than a quarter of the
        # window and a stretch.
        assert size // 4 < most <= size // 4 + _window.STRETCH
        assert w._stale
        assert w._saving is None
        assert close(oracle(w.latest(size)), list(w.p50_p90_p99()))
        assert w._saving is not None

    @pytest.mark.parametrize("count", [1, 300, 600])
    def test_extend_saves_stretch_by_stretch(self, load, count):
        """Batches of successes on a window that saves its leavers, round the ring, stay exact."""
        size = _window._SAVED_FROM + 700
        w = RollingWindow(size, count_failures=True)
        model: deque[tuple[float, bool]] = deque(maxlen=size)
        for value, failed in run_of(size, count, True):
            w.add(value, failed)
            model.append((value, failed))
        w.p50_p90_p99()
        for seed in range(min(3 * size // count + 2, 40)):
            batch = [value for value, _ in run_of(count, seed, False)]
            w.extend(batch)
            model.extend((value, False) for value in batch)
            assert w._saving is not None
            samples = [value for value, _ in model]
            read = w.p50_p90_p99()
            assert close(oracle(samples), list(read))
            assert fresh(size, samples).p50_p90_p99() == read
            assert sum(failed for _, failed in model) == w.failures
