"""
The one place where tests reach the collector's private state.

Tests test behaviour through the public API wherever they can. Where a test
must look inside (a node's batch, the lock, the fork hooks, a window's
notes), it goes through these helpers, so that a refactoring of the
collector re-points them here, once, and no test changes.

A bound that README promises (a batch of about 32, notes of a quarter of the
window) is written out in the test that checks it, never read from here: a
test that took the bound from the code would pass whatever the code said.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time

from collections.abc import Callable, Iterator
from types import ModuleType

from nodemetrics import NodeMetricsCollector, _instrument, _sync, _tracker
from nodemetrics._window import RollingWindow


#: The batch bound as the code has it (for sizing loops, never for asserting).
BATCH_BOUND: int = _tracker.BATCH

#: The modules whose ``perf_counter_ns`` times tracked blocks and metered calls.
CLOCK_MODULES: tuple[ModuleType, ...] = (_tracker, _instrument)


def node_state(collector: NodeMetricsCollector, name: str) -> object:
    """The mutable state object of node *name* (KeyError if there is none)."""
    return collector._nodes[name]


def node_names(collector: NodeMetricsCollector) -> list[str]:
    """The names of the nodes the collector holds state for, without reading them."""
    return list(collector._nodes)


def batch_of(collector: NodeMetricsCollector, name: str) -> list[float]:
    """The timed successes of node *name* that wait to be folded in (the live list)."""
    return collector._nodes[name].batch


def replace_batch(collector: NodeMetricsCollector, name: str, batch: list[float]) -> None:
    """Put *batch* (a list, maybe a subclass that misbehaves) in place of the node's batch."""
    collector._nodes[name].batch = batch


def fold_batch(collector: NodeMetricsCollector, name: str) -> None:
    """Fold node *name*'s batch as a full batch does (a no-op if the lock is busy)."""
    _tracker.fold_batch(collector, collector._nodes[name])


def window_of(collector: NodeMetricsCollector, name: str) -> RollingWindow:
    """The rolling window of node *name*."""
    return collector._nodes[name].window


def cut_add_after_window(
    collector: NodeMetricsCollector, name: str, value: float, failed: bool = False
) -> None:
    """
    Leave node *name* as a ``_Node.add()`` cut short right after its window
    took *value*: a sample that no count includes, with the node marked as
    being changed, so that the next call repairs it.
    """
    state = collector._nodes[name]
    state.window.add(value, failed)
    collector._guard.current = state


def empty_window(collector: NodeMetricsCollector, name: str) -> None:
    """
    Leave node *name* with an empty window but its counts, marked as being
    changed: what a window that a cut left unsound is made into (see
    ``RollingWindow.repair``), so that the next call repairs the node.
    """
    state = collector._nodes[name]
    state.window.reset()
    collector._guard.current = state


def window_samples(collector: NodeMetricsCollector, name: str) -> list[float]:
    """Node *name*'s window, oldest first."""
    window = collector._nodes[name].window
    return window.latest(len(window))


def window_failures(collector: NodeMetricsCollector, name: str) -> int | None:
    """How many failures node *name*'s window counts (None if it counts none)."""
    window = collector._nodes[name].window
    return None if window._failed is None else window.failures


def written_in_line(window: RollingWindow) -> bool:
    """
    Whether ``record_success()`` writes *window*'s ring in line, as the window
    tells it: it must exactly when the ring is full and keeps no failure flags.
    """
    full = window._full
    assert full is None or full is window._ring
    return full is not None


def window_notes(window: RollingWindow) -> int:
    """How many samples the window has noted as come or gone since its last read."""
    return len(window._new) + len(window._gone)


def waiting_count(collector: NodeMetricsCollector, name: str) -> int:
    """How many of node *name*'s durations wait, counted, to be put in its histogram."""
    return collector._nodes[name].waiting()


def pending_count(collector: NodeMetricsCollector) -> int:
    """How many recordings wait in the collector's queue for the lock's holder."""
    return len(collector._guard.pending)


def lock_held(collector: NodeMetricsCollector) -> bool:
    """Whether some thread (or this one) holds the collector's lock now."""
    guard = collector._guard
    if guard.owned():
        return True
    # Without waiting and without a thread, so that a signal handler may ask.
    if guard.lock.acquire(False):
        guard.lock.release()
        return False
    return True


@contextlib.contextmanager
def holding_lock(collector: NodeMetricsCollector) -> Iterator[None]:
    """Hold the collector's lock, as a recorder in the middle of a recording does."""
    guard = collector._guard
    with guard.lock:
        guard.current = _sync.BUSY
        try:
            yield
        finally:
            guard.current = None


@contextlib.contextmanager
def holding_lock_between_changes(collector: NodeMetricsCollector) -> Iterator[None]:
    """Hold the collector's lock as a reader does, with no node marked as being changed."""
    with collector._guard.lock:
        yield


def owns_lock(guarded: object) -> bool:
    """Whether this thread holds the lock of *guarded* (a collector, or the OpenTelemetry
    exporter, which has a guard of its own)."""
    return guarded._guard.owned()  # type: ignore[attr-defined]


def lock_of(guarded: object) -> contextlib.AbstractContextManager[bool]:
    """The lock of *guarded* (a collector or the OpenTelemetry exporter), to hold as is."""
    return guarded._guard.lock  # type: ignore[attr-defined]


def recordings_asleep(collector: NodeMetricsCollector) -> int:
    """How many recordings sleep on the collector's lock after their tries (see ``_sync.take``)."""
    return len(collector._guard.waiting)


@contextlib.contextmanager
def counting_yields() -> Iterator[list[int]]:
    """
    Count, in the one-item list yielded, the times a recording that waits for
    a lock another thread holds lets go of the GIL and tries again.
    """
    count = [0]
    sleep = _sync.sleep

    def counted(seconds: float) -> None:
        count[0] += 1
        sleep(seconds)

    _sync.sleep = counted
    try:
        yield count
    finally:
        _sync.sleep = sleep


@contextlib.contextmanager
def raising_after_release(collector: NodeMetricsCollector, exc: BaseException) -> Iterator[None]:
    """
    Make the collector's lock raise *exc* just after each release, from a
    Python frame, as a signal handler that ran right after it would.
    """
    guard = collector._guard
    real = guard.lock

    class Raising:
        def acquire(self, *args: object, **kwargs: float) -> bool:
            return real.acquire(*args, **kwargs)

        def release(self) -> None:
            real.release()
            raise exc

    guard.lock = Raising()  # type: ignore[assignment]
    try:
        yield
    finally:
        guard.lock = real


def locks_held_for_fork() -> list[object]:
    """The locks the fork hook holds between its before and after hooks."""
    return list(_sync._HELD_FOR_FORK)


def queue(collector: NodeMetricsCollector, node: str, value: float, kind: int) -> None:
    """Queue a recording for the lock's holder, as a re-entrant call does."""
    collector._guard.defer((node, value, kind))


def timed_successes_held(collector: NodeMetricsCollector) -> bool:
    """Whether the collector asks timed successes to take the lock (see ``_sync``)."""
    return collector._guard.hold


def between_changes(collector: NodeMetricsCollector) -> None:
    """Mark the collector as changing no node, as a finalizer run between two finds it."""
    collector._guard.current = None


def window_chunks(window: RollingWindow) -> list[list[float]]:
    """The window's sorted chunks, as plain lists (as of its last read)."""
    return [list(chunk) for chunk in window._chunks]


def mirror_lock(sync: object) -> contextlib.AbstractContextManager[bool]:
    """The lock of a multiprocess exporter's sync (``MultiProcessSync``), to hold as is."""
    return sync._lock  # type: ignore[attr-defined]


def fork_hooks() -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """The (before, after in parent, after in child) hooks given to ``os.register_at_fork``."""
    return (
        _sync._before_fork,
        _sync._after_fork_in_parent,
        _sync._after_fork_in_child,
    )


@contextlib.contextmanager
def fake_clock(elapsed_ns: list[int]) -> Iterator[None]:
    """Make each timed block or metered call take the next of *elapsed_ns* nanoseconds."""
    ticks = itertools.chain.from_iterable((0, ns) for ns in elapsed_ns)
    tick = ticks.__next__
    real = [module.perf_counter_ns for module in CLOCK_MODULES]  # type: ignore[attr-defined]
    for module in CLOCK_MODULES:
        module.perf_counter_ns = tick  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, clock in zip(CLOCK_MODULES, real, strict=True):
            module.perf_counter_ns = clock  # type: ignore[attr-defined]


def exit_status(pid: int, deadline_s: float = 10.0) -> int | str:
    """
    The exit status of child *pid*, or ``"hung"`` if it has not exited within
    *deadline_s* (it is then killed): a deadlocked child fails a test in seconds.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)  # polling a child process; no race depends on it
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"
