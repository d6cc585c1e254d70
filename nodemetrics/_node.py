"""The mutable state of one node, and how a recording changes it."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from ._histogram import NodeHistogram, _trusted
from ._metrics import NodeMetrics, unfrozen_metrics
from ._window import RollingWindow


# What a recording does, as queued for the holder of the lock: -1 is a
# success, 0-3 a failure of that category (CATEGORIES' order), then a retry,
# a cancellation, an interruption and a reset (of the named node, or of all
# when it is None).
SUCCESS = -1
RETRY = 4
CANCEL = 5
INTERRUPT = 6
RESET = 9

# A node's newest durations wait in its window's ring, counted but not yet in
# its histogram's buckets, until the ring's stretch ends (every 1,024 slots,
# and at the ring's end; see RollingWindow.add), before any of them
# can be evicted: then they are bucketed all at once, sorted and counted bound
# by bound, for a fraction of what a bisect per duration costs. Waiting is
# free: how many wait is the execution count minus the histogram's. Reading a
# histogram buckets them too.
_NO_FAILURES = (0, 0, 0, 0)


class _Node:
    """
    The counts, window and batch of one node.

    Only touched under the collector's lock, but for :attr:`batch`, which
    timed successes append to without it (see ``_sync``). Every change is
    ordered so that an exception landing part-way leaves at most that one
    change half-made, and :meth:`repair` makes the node consistent again.
    """

    __slots__ = (
        "batch",
        "bounds",
        "cancelled",
        "errors",
        "hist",
        "hist_cache",
        "interrupted",
        "last",
        "latency_armed",
        "published",
        "rate_armed",
        "retries",
        "serial",
        "skew",
        "snapshot_cache",
        "success",
        "total_ms",
        "window",
    )

    def __init__(
        self, window_size: int, count_failures: bool, bounds: tuple[float, ...], serial: int = 0
    ) -> None:
        self.success = 0
        # Failures by category (a list from the first failure on); the
        # failure count is their sum, so the two can never disagree.
        self.errors: list[int] | tuple[int, ...] = _NO_FAILURES
        self.retries = 0
        self.cancelled = 0
        self.interrupted = 0
        self.last: float | None = None
        self.total_ms = 0.0
        self.window = RollingWindow(window_size, count_failures=count_failures)
        self.rate_armed = True
        self.latency_armed = True
        # The snapshot while the node is unchanged since it was built, else None.
        self.snapshot_cache: NodeMetrics | None = None
        # The last snapshot built, for a read that interrupts a change of it.
        self.published: NodeMetrics | None = None
        # Successes timed by track() and metered() that are not yet counted:
        # appended to without the lock, folded in under it.
        self.batch: list[float] = []
        # Executions by duration bucket (see NodeHistogram), up to the highest
        # bucket used so far (most nodes use a few low ones); the executions
        # they miss are the newest in the window. And the histogram last
        # read, with the snapshot it was read with.
        self.bounds = bounds
        self.hist: list[int] = []
        self.hist_cache: tuple[NodeMetrics, NodeHistogram] | None = None
        # The window holds one sample per execution counted, added in the
        # same order: this many fewer, after a repair that had to make one up.
        self.skew = 0
        # How many resets its collector had made when it was made: higher for
        # a node made again after a reset (which removes it), so it tells an
        # exporter that the node it last saw under this name was reset since,
        # whatever the counts. Nodes made between two resets share the int.
        self.serial = serial

    def add(self, value: float, kind: int) -> None:
        """Count one execution: a success (*kind* -1) or a failure of category *kind*."""
        # The window first: a change cut short then leaves a sample that no
        # count includes, which repair() can see, rather than the reverse.
        ended = self.window.add(value, kind >= 0)
        self.snapshot_cache = None
        if kind < 0:
            self.success += 1
        else:
            errors = self.errors
            if type(errors) is tuple:
                errors = self.errors = list(errors)
            errors[kind] += 1  # type: ignore[index]
        self.last = value
        self.total_ms += value
        if ended:
            self.bucket()

    def waiting(self) -> int:
        """Return how many of the newest durations in the window the histogram misses."""
        return self.success + sum(self.errors) - sum(self.hist)

    def bucket(self, values: list[float] | None = None) -> None:
        """Put the waiting durations (or *values*, counted already) in the histogram."""
        if values is None:
            waiting = self.waiting()
            if waiting <= 0:
                return
            values = self.window.latest(waiting)
        self.hist = self.bucketed(values)

    def bucketed(self, values: list[float]) -> list[int]:
        """Return a copy of the histogram with *values* (sorted in place) counted in."""
        hist = self.hist[:]
        bounds = self.bounds
        if len(values) == 1:
            i = bisect_left(bounds, values[0])
            if i >= len(hist):
                hist += [0] * (i + 1 - len(hist))
            hist[i] += 1
        else:
            values.sort()
            top = len(bounds)
            i = bisect_left(bounds, values[0])
            needed = (top if values[-1] > bounds[-1] else bisect_left(bounds, values[-1])) + 1
            if needed > len(hist):
                hist += [0] * (needed - len(hist))
            done = 0
            n = len(values)
            # Most durations of a node fall in a few neighbouring buckets: walk
            # only the bounds from the smallest duration's up.
            while done < n:
                if i == top:
                    hist[top] += n - done
                    break
                upto = bisect_right(values, bounds[i], done)
                hist[i] += upto - done
                done = upto
                i += 1
        return hist

    def histogram(self, snapshot: NodeMetrics) -> NodeHistogram:
        """Return the histogram that goes with *snapshot*, this node's current one."""
        cached = self.hist_cache
        # A node's snapshot is the same object until the node changes.
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        self.bucket()
        hist = self.hist
        counts = (*hist, *(0,) * (len(self.bounds) + 1 - len(hist)))
        histogram = _trusted(self.bounds, counts, snapshot.total_executions, self.total_ms)
        self.hist_cache = (snapshot, histogram)
        return histogram

    def fold(self) -> None:
        """Count the batched successes, in the order they came."""
        batch = self.batch
        values = batch[:]
        if not values:
            # Another thread folded it between a caller's check and its lock.
            return
        # Other threads may append meanwhile: delete only what was taken.
        # Deleted first, so that a fold cut short loses its values rather
        # than counting them twice.
        del batch[: len(values)]
        # What waits in the window is bucketed first, before these evict any
        # of it; then these, a list already, which bucketed() sorts in place
        # once the window has its copy and the last is taken. Nothing waits
        # after a fold.
        self.bucket()
        last = values[-1]
        self.window.extend(values)
        self.snapshot_cache = None
        # Bucketed into a copy first; then counted, bucketed and given the
        # last duration with no call in between, where Python 3.11 and later
        # cannot deliver an exception (see _sync): cut short, a fold counts
        # all of its batch or none of it (repair() disowns its durations in
        # the window).
        hist = self.bucketed(values)
        self.success += len(values)
        self.hist = hist
        self.last = last
        self.total_ms = sum(values, self.total_ms)

    def repair(self) -> None:
        """Make the node consistent again after an exception cut a change short."""
        self.snapshot_cache = None
        window = self.window
        window.repair()
        executions = self.success + sum(self.errors)
        if not executions:
            self.last = None
            self.total_ms = 0.0
            self.hist = []
            self.skew = 0
            window.reset()
            return
        # Samples the window took for a change cut short before it counted
        # them: disowned, so that the newest are again the counted ones.
        window.disown(executions - self.skew)
        if self.last is None:
            self.last = window.newest()
        if not len(window):
            window.add(self.last, False)
        self.skew = executions - window.added()
        # The histogram counts every execution once: a duration lost or
        # counted twice by a cut is made up for in the latest one's bucket.
        waiting = min(self.waiting(), len(window))
        if waiting > 0:
            self.bucket(window.latest(waiting))
        hist = self.hist[:]
        latest = bisect_left(self.bounds, self.last)
        if latest >= len(hist):
            hist += [0] * (latest + 1 - len(hist))
        missing = executions - sum(hist)
        while missing < 0:
            fullest = hist.index(max(hist))
            take = min(-missing, hist[fullest])
            hist[fullest] -= take
            missing += take
        hist[latest] += missing
        self.hist = hist

    def snapshot(self) -> NodeMetrics:
        """Return the node's snapshot, folding its batch first."""
        if self.batch:
            self.fold()
        # Between two recordings a node's snapshot cannot change; scrapes
        # read idle nodes over and over.
        if self.snapshot_cache is not None:
            return self.snapshot_cache
        # Built without validation: every value here was validated when it
        # was recorded (see unfrozen_metrics).
        snapshot = unfrozen_metrics()
        timeouts, invalid, network, other = self.errors
        failures = timeouts + invalid + network + other
        snapshot.total_executions = executions = self.success + failures
        snapshot.success_count = self.success
        snapshot.failure_count = failures
        snapshot.retry_count = self.retries
        snapshot.last_execution_ms = self.last
        snapshot.avg_execution_ms = self.total_ms / executions if executions else 0.0
        snapshot.p50, snapshot.p90, snapshot.p99 = self.window.p50_p90_p99()
        snapshot.timeout_errors = timeouts
        snapshot.validation_errors = invalid
        snapshot.network_errors = network
        snapshot.other_errors = other
        snapshot.cancelled_count = self.cancelled
        snapshot.interrupted_count = self.interrupted
        snapshot.__class__ = NodeMetrics
        self.snapshot_cache = self.published = snapshot
        return snapshot  # type: ignore[no-any-return]
