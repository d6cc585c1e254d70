"""Guarantee 3: recording re-entrantly (callbacks, finalizers, signals) never deadlocks."""

from __future__ import annotations

import gc
import signal
import statistics
import sys
import weakref

from typing import ClassVar

import pytest

from _internals import batch_of, holding_lock, holding_lock_between_changes, lock_held, window_of

from nodemetrics import NodeMetricsCollector, _node


def test_recording_from_threshold_callbacks():
    """A threshold callback that records (and reads) loses no count."""
    calls = []

    def on_rate(node, rate):
        c.record_retry(node)
        c.record_success("from-callback", 1.0)
        calls.append(c.get_node_metrics(node).total_executions)

    c = NodeMetricsCollector(
        window_size=4, min_samples=2, failure_rate_threshold=0.5, on_failure_rate_threshold=on_rate
    )
    for i in range(1_000):
        if i % 8 < 4:
            c.record_failure("n", 1.0)
        else:
            c.record_success("n", 1.0)
    assert calls
    assert len(calls) == c.get_node_metrics("n").retry_count
    assert len(calls) == c.get_node_metrics("from-callback").success_count
    assert 1_000 == c.get_node_metrics("n").total_executions


class _Recorder:
    """Garbage in a reference cycle whose __del__ records into the collector."""

    under_lock: ClassVar[list[bool]] = []

    def __init__(self, c):
        self.c = c
        self.cycle = self

    def __del__(self):
        _Recorder.under_lock.append(lock_held(self.c))
        self.c.record_success("from-del", 1.0)


@pytest.fixture
def gc_on_every_allocation():
    old = gc.get_threshold()
    # A young-generation collection on every allocation, rarely an old one:
    # the garbage here is young, and full collections would only be slow.
    gc.set_threshold(1, 100_000, 100_000)
    yield
    gc.set_threshold(*old)


def test_recording_from_finalizers_and_gc_callbacks(gc_on_every_allocation):
    """__del__, weakref.finalize and gc.callbacks run by the GC mid-recording lose no count."""
    c = NodeMetricsCollector(max_nodes=None)
    _Recorder.under_lock.clear()
    finalized = []
    collections = []

    def on_finalize():
        finalized.append(lock_held(c))
        c.record_success("from-finalize", 1.0)

    def on_gc(phase, info):
        # What deadlocked prometheus_client: a metric updated from a GC
        # callback while the interrupted code held the metric's lock.
        if phase == "stop":
            collections.append(lock_held(c))
            c.record_success("from-gc", 1.0)

    class Holder:
        pass

    gc.callbacks.append(on_gc)
    try:
        for i in range(1_000):
            _Recorder(c)
            h = Holder()
            h.cycle = h
            weakref.finalize(h, on_finalize)
            del h
            # A new name makes the collector allocate under its lock, where
            # the GC (collecting on every allocation here) runs callbacks.
            c.record_success(f"node-{i}", 1.0)
        gc.collect()
    finally:
        gc.callbacks.remove(on_gc)

    assert 1_000 == len(_Recorder.under_lock)
    assert 1_000 == len(finalized)
    # The point of the test: GC callbacks ran while the lock was held.
    assert any(collections)
    assert 1_000 == c.get_node_metrics("from-del").success_count
    assert 1_000 == c.get_node_metrics("from-finalize").success_count
    assert len(collections) == c.get_node_metrics("from-gc").success_count
    assert 1_003 == len(c.get_all_node_metrics())


@pytest.mark.parametrize(
    ("max_nodes", "inner"),
    [(None, "n"), (1, "other")],
    ids=["the node being added", "another node, at max_nodes=1"],
)
def test_recording_from_a_gc_callback_while_the_same_thread_adds_a_node(
    monkeypatch, max_nodes, inner
):
    """
    A gc callback that records while its thread is adding a node (building it
    allocates, so the GC may run there; here it is made to, once) is queued like
    any call from inside the collector: it neither adds the same node only to have
    it replaced (a lost count), nor a node past max_nodes.
    """
    c = NodeMetricsCollector(max_nodes=max_nodes)
    inside: list[bool] = []
    real_init = _node._Node.__init__

    def init(self, *args, **kwargs):
        if not inside:
            gc.collect()  # the GC, run by an allocation of the node's
        real_init(self, *args, **kwargs)

    def on_gc(phase, info):
        if phase == "start" and not inside:
            inside.append(lock_held(c))
            c.record_success(inner, 7.0)

    monkeypatch.setattr(_node._Node, "__init__", init)
    gc.callbacks.append(on_gc)
    try:
        c.record_success("n", 1.0)
    finally:
        gc.callbacks.remove(on_gc)
    assert [True] == inside  # the callback did run inside the recording
    counts = {node: m.total_executions for node, m in c.get_all_node_metrics().items()}
    if max_nodes is None:
        assert {"n": 2} == counts
    else:
        assert {"n": 1, "__overflow__": 1} == counts


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGALRM")
def test_recording_from_a_signal_handler():
    """SIGALRM handlers record while the main thread records in a tight loop: exact counts."""
    c = NodeMetricsCollector()
    handled = []

    def handler(signum, frame):
        handled.append(lock_held(c))
        c.record_success("from-signal", 2.0)
        c.record_retry("main")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        n = 0
        while n < 300_000 and (n < 50_000 or sum(handled) < 20):
            c.record_success("main", 1.0)
            n += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert handled
    assert any(handled), "no signal arrived while the lock was held"
    assert n == c.get_node_metrics("main").total_executions
    assert len(handled) == c.get_node_metrics("from-signal").success_count
    assert len(handled) == c.get_node_metrics("main").retry_count


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGALRM")
def test_timing_from_a_signal_handler():
    """
    SIGALRM handlers time blocks of the node the main thread times in a tight
    loop; at least 20 of them land mid-fold (while the fold holds the lock,
    which nothing else takes here) and more mid-append: exact counts.
    """
    c = NodeMetricsCollector()
    c.record_success("main", 1.0)  # known, so timed successes are batched
    handled = []
    mid_fold = []

    def handler(signum, frame):
        # The main thread only times blocks of a known node: the lock is
        # held only while a full batch is folded.
        mid_fold.append(lock_held(c))
        handled.append(len(batch_of(c, "main")))
        with c.track("main"):
            pass

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        n = 0
        while n < 2_000_000 and (n < 50_000 or sum(mid_fold) < 20):
            with c.track("main"):
                pass
            n += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert sum(mid_fold) >= 20, f"only {sum(mid_fold)} of {len(handled)} signals came mid-fold"
    assert any(handled), "no signal arrived while the batch held successes"
    assert 1 + n + len(handled) == c.get_node_metrics("main").success_count


def test_recording_nested_in_a_read_from_inside_the_collector(monkeypatch):
    """
    A read made from inside a call of its own thread (a GC callback's, while
    a recording holds the lock between changes) is catching up a node when a
    second handler records into that node: the recording waits in the queue
    instead of changing the window under the read, and every count and
    percentile is right, then and after.
    """
    window = 1_000
    c = NodeMetricsCollector(window_size=window)
    for _ in range(window):
        c.record_success("b", 1.0)  # never read: the read sorts it afresh
    window_type = type(window_of(c, "b"))
    catch_up = window_type._catch_up
    nested = 200

    def catch_up_interrupted(self):
        # The second handler lands while the read sorts.
        for _ in range(nested):
            c.record_success("b", 1000.0)
        catch_up(self)

    monkeypatch.setattr(window_type, "_catch_up", catch_up_interrupted)
    with holding_lock_between_changes(c):
        inside = c.get_node_metrics("b")
    monkeypatch.setattr(window_type, "_catch_up", catch_up)
    # Read as it was: the nested recordings are queued, not in it.
    assert (window, 1.0) == (inside.total_executions, inside.p99)
    samples = [1.0] * (window - nested) + [1000.0] * nested
    assert percentiles(samples) == percentiles_of(c.get_node_metrics("b"))
    assert window + nested == c.get_node_metrics("b").total_executions
    # And the window stays right as it turns.
    for _ in range(10):
        c.record_success("b", 1000.0)
    samples = samples[10:] + [1000.0] * 10
    assert percentiles(samples) == percentiles_of(c.get_node_metrics("b"))


def percentiles(samples: list[float]) -> list[float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return [pytest.approx(q[49]), pytest.approx(q[89]), pytest.approx(q[98])]


def percentiles_of(m) -> list[float]:
    return [m.p50, m.p90, m.p99]


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get_node_metrics("n").total_executions,
        lambda c: c.get_all_node_metrics()["n"].total_executions,
        lambda c: c.get_node_histogram("n").count,
    ],
    ids=["get_node_metrics", "get_all_node_metrics", "get_node_histogram"],
)
def test_a_read_applies_every_queued_recording_however_many(read):
    """
    More recordings than a recording applies at once (512) are queued by
    code that interrupted its own thread's recording (GC callbacks run by one
    collection, say): the first read after them includes every one.
    """
    c = NodeMetricsCollector()
    queued = 1_500
    with holding_lock(c):
        for _ in range(queued):
            c.record_success("n", 1.0)
        assert c._guard.pending
    assert read(c) == queued


@pytest.mark.parametrize("direct", ["record_success", "record_failure", "reset_node_metrics"])
def test_a_recording_never_overtakes_more_queued_than_a_call_applies(direct):
    """
    More recordings are queued (by code that interrupted its own thread's
    recording) than one call applies (512), the last of them a reset; the
    next recording of the thread goes after every one of them, not ahead of
    the rest, where the queued reset would wipe it.
    """
    c = NodeMetricsCollector()
    queued = 1_500
    with holding_lock(c):
        for _ in range(queued):
            c.record_success("n", 1.0)
        if direct != "reset_node_metrics":
            c.reset_node_metrics("n")
    if direct == "reset_node_metrics":
        # A reset after the queue forgets every queued recording.
        c.reset_node_metrics("n")
        assert "n" not in c.get_all_node_metrics()
        return
    getattr(c, direct)("n", 9.0)
    m = c.get_node_metrics("n")
    assert (1, 9.0) == (m.total_executions, m.last_execution_ms)
