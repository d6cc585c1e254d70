"""
The concurrency protocol: who takes which lock, and what happens when they can't.

Everything here exists so that a collector can be called from anywhere (many
threads, asyncio tasks, signal handlers, finalizers, ``gc.callbacks``, either
side of ``os.fork()``) and never hang, never leave its state broken, and never
tell a torn story.

**One lock per collector.** Each collector has a :class:`Guard`, whose
``lock`` is a :class:`threading.RLock` guarding all of the collector's node
state but the nodes' batches (below). Every call takes it the same way,
written out: ``try: lock.acquire()`` ... ``finally: try: lock.release()
except RuntimeError``; the recordings first try it without blocking, so
that they cannot convoy (below). An exception raised by a signal handler
arrives only where the interpreter checks for one (after a call returns, on
a jump back, on entering a function), so it lands either inside the ``try``
after an acquire returned (the ``finally`` releases) or while the thread
waits for the lock. Then nothing was acquired and ``release()`` raises the
one error :func:`unheld` recognises and lets pass, so that the handler's
own exception is what propagates. The ``finally`` opens with a ``try``,
which matters on 3.10: there, once an exception leaves a block, the
interpreter checks for the next one at the first instruction of the
handler, but never at a ``SETUP_FINALLY``. A ``with`` block's handler opens
with the call of ``__exit__``, so a second signal landing just as the
first exception left the block escaped with the lock held (reads took the
lock with ``with`` until 3.10 runs of the signal test caught that, in 3
of 140 runs; none in 200 since). From 3.11 on, exception tables close that gap for both.
The release is written out in each ``finally``, never put in a helper: an
exception can also land on entering a function, and one landing on the
helper's entry would leave the lock held. (On 3.10, one landing in
``record_success()``'s ``try`` before its acquire would make the
``finally`` release a hold of the same thread's interrupted call, if there
is one; every other call enters its ``try`` only once ``guard.owned()``
said the thread holds no such hold.)

Nothing inside runs user code: classifiers run before it is
taken, and threshold callbacks and log messages are collected under it and
run after it is released (:func:`fire`). So a holder lets go within
microseconds, but for a read that sorts a big window afresh (0.3 s at
``window_size`` 1,000,000), and a thread that finds the lock taken by
another thread simply waits for it.

**A thread that must wait does not queue on the lock.** The recordings
(``record_success()``, and every other recording and a batch's fold) try
the lock without blocking, and while another thread holds it they yield
(``time.sleep(0)``, which lets go of the GIL) and try again, up to 16
times before they sleep on it after all (readers that sleep on it would
otherwise take it from them again and again). Blocking
there is what turns two recording threads on two cores into a convoy:
a release wakes the thread asleep on the lock, which takes it and then
needs the GIL that the releasing thread holds; that thread's next record
finds the lock taken and goes to sleep on it in turn, and from then on
every record waits for a thread to wake up on the other core (two threads
made 0.4 of one thread's records, against about 1.0 now; README
"Performance", P8). Reads and resets, rarer and longer, block on it. But
a release wakes one sleeper without handing it the lock, and any thread
that asks first takes it: readers reading one after another kept a
recording asleep on the lock for a minute in a CI run. So a recording that
sleeps on it counts itself in ``guard.waiting`` meanwhile, and a read that
finds one there waits a tenth of a millisecond (:func:`make_way`) before it
asks for the lock, time for the woken recording to take it.

**Re-entry from the same thread never waits.** A signal handler, a
finalizer or a GC callback can run in the middle of a collector call, in the
thread that holds the lock. The RLock lets it in without waiting, and what
it may do depends on what the interrupted call was doing. Between changes
(``guard.current`` is None: no node is being changed, no queue applied) it
simply goes ahead, as if it had come first; ``record_success()``, the hot
path, checks only that. Otherwise it must not touch the state, and every
other entry point asks ``guard.owned()``, that is ``lock._is_owned()`` (true
only for the thread that holds it, so no other thread can change the
answer). If it holds it already:

- a recording (or a reset) is appended to ``guard.pending`` and the call
  returns at once; the next call that takes the lock applies the queue
  first, in order, and while it waits, every recording takes this slow path
  so that none overtakes it. A read applies all that was queued when it
  took the lock; a recording applies at most 512 (``_DRAIN_MAX``, so that
  recorders queueing without end cannot keep one call applying for ever)
  and, if some are left, queues itself behind them;
- a read reads without touching what the interrupted call is changing: every
  node as it is, except ``guard.current``, the node that call was changing,
  which is read as it was last read (the snapshot that was current before,
  or the empty one if it was never read). Such a read never applies the
  queue and never adds or removes nodes. A read of all nodes walks a copy of
  the node table, so that a call that goes ahead may add one meanwhile.
  Handlers nest (a second signal during the first's read), so the node such
  a read is catching up is in ``guard.reading`` meanwhile, and a read nested
  in it reads that node as it was last read too; and a read cut short (by a
  nested handler's exception) repairs its node before it lets the exception
  go, since nothing else would.
  While a call applies the queue, ``guard.current`` is :data:`BUSY`.

**A call cut short leaves nothing broken.** A call sets ``guard.current`` to
the node it is about to change and clears it once the change is complete.
An exception that lands in between leaves it set; the next call that takes
the lock finds it and repairs that node (:meth:`_Node.repair`: the counts
made to agree, the window re-checked and re-sorted, a duration it took for a
recording not yet counted disowned) before anything else,
so every snapshot keeps its invariants and no later call raises. What was
being applied when the exception landed (the interrupted call's own
recording, or the batch of timed successes it was folding) may be lost.

**Timed successes take no lock.** ``track()`` and ``@metered`` append a
success to its node's batch (one ``list.append``, atomic under the GIL) and
fold it in under the lock 64 at a time, or whenever anything else reads or
changes the node. They do so only while ``guard.hold`` is false. A read sets
``hold`` while it takes its snapshots, and a queued re-entrant recording sets
it until the queue is applied: then timed successes take the lock like any
other recording, so that a read of several nodes sees one instant (no
success of a thread is in it while an earlier one of the same thread is
not) and a queued recording is never overtaken by a later one of its thread.
A ``hold`` left set by an interrupted call only makes timed successes slower
until the next read clears it.

**Fork.** Before ``os.fork()``, :func:`_before_fork` takes the registry lock
(so that no collector is created meanwhile) and then every live collector's
lock, waiting at most a second for each (only a holder in the forking thread
itself, such as ``fork()`` from a finalizer, could keep one). So the child
inherits no node caught mid-change; the child makes every lock free again in
place (``_at_fork_reinit()``), and the parent releases them. In place, not
replaced, and waited for in slices (:func:`wait_for`): a recording of the
forking thread may be asleep on that very lock, its signal handler having
forked, and must get it once the handler returns. The registry is a plain
set of weak references, copied with ``set.copy()``, which no other thread
can interrupt. The registry lock is taken the same way
(:func:`under_registry_lock`), so a thread waiting for it when its signal
handler forks gets it in the child too. A lock that the forking thread itself
holds (fork() from a signal handler or finalizer that interrupted a call of
its own) is made free in the child all the same: the child may never go back
to that call (it usually does its work in the handler and exits), and nothing
there may wait for it. The node that call was changing is repaired by the
child's first call (``guard.current`` says which); a child that does return
into the call is not covered. A guard whose holder calls into a library with
locks of its own is told (:attr:`Guard.after_fork_mid_call`), and stops
calling that library in the child.
"""

from __future__ import annotations

import os
import threading
import weakref

from collections import deque
from collections.abc import Callable
from time import sleep
from typing import Any, TypeVar

from ._log import log


_T = TypeVar("_T")

#: What a call collected under the lock, to run after it is released:
#: callbacks with their arguments.
Events = list[tuple[Callable[..., object], tuple[Any, ...]]]


class _Busy:
    """What ``guard.current`` holds while a call applies the queue: no node."""

    __slots__ = ()

    def repair(self) -> None:
        """Nothing to repair: applying the queue leaves each node whole."""

    def __repr__(self) -> str:
        return "BUSY"


BUSY: Any = _Busy()


class Guard:
    """The lock of one collector and the protocol's bookkeeping around it."""

    __slots__ = (
        "__weakref__",
        "after_fork_mid_call",
        "current",
        "hold",
        "lock",
        "owned",
        "pending",
        "reading",
        "waiting",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: ``lock._is_owned()``: whether this very thread holds the lock.
        #: Private to threading, but there since Python 3.2 (Condition uses
        #: it) and the one question that tells a re-entrant call from a
        #: waiting one.
        self.owned: Callable[[], bool] = self.lock._is_owned  # type: ignore[attr-defined]  # noqa: SLF001
        #: One item for each recording asleep on the lock (see take()), which
        #: reads then let go first (see make_way()).
        self.waiting: deque[None] = deque()
        #: Recordings and resets made while this thread held the lock, in order.
        self.pending: deque[tuple[str | None, float, int]] = deque()
        #: While true, timed successes take the lock instead of their batch.
        self.hold = False
        #: The node a call is changing; left set only by a call cut short.
        self.current: Any = None
        #: The nodes that reads from inside a call of this thread (signal
        #: handlers, finalizers; they nest) are reading, innermost last.
        self.reading: list[Any] = []
        #: Called in a forked child whose forking thread held this lock: a
        #: signal handler or finalizer forked from inside a call of its own
        #: thread, which the child may never resume (a child usually does
        #: its work in the handler and exits). The lock is free in the child
        #: all the same, so that nothing waits for that call; a guard whose
        #: holder calls into a library with locks of its own (the
        #: OpenTelemetry SDK, prometheus_client), which may be held in the
        #: child for ever, stops calling that library there.
        self.after_fork_mid_call: Callable[[], None] | None = None
        register(self)

    def free_after_fork(self) -> None:
        """
        Make the lock free again, in a child after ``fork()``.

        In place, not replaced: a frame of the forking thread may be waiting
        on that very object (a recording asleep on it, whose signal handler
        forked) and goes on waiting on it once the handler returns; a new
        lock would leave it waiting for ever for a holder the child does not
        have. Recordings that slept on it in the parent's other threads are
        not in the child either: its reads must not make way for them.
        """
        self.lock._at_fork_reinit()  # type: ignore[attr-defined]  # noqa: SLF001
        self.waiting.clear()

    def defer(self, item: tuple[str | None, float, int]) -> None:
        """Queue *item* for the call that holds the lock in this thread."""
        self.pending.append(item)
        self.hold = True


#: How many times a recording yields and tries again before it sleeps on the
#: lock after all: a holder that keeps it longer is a read or a reset (or many
#: of them queued on the lock, which would otherwise starve the recording).
_TRIES = 16


def take(guard: Guard) -> None:
    """
    Acquire *guard*'s lock, held by another thread, without queueing on it (see above).

    Only for a thread that does not hold the lock already, inside the ``try``
    whose ``finally`` releases it (see above). After its tries it sleeps on
    the lock, counted in ``guard.waiting`` meanwhile, so that readers let it
    go first (:func:`make_way`).
    """
    lock = guard.lock
    for _ in range(_TRIES):
        sleep(0)
        if lock.acquire(False):
            return
    waiting = guard.waiting
    # Appended inside the try: an exception can land only after a call
    # returns, so the item is popped exactly when it was appended.
    try:
        waiting.append(None)
        wait_for(lock)
    finally:
        # Empty only in a forked child whose signal handler forked while this
        # thread slept here: the child's hook emptied it.
        if waiting:
            waiting.pop()


#: A thread that waits for a lock asks for it again this often (see wait_for).
_SLICE_S = 0.1


def wait_for(lock: threading.RLock) -> None:
    """
    Acquire *lock*, which another thread holds, however long, asking again every :data:`_SLICE_S`.

    Called once ``lock.acquire(False)`` failed: a timed ``acquire()`` costs
    about 0.2 µs more than an untimed one (it reads the clock), which a read
    of an unchanged node would pay every time.

    In slices, not in one ``acquire()``, for a signal handler that forks
    while this thread waits here: in the child, the lock is made free again
    (see :meth:`Guard.free_after_fork`), but the interrupted ``acquire()``, once the
    handler returns, goes on waiting on what the lock was before the fork,
    which no thread of the child will ever release. The next slice asks the
    lock as it is now. A release still wakes the waiter at once.
    """
    while not lock.acquire(timeout=_SLICE_S):
        pass


#: How long a read waits, before it takes the lock, while a recording sleeps
#: on it: long enough for that thread, woken by the next release, to run.
_MAKE_WAY_S = 1e-4


def make_way() -> None:
    """
    Wait a moment before a read takes the lock, for a recording that sleeps on it.

    A release wakes one thread asleep on the lock, but any thread that asks
    for it before the woken one runs takes it: readers reading in a loop,
    one after another, could keep a recording waiting for a minute (seen in
    ``test_concurrent_snapshots.py`` under coverage). Reads are rare and
    long; recordings are what every instrumented call waits for.
    """
    sleep(_MAKE_WAY_S)


_UNHELD = ("cannot release un-acquired lock",)


def unheld(exc: RuntimeError) -> bool:
    """
    Tell whether *exc* is ``release()`` refusing a lock that was never acquired.

    That is the one error a ``finally: lock.release()`` of the hot path may
    let pass (see above): raised by the lock itself (so no Python frame
    below the caller's), with the message of CPython's ``RLock`` from 3.10
    to 3.13. A ``RuntimeError`` raised by a signal handler that ran after
    the release is not it, and propagates.
    """
    tb = exc.__traceback__
    return tb is not None and tb.tb_next is None and exc.args == _UNHELD


def fire(events: Events) -> None:
    """
    Run threshold callbacks and log messages collected under the lock.

    An :class:`Exception` from one is logged and the rest still run. Any other
    :class:`BaseException` (``KeyboardInterrupt``, ``SystemExit``, ...) is
    never swallowed: the rest still run, then the first such is re-raised.
    """
    stop: BaseException | None = None
    for callback, args in events:
        try:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 -- a callback must never reach the node
                # A log sink may raise KeyboardInterrupt too: caught below.
                log(
                    "ERROR",
                    "nodemetrics.callback_failed: {callback!r} raised",
                    exception=True,
                    callback=callback,
                )
        except BaseException as exc:  # noqa: BLE001, PERF203 -- re-raised below, after the rest
            if stop is None:
                stop = exc
    if stop is not None:
        raise stop


# -- the registry and fork ------------------------------------------------------

_LIVE: set[weakref.ref[Guard]] = set()
#: Taken to add to the registry, to create the default collector, and for fork.
REGISTRY_LOCK = threading.RLock()
_HELD_FOR_FORK: list[Any] = []
#: The guards whose lock the forking thread itself held, from before to after fork.
_MID_CALL_AT_FORK: list[Guard] = []
# A thread holding a collector's lock releases it within microseconds; the
# bound only matters if fork() is called from code that interrupted the
# holder in its own thread.
_FORK_WAIT_S = 1.0


def under_lock(lock: threading.RLock, fn: Callable[[], _T]) -> _T:
    """
    Call *fn* holding *lock* (an ``RLock``); return what it returns.

    Taken as a collector's lock is (in slices, see :func:`wait_for`, and in a
    ``try`` whose ``finally`` lets pass only the release of a lock never
    taken), not with ``with``: a signal handler that forks while this thread
    waits must leave it waiting on the child's lock, free, not on the one the
    parent held; and in a child forked from inside *fn* (a handler's fork,
    which frees every lock there), an exception that ends the child through
    *fn* (``SystemExit``, ``KeyboardInterrupt``) must not be replaced by the
    release's ``RuntimeError``. The thread that holds it already (the
    default collector, created under the registry lock, registers itself)
    calls *fn* at once.
    """
    if lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
        return fn()
    try:
        if not lock.acquire(False):
            wait_for(lock)
        # Not `return fn()`: the instruction after the call would then be
        # the finally's own first, outside the try, where an exception
        # landing would skip the release.
        result = fn()
    finally:
        try:
            lock.release()
        except RuntimeError as exc:
            if not unheld(exc):
                raise
    return result


def under_registry_lock(fn: Callable[[], _T]) -> _T:
    """Call *fn* holding the registry lock (see :func:`under_lock`)."""
    return under_lock(REGISTRY_LOCK, fn)


def register(guard: Guard) -> None:
    """Make *guard* known to the fork hooks for as long as it lives."""
    under_registry_lock(lambda: _LIVE.add(weakref.ref(guard, _LIVE.discard)))


def live_guards() -> list[Guard]:
    """Every live collector's guard, copied in one step no thread can interrupt."""
    return [guard for guard in (ref() for ref in _LIVE.copy()) if guard is not None]


def _before_fork() -> None:
    held = _HELD_FOR_FORK
    # Listed before acquired: after_in_parent releases what it can and
    # ignores a lock that an exception kept from being taken.
    held.append(REGISTRY_LOCK)
    REGISTRY_LOCK.acquire()
    for guard in live_guards():
        lock = guard.lock
        if guard.owned():
            # Held by this very thread: fork() from a signal handler or
            # finalizer that interrupted a call of its own (see
            # Guard.after_fork_mid_call).
            _MID_CALL_AT_FORK.append(guard)
        held.append(lock)
        if not lock.acquire(timeout=_FORK_WAIT_S):
            held.pop()


def _after_fork_in_parent() -> None:
    _MID_CALL_AT_FORK.clear()
    held = _HELD_FOR_FORK[:]
    _HELD_FOR_FORK.clear()
    for lock in reversed(held):
        try:
            lock.release()
        except RuntimeError:  # noqa: PERF203 -- at most a few locks, once per fork
            # Not held after all: an exception cut _before_fork short.
            continue


def _after_fork_in_child() -> None:
    _HELD_FOR_FORK.clear()
    # Each lock is made free again in place, not replaced: a frame of this
    # thread may be waiting for that very object (a recording asleep on it,
    # whose signal handler forked). Once the handler returns, its current
    # acquire() goes on waiting on what the lock was before the fork, but
    # its next slice (wait_for) asks the object, free now; a new lock would
    # leave it asking the old one, which no thread of the child releases.
    REGISTRY_LOCK._at_fork_reinit()  # type: ignore[attr-defined]  # noqa: SLF001
    for guard in live_guards():
        guard.free_after_fork()
    mid_call = _MID_CALL_AT_FORK[:]
    _MID_CALL_AT_FORK.clear()
    for guard in mid_call:
        react = guard.after_fork_mid_call
        if react is not None:
            react()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
