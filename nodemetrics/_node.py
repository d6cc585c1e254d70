"""The mutable state of one node, and how a recording changes it."""

from __future__ import annotations

from ._metrics import NodeMetrics, unfrozen_metrics
from ._window import RollingWindow


# What a recording does, as queued for the holder of the lock: -1 is a
# success, 0-3 a failure of that category (CATEGORIES' order), then a retry,
# a cancellation and a reset (of the named node, or of all when it is None).
SUCCESS = -1
RETRY = 4
CANCEL = 5
RESET = 9


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
        "cancelled",
        "errors",
        "last",
        "latency_armed",
        "published",
        "rate_armed",
        "retries",
        "snapshot_cache",
        "success",
        "total_ms",
        "window",
    )

    def __init__(self, window_size: int, count_failures: bool) -> None:
        self.success = 0
        # Failures by category; the failure count is their sum, so the two
        # can never disagree.
        self.errors = [0, 0, 0, 0]
        self.retries = 0
        self.cancelled = 0
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

    def add(self, value: float, kind: int) -> None:
        """Count one execution: a success (*kind* -1) or a failure of category *kind*."""
        # The window first: a change cut short then leaves a sample that no
        # count includes, which repair() can see, rather than the reverse.
        self.window.add(value, kind >= 0)
        self.snapshot_cache = None
        if kind < 0:
            self.success += 1
        else:
            self.errors[kind] += 1
        self.last = value
        self.total_ms += value

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
        self.window.extend(values)
        self.snapshot_cache = None
        self.success += len(values)
        self.total_ms = sum(values, self.total_ms)
        self.last = values[-1]

    def repair(self) -> None:
        """Make the node consistent again after an exception cut a change short."""
        self.snapshot_cache = None
        window = self.window
        window.repair()
        if not self.success and not any(self.errors):
            self.last = None
            self.total_ms = 0.0
            window.reset()
            return
        if self.last is None:
            self.last = window.newest()
        if not len(window):
            window.add(self.last, False)

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
        snapshot.__class__ = NodeMetrics
        self.snapshot_cache = self.published = snapshot
        return snapshot  # type: ignore[no-any-return]
