"""
A recording that finds the lock taken by another thread does not queue on it.

Blocking there turns two threads recording on two cores into a lock convoy
(README "Performance", P8): every record then waits for a thread to wake up
on the other core. A waiting recording instead lets go of the GIL and tries
again (see ``_sync``). Whether that makes threads faster is the benchmark's
to measure; what is tested here is the waiting itself, and that every
recording made while the lock was held is counted once it is free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from collections.abc import Callable, Iterator

import pytest

from _internals import (
    counting_yields,
    fold_batch,
    holding_lock_between_changes,
    recordings_asleep,
)

from nodemetrics import NodeMetricsCollector


#: Enough tries to tell a waiting loop from a single blocking acquire.
TRIES = 5


def _success(c: NodeMetricsCollector) -> None:
    c.record_success("n", 2.0)


def _failure(c: NodeMetricsCollector) -> None:
    c.record_failure("n", 2.0, category="timeout")


def _fold(c: NodeMetricsCollector) -> None:
    with c.track("n"):
        pass
    fold_batch(c, "n")


RECORDINGS: dict[str, Callable[[NodeMetricsCollector], None]] = {
    "record_success": _success,
    "record_failure": _failure,
    "a batch's fold": _fold,
}


@contextlib.contextmanager
def recording_while_held(
    c: NodeMetricsCollector, record: Callable[[NodeMetricsCollector], None]
) -> Iterator[tuple[list[int], threading.Event]]:
    """
    Hold *c*'s lock while another thread makes *record*; yield the count of its
    tries and the event it sets once done. The lock is released, and the thread
    joined, on leaving.
    """
    held, finished = threading.Event(), threading.Event()
    with counting_yields() as tries:

        def recorder() -> None:
            assert held.wait(10)
            record(c)
            finished.set()

        thread = threading.Thread(target=recorder)
        thread.start()
        try:
            with holding_lock_between_changes(c):
                held.set()
                yield tries, finished
        finally:
            thread.join(10)


@pytest.mark.parametrize("record", RECORDINGS.values(), ids=RECORDINGS.keys())
def test_a_recording_waits_for_a_held_lock_by_trying_again(record):
    """While another thread holds the lock, a recording keeps letting go of the GIL and
    trying again instead of sleeping on the lock; once the lock is free it is counted."""
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    c.get_node_metrics("n")
    with recording_while_held(c, record) as (tries, finished):
        # The recorder cannot finish while the lock is held; a recorder that
        # slept on the lock would never try again, and this gives up after a
        # few seconds instead of hanging.
        for _ in range(500):
            if tries[0] >= TRIES or finished.wait(0.01):
                break
        waited = tries[0]
        done_early = finished.is_set()
    assert not done_early, "the recording went ahead while another thread held the lock"
    assert waited >= TRIES, f"the recording tried the lock {waited} times while it waited"
    assert finished.is_set()
    m = c.get_node_metrics("n")
    assert m.total_executions == 2
    assert (m.success_count, m.failure_count) == ((1, 1) if record is _failure else (2, 0))


def test_a_recording_sleeps_on_a_lock_held_for_long():
    """A recording that has tried a while sleeps on the lock after all, so that readers
    queued on it cannot take it from it again and again; it is counted once it is free."""
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    with recording_while_held(c, _success) as (tries, finished):
        # Until the tries stop: each is over within microseconds, so a count
        # unchanged for a tenth of a second is a sleeping recorder.
        last = -1
        for _ in range(100):
            if finished.wait(0.1) or tries[0] == last:
                break
            last = tries[0]
        stopped_at = tries[0]
        asleep = tries[0] == last and not finished.is_set()
    assert asleep, f"still trying after {stopped_at} tries (or finished while the lock was held)"
    assert 0 < stopped_at < 1_000
    assert finished.is_set()
    assert c.get_node_metrics("n").total_executions == 2


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get_node_metrics("n"),
        lambda c: c.get_all_node_metrics(),
        lambda c: c.get_node_histogram("n"),
        lambda c: c._read_all(),
    ],
    ids=["get_node_metrics", "get_all_node_metrics", "get_node_histogram", "an exporter's read"],
)
def test_a_read_lets_a_recording_asleep_on_the_lock_go_first(read):
    """While a recording sleeps on the lock (readers reading one after another could
    otherwise keep taking it from the recording: a minute in a CI run), a read waits a
    moment before it takes the lock; with no recording asleep, a read never waits."""
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    with counting_yields() as idle:
        read(c)
    assert idle[0] == 0, "a read waited with no recording asleep on the lock"
    with recording_while_held(c, _success) as (tries, finished):
        # The recording sleeps on the lock once its tries are over.
        for _ in range(500):
            if recordings_asleep(c) or finished.wait(0.01):
                break
        assert recordings_asleep(c) == 1, "the recording did not sleep on the held lock"
        # The recording's tries are over: from here on, only the reader can yield.
        before = tries[0]
        thread = threading.Thread(target=read, args=(c,))
        thread.start()
        # The reader waits its moment, then sleeps on the lock still held here.
        for _ in range(500):
            if tries[0] > before or finished.wait(0.01):
                break
        reader_waited = tries[0] - before
    thread.join(10)
    assert not thread.is_alive()
    assert finished.is_set()
    assert reader_waited >= 1, "the read did not let the recording asleep on the lock go first"
    assert recordings_asleep(c) == 0
    assert c.get_node_metrics("n").total_executions == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_has_no_recording_asleep_on_the_lock():
    """A recording asleep on the lock in another thread is not in a forked child, whose
    reads must then not wait for it: the child starts with none counted."""
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    with recording_while_held(c, _success) as (_tries, finished):
        for _ in range(500):
            if recordings_asleep(c) or finished.wait(0.01):
                break
        assert recordings_asleep(c) == 1
        pid = os.fork()
        if pid == 0:  # the child: report, never return into pytest
            os._exit(0 if recordings_asleep(c) == 0 else 1)
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            finished.wait(0.01)
        if done == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert done != (0, 0), "the child did not finish within 10 s"
    assert os.waitstatus_to_exitcode(done[1]) == 0, "the child counted a recording asleep"
    assert finished.is_set()
