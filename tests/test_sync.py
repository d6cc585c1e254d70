"""The concurrency protocol of nodemetrics/_sync.py, piece by piece."""

from __future__ import annotations

import threading

import pytest

from _internals import fork_hooks, lock_held, lock_of

from nodemetrics import NodeMetricsCollector, _collector, _sync, _tracker
from nodemetrics._metrics import EMPTY


class TestFire:
    def test_exceptions_are_logged_and_the_rest_run(self, logs):
        """A callback's Exception is logged; the callbacks after it still run."""
        ran = []

        def bad(*args):
            raise RuntimeError

        _sync.fire([(bad, ()), (ran.append, (1,))])
        assert [1] == ran
        assert 1 == sum("nodemetrics.callback_failed" in m for m in logs.of_level("ERROR"))

    def test_keyboard_interrupt_is_raised_after_the_rest_ran(self):
        """A KeyboardInterrupt or SystemExit is never swallowed: the rest run, then it is raised."""
        ran = []

        def stop(*args):
            raise KeyboardInterrupt

        def exit_(*args):
            raise SystemExit(3)

        with pytest.raises(KeyboardInterrupt):
            _sync.fire([(stop, ()), (ran.append, (1,)), (exit_, ()), (ran.append, (2,))])
        assert [1, 2] == ran

    def test_callback_systemexit_reaches_the_caller_after_the_count(self):
        """A threshold callback's SystemExit propagates once the crossing execution is counted."""

        def leave(node, rate):
            raise SystemExit(2)

        c = NodeMetricsCollector(
            min_samples=1, failure_rate_threshold=0.0, on_failure_rate_threshold=leave
        )
        with pytest.raises(SystemExit):
            c.record_failure("n", 1.0)
        assert 1 == c.get_node_metrics("n").failure_count


class TestReentrantReads:
    def test_read_while_this_thread_holds_the_lock_returns_at_once(self, interrupted):
        """A read made while its own thread holds the lock returns, without applying the queue."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        with interrupted(c):
            c.record_success("n", 2.0)  # queued
            assert 1 == c.get_node_metrics("n").total_executions
            assert {"n"} == set(c.get_all_node_metrics())
            assert EMPTY is c.get_node_metrics("unknown")
        assert 2 == c.get_node_metrics("n").total_executions

    def test_node_being_changed_reads_as_last_read(self):
        """The node the interrupted call is changing reads as its last snapshot, else empty."""
        c = NodeMetricsCollector()
        c.record_success("read", 1.0)
        c.record_success("unread", 1.0)
        last = c.get_node_metrics("read")
        c.record_success("read", 5.0)
        with c._guard.lock:
            c._guard.current = c._nodes["read"]
            assert last is c.get_node_metrics("read")
            c._guard.current = c._nodes["unread"]
            assert EMPTY is c.get_all_node_metrics()["unread"]
            c._guard.current = None
        assert 2 == c.get_node_metrics("read").total_executions


class TestReentrantHistogramReads:
    def test_histograms_while_this_thread_holds_the_lock(self):
        """Histogram reads made while this thread holds the lock return at once; the node
        being changed reads as last read, with its histogram."""
        c = NodeMetricsCollector()
        c.record_success("read", 1.0)
        c.record_success("other", 1.0)
        read = c._read_all()["read"]
        c.record_success("read", 5.0)
        with c._guard.lock:
            c._guard.current = c._nodes["read"]
            assert read == c._read_all()["read"]
            assert read[1] is c.get_node_histogram("read")
            assert 1 == c.get_node_histogram("other").count
            assert 0 == c.get_node_histogram("unknown").count
            c._guard.current = None
        assert 2 == c.get_node_histogram("read").count

    def test_node_never_read_reads_empty_while_changed(self):
        """A node being changed that was never read reads as the empty histogram."""
        c = NodeMetricsCollector()
        c.record_success("never read", 5.0)
        with c._guard.lock:
            c._guard.current = c._nodes["never read"]
            assert 0 == c.get_node_histogram("never read").count
            assert 0 == c.get_all_node_histograms()["never read"].count
            c._guard.current = None
        assert 1 == c.get_node_histogram("never read").count

    def test_histogram_read_settles_first(self):
        """A histogram read applies the queue and repairs a half-changed node first."""
        c = NodeMetricsCollector()
        with c._guard.lock:
            c.record_success("n", 1.0)
        assert 1 == c.get_node_histogram("n").count


class TestRepair:
    """A call cut short leaves guard.current set; the next call repairs that node."""

    def cut_short(self, c: NodeMetricsCollector, node: str) -> None:
        c._guard.current = c._nodes[node]

    def test_torn_window_is_rebuilt(self, invariants):
        """A ring longer than its failure flags (a change cut between the two) is mended."""
        c = NodeMetricsCollector(
            window_size=4,
            min_samples=1,
            failure_rate_threshold=0.9,
            on_failure_rate_threshold=lambda n, r: None,
        )
        for value in (1.0, 2.0, 3.0):
            c.record_failure("n", value)
        state = c._nodes["n"]
        state.window._ring.append(9.0)  # ...and then the exception landed
        self.cut_short(c, "n")
        m = c.get_node_metrics("n")
        assert [] == invariants(m)
        assert (3, 2.0, 3.0) == (m.total_executions, m.p50, m.last_execution_ms)
        assert c._guard.current is None

    def test_sample_without_a_count_is_dropped(self, invariants):
        """A first execution cut short after the window took it leaves an empty node."""
        c = NodeMetricsCollector()
        c.record_retry("n")  # the node exists, with no execution
        state = c._nodes["n"]
        state.window.add(4.0, False)
        state.last = 4.0
        state.total_ms = 4.0
        self.cut_short(c, "n")
        m = c.get_node_metrics("n")
        assert [] == invariants(m)
        assert (0, None, 1) == (m.total_executions, m.p50, m.retry_count)

    def test_count_without_last_gets_the_newest_sample(self, invariants):
        """A count made before `last` was set takes the window's newest sample."""
        c = NodeMetricsCollector(window_size=2)
        for value in (1.0, 2.0, 3.0):
            c.record_success("n", value)
        state = c._nodes["n"]
        state.last = None
        self.cut_short(c, "n")
        m = c.get_node_metrics("n")
        assert [] == invariants(m)
        assert 3.0 == m.last_execution_ms

    def test_count_without_a_sample_puts_last_in_the_window(self, invariants):
        """A count whose sample the window lost keeps the percentiles non-empty."""
        c = NodeMetricsCollector()
        c.record_success("n", 2.0)
        state = c._nodes["n"]
        state.window.reset()
        self.cut_short(c, "n")
        m = c.get_node_metrics("n")
        assert [] == invariants(m)
        assert (1, 2.0) == (m.total_executions, m.p50)

    def test_histogram_cut_short_is_put_back_in_step(self):
        """A histogram that lost or double-counted durations counts each execution once again."""
        c = NodeMetricsCollector()
        for value in (1.0, 2.0, 3.0):
            c.record_success("n", value)
        state = c._nodes["n"]
        state.bucket()
        state.hist[5] += 5  # counted twice
        self.cut_short(c, "n")
        h = c.get_node_histogram("n")
        assert 3 == h.count == sum(h.counts)
        state.hist = [0, 0, 0, 0, 0, 1]  # two lost: they wait again, the newest in the window
        state.snapshot_cache = None
        self.cut_short(c, "n")
        h = c.get_node_histogram("n")
        assert 3 == h.count == sum(h.counts)
        # The two newest, 2.0 and 3.0 ms, bucketed from the window: (1, 2.5] and (2.5, 5].
        assert (0, 0, 0, 0, 1, 2) == h.counts[:6]

    def test_repair_before_a_recording_and_its_threshold(self):
        """A recording that finds a node to repair and a queue applies both, then fires."""
        calls = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=lambda node, rate: calls.append(node),
        )
        c.record_success("n", 1.0)
        with c._guard.lock:
            c.record_failure("n", 1.0)  # queued
        self.cut_short(c, "n")
        c.record_success("n", 1.0)
        assert ["n"] == calls
        assert 3 == c.get_node_metrics("n").total_executions

    def test_batch_fold_settles_first(self):
        """A fold of a full batch applies the queue first and fires what it crossed."""
        calls = []
        c = NodeMetricsCollector(
            min_samples=1,
            failure_rate_threshold=0.0,
            on_failure_rate_threshold=lambda node, rate: calls.append(node),
        )
        c.record_success("n", 1.0)
        with c._guard.lock:
            c.record_failure("m", 1.0)  # queued
        _tracker.fold_batch(c, c._nodes["n"])
        assert ["m"] == calls
        assert 0 == len(c._guard.pending)


class TestFork:
    def test_hooks_take_and_give_back_every_lock(self):
        """Before a fork every collector's lock is held; after it, in the parent, none is."""
        c = NodeMetricsCollector()
        _sync._before_fork()
        try:
            got = []
            t = threading.Thread(target=lambda: got.append(c._guard.lock.acquire(timeout=0.05)))
            t.start()
            t.join()
            assert [False] == got
        finally:
            _sync._after_fork_in_parent()
        assert c._guard.lock.acquire(timeout=1)
        c._guard.lock.release()

    def test_parent_ignores_a_lock_it_did_not_take(self):
        """A lock listed but never taken (an exception cut the hook short) is skipped."""
        _sync._HELD_FOR_FORK.append(threading.RLock())
        _sync._after_fork_in_parent()
        assert [] == _sync._HELD_FOR_FORK

    def test_a_lock_that_stays_held_is_given_up_on(self, monkeypatch):
        """A collector whose lock another thread keeps is left out after the wait."""
        monkeypatch.setattr(_sync, "_FORK_WAIT_S", 0.01)
        c = NodeMetricsCollector()
        taken, done = threading.Event(), threading.Event()

        def hold():
            with c._guard.lock:
                taken.set()
                done.wait(5)

        t = threading.Thread(target=hold)
        t.start()
        assert taken.wait(5)
        try:
            _sync._before_fork()
            assert c._guard.lock not in _sync._HELD_FOR_FORK
            _sync._after_fork_in_parent()
        finally:
            done.set()
            t.join()

    def test_child_hook_frees_every_lock_in_place(self):
        """
        In the child every collector's lock, and the registry lock, is free
        again, though a thread of the parent held it: the same objects, made
        free in place, so that a frame waiting on one gets it.
        """
        c = NodeMetricsCollector()
        lock = c._guard.lock
        registry = _sync.REGISTRY_LOCK
        held = threading.Event()
        done = threading.Event()

        def hold():
            lock.acquire()
            registry.acquire()
            held.set()
            done.wait(10)
            # Not released: the child hook made them free under this thread.

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(5)
        try:
            _sync._after_fork_in_child()
            assert lock is c._guard.lock
            assert registry is _sync.REGISTRY_LOCK
            assert c._guard.owned == lock._is_owned
            assert lock.acquire(False)
            assert registry.acquire(False)
            lock.release()
            registry.release()
            c.record_success("n", 1.0)
            assert 1 == c.get_node_metrics("n").total_executions
        finally:
            done.set()
            t.join(5)


def test_default_collector_made_once_under_a_race(monkeypatch):
    """A thread that waited for the registry lock takes the collector made meanwhile."""
    monkeypatch.setattr(_collector, "_default", None)
    made = NodeMetricsCollector()
    got = []
    with _sync.REGISTRY_LOCK:
        t = threading.Thread(target=lambda: got.append(_collector.get_default_collector()))
        t.start()
        t.join(0.05)
        monkeypatch.setattr(_collector, "_default", made)
    t.join(5)
    assert [made] == got


def test_the_fork_hook_notes_a_lock_the_forking_thread_holds():
    """A lock held by the forking thread itself (a signal handler's fork from inside a
    call) is noted, for the child's hook to tell its guard; the parent forgets it."""
    c, other = NodeMetricsCollector(), NodeMetricsCollector()
    before, after_in_parent, _ = fork_hooks()
    with lock_of(c):
        before()
        try:
            noted = list(_sync._MID_CALL_AT_FORK)
        finally:
            after_in_parent()
    assert any(guard is c._guard for guard in noted)
    assert not any(guard is other._guard for guard in noted)
    assert [] == _sync._MID_CALL_AT_FORK
    assert not lock_held(c)
