r"""
Feed prometheus_client's multiprocess mode from a collector in each worker process.

Needs the ``prometheus`` extra. With ``PROMETHEUS_MULTIPROC_DIR`` set (before
prometheus_client is first imported), prometheus_client keeps every
worker's metrics in memory-mapped files in that directory, and the endpoint
that serves ``MultiProcessCollector`` sums them; custom collectors such as
:class:`~nodemetrics.exporters.prometheus.PrometheusExporter` are not read
there. So each worker makes one call:

.. code-block:: python

    from nodemetrics.exporters.prometheus_multiprocess import start_multiprocess_sync

    start_multiprocess_sync(collector)  # in each worker, or once before forking them

and a background thread copies the collector's counters and duration
histogram into prometheus_client metrics of the same names every
*interval_s* seconds, and once more when the process exits.

The protocol, written down once: a :class:`MultiProcessSync` takes its own
lock around a sync (the background thread, an explicit :meth:`sync` and the
exit hook take turns; one that cannot get the lock within a second, such as
a sync from a signal handler that interrupted another, gives up and leaves
the work to the next). A sync reads the collector once
(``collector._read_all_incarnations()``, one instant, with each node's
serial) and increments each mirrored series by what its node gained since
the previous sync, or by all it has if the node was reset since. After ``os.fork()`` the
child keeps nothing the parent counted: it takes the collector's state at
the fork as its starting point and restarts its thread if the parent had
one, so the parent's counts are never mirrored twice. A sync enters
prometheus_client one node at a time, under a second lock of its own; before
the fork, every live sync's second lock is taken (waiting at most a second
for each, as a sync does), so that no sync is inside prometheus_client,
holding one of its locks, when the process is copied: prometheus_client does
not renew its locks in a child, and one copied while held would never be
released there. (Waiting for a whole sync instead could take longer than
that second: a first sync of thousands of nodes creates their series.) A
fork from inside a sync's prometheus_client call, by a signal handler of
that very thread, cannot wait for it: no sync of that child enters
prometheus_client (each logs ``nodemetrics.multiprocess_sync_off`` once).

A process mirrors a collector once per namespace: in multiprocess mode every
sync of it writes the same series of the same files, so a second would add
every count again. :func:`start_multiprocess_sync` finds the collector's sync
(one it started before, one a forked child inherited, or one made by hand)
and starts it, again if it was stopped, with the new interval; and
``MultiProcessSync(...)`` refuses to make a second. Finding, creating (with
the registration in a given registry, all or nothing) and starting a sync
happen under the collectors' registry lock
(``nodemetrics._sync.REGISTRY_LOCK``), which their fork hook takes too: no
two threads make two syncs of one collector, and no fork lands while a sync
is being registered, holding the lock of prometheus_client's registry.

A node name that UTF-8 cannot encode (one with a lone surrogate, as
``os.listdir()`` or ``os.environ`` give for undecodable bytes) is exported
with those characters backslash-escaped (``"bad\udcff"``), since a scrape
must be UTF-8; every other name is exported as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing.util
import os
import threading
import weakref

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from nodemetrics import _sync
from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._log import log
from nodemetrics._metrics import counts_of
from nodemetrics._sync import Events, Guard, fire
from nodemetrics._validate import to_real, type_name
from nodemetrics.exporters._names import label_value
from nodemetrics.exporters.prometheus import _check_args


__all__ = ["MultiProcessSync", "start_multiprocess_sync"]

# A sync waits this long for another to finish, then leaves its work to the next.
_LOCK_WAIT_S = 1.0
_CATEGORIES = ("timeout", "validation", "network", "other")


class MultiProcessSync:
    """
    Mirrors a collector's counters and histogram into prometheus_client metrics.

    The metrics are ``<ns>_node_executions_total{node, outcome}``,
    ``<ns>_node_failures_total{node, category}``,
    ``<ns>_node_retries_total{node}``, ``<ns>_node_cancellations_total{node}``,
    ``<ns>_node_interruptions_total{node}`` and the histogram
    ``<ns>_node_duration_seconds{node, le}``: the same names, labels and
    buckets as
    :class:`~nodemetrics.exporters.prometheus.PrometheusExporter`'s. The
    window's quantiles and the last duration belong to one process and are
    not mirrored.

    Mirrored series only grow: a node reset between two syncs is told for
    certain (the collector reads each node's serial with its snapshot, and
    a reset node recorded again is a new one), and all its later executions
    are added on top. What the node recorded between the previous sync and
    its reset is not mirrored.

    Most code calls :func:`start_multiprocess_sync` instead.

    Args:
        collector: The collector to mirror.
        namespace: The prefix of every metric name.
        registry: Where to register the mirrored metrics; ``None`` (the
            default) registers them nowhere, which is what multiprocess mode
            wants: ``MultiProcessCollector`` reads them from their files. A
            registry that refuses one of them is left as it was.

    The ``node`` label is the node's name, except that a lone surrogate,
    which UTF-8 cannot encode and no scrape can carry, is written as its
    backslash escape, as the exporter writes it.

    Raises:
        TypeError: *collector* is not a collector, *namespace* not a str, or
            *registry* neither a ``CollectorRegistry`` nor ``None``.
        ValueError: *namespace* is not a valid metric name prefix;
            *registry* already holds a metric that one of these would clash
            with (the message names it); or, in multiprocess mode, this
            process already has a sync of *collector* with this *namespace*
            (:func:`start_multiprocess_sync` returns that one).
    """

    def __init__(
        self,
        collector: NodeMetricsCollector,
        *,
        namespace: str = "nodemetrics",
        registry: CollectorRegistry | None = None,
    ) -> None:
        namespace = _check_args(collector, namespace)
        # By real type, as _check_args does: a __class__ property could lie or raise.
        if registry is not None and not issubclass(type(registry), CollectorRegistry):
            msg = (
                "registry must be a prometheus_client CollectorRegistry or None, "
                f"got {type_name(registry)}"
            )
            raise TypeError(msg)
        self._collector = collector
        self._namespace = namespace
        self._lock = threading.Lock()
        # Its lock is held while this sync is inside prometheus_client, one
        # node at a time. A Guard, so that the collectors' fork hook
        # (nodemetrics._sync) takes it before a fork, as it takes theirs, and
        # makes it free again in the child: no fork copies a prometheus_client lock held.
        # But for a fork from inside this sync's prometheus_client call, in its
        # own thread (a signal handler's): that call may hold prometheus_client's
        # own locks, for ever in the child, which then never enters it again.
        self._client = Guard()
        self._client.after_fork_mid_call = self._forked_inside_client
        self._said_off = False
        # By node: what was mirrored (counts, then the sum in ms), and the
        # increment of each mirrored series in the same order.
        self._seen: dict[str, tuple[tuple[int, ...], float, int]] = {}
        self._series: dict[str, tuple[Any, ...]] = {}
        self._interval_s = 0.0
        self._stop = threading.Event()
        # Set to make the thread wait afresh: stopped, or a new interval.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        p = f"{namespace}_node_"

        # Under the collectors' registry lock, which their fork hook takes
        # (nodemetrics._sync): no fork copies prometheus_client mid-creation
        # or mid-registration, and no other thread makes a second sync of
        # this collector meanwhile.
        def locked() -> None:
            if _sync_of(collector, namespace) is not None and _multiprocess_mode():
                msg = (
                    f"collector already has a MultiProcessSync for namespace {namespace!r} "
                    "in this process, which writes the same series: a second would mirror "
                    "every count twice; use that one (start_multiprocess_sync() returns it)"
                )
                raise ValueError(msg)
            self._executions = Counter(
                f"{p}executions",
                "Executions of a node, by outcome.",
                ["node", "outcome"],
                registry=None,
            )
            self._failures = Counter(
                f"{p}failures",
                "Failed executions of a node, by category.",
                ["node", "category"],
                registry=None,
            )
            self._retries = Counter(f"{p}retries", "Retries of a node.", ["node"], registry=None)
            self._cancellations = Counter(
                f"{p}cancellations", "Cancelled executions of a node.", ["node"], registry=None
            )
            self._interruptions = Counter(
                f"{p}interruptions",
                "Executions of a node that paused (interrupted).",
                ["node"],
                registry=None,
            )
            self._duration = Histogram(
                f"{p}duration_seconds",
                "Durations of a node's executions since its last reset.",
                ["node"],
                buckets=[b / 1000 for b in collector.buckets],
                registry=None,
            )
            if registry is not None:
                _register_all(
                    registry,
                    [
                        (f"{p}executions_total", self._executions),
                        (f"{p}failures_total", self._failures),
                        (f"{p}retries_total", self._retries),
                        (f"{p}cancellations_total", self._cancellations),
                        (f"{p}interruptions_total", self._interruptions),
                        (f"{p}duration_seconds", self._duration),
                    ],
                )
            _LIVE.add(weakref.ref(self, _LIVE.discard))

        # Not `with`: see nodemetrics._sync.under_lock.
        _sync.under_registry_lock(locked)

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<MultiProcessSync(nodes={len(self._seen)}, running={running})>"

    def sync(self) -> None:
        """
        Mirror what the collector gained since the last sync, now.

        Thread-safe; never raises: a failure is logged.
        """
        if self._off_in_this_child():
            return
        # The lock acquired, released: a forked child's hook may replace
        # self._lock meanwhile (see _after_fork_in_child).
        lock = self._lock
        if not lock.acquire(timeout=_LOCK_WAIT_S):
            return
        # The threshold callbacks (and listeners) of the recordings the read
        # applies: user code, run once the lock is released, whatever happens.
        events: Events = []
        try:
            try:
                self._sync(events)
            except Exception:  # noqa: BLE001 -- a metrics sync must never break the worker
                log(
                    "ERROR",
                    "nodemetrics.multiprocess_sync_failed: could not mirror the collector",
                    exception=True,
                )
            finally:
                lock.release()
        finally:
            if events:
                fire(events)

    def _state(self, deferred: Events) -> dict[str, tuple[tuple[int, ...], float, int]]:
        state = {}
        # One instant, with each node's serial, which a reset changes.
        read = self._collector._read_all_incarnations(deferred)  # noqa: SLF001
        for node, (m, h, serial) in read.items():
            # Every count but the total (the sum of the first two), then the buckets.
            counts = (*counts_of(m)[1:], *h.counts)
            state[node] = (counts, h.sum_ms, serial)
        return state

    def _forked_inside_client(self) -> None:
        # In a child forked from inside this sync's prometheus_client call,
        # which may hold prometheus_client's own locks (one for every value of
        # the process, in multiprocess mode): no sync of this child enters it.
        global _INSIDE_AT_FORK  # noqa: PLW0603 -- the child's one fact, for every sync
        _INSIDE_AT_FORK = True

    def _off_in_this_child(self) -> bool:
        # Whether this child was forked from inside prometheus_client (see
        # _forked_inside_client), which it must then never enter: that could
        # wait for ever. Said once a sync.
        if not _INSIDE_AT_FORK:
            return False
        if not self._said_off:
            self._said_off = True
            log(
                "WARNING",
                "nodemetrics.multiprocess_sync_off: this process was forked from inside "
                "prometheus_client (by a signal handler), whose locks may be held for "
                "ever here: its counts are not mirrored",
            )
        return True

    def _sync(self, deferred: Events) -> None:
        """Mirror what the collector gained; add the callbacks its read applies to *deferred*."""
        state = self._state(deferred)
        seen = self._seen
        for node in [node for node in seen if node not in state]:
            del seen[node]  # reset: it starts again from zero
        for node, reading in state.items():
            before = seen.get(node)
            if before == reading:
                continue
            counts, sum_ms, serial = reading
            if before is None or before[2] != serial:
                # New, or reset since (a new incarnation): all of it is new.
                before = ((0,) * len(counts), 0.0, serial)
            # Not `with`: see nodemetrics._sync.under_lock.
            _sync.under_lock(
                self._client.lock,
                functools.partial(self._mirror, node, counts, before[0], sum_ms - before[1]),
            )
            seen[node] = reading

    def _mirror(
        self, node: str, counts: tuple[int, ...], before: tuple[int, ...], sum_ms: float
    ) -> None:
        # Inside prometheus_client, under the client lock: what *node* gained.
        series = self._series.get(node)
        if series is None:
            series = self._series[node] = self._series_of(node)
        for inc, now, then in zip(series[:-1], counts, before, strict=True):
            if now != then:
                inc(now - then)
        if sum_ms:
            series[-1](sum_ms / 1000)

    def _series_of(self, node: str) -> tuple[Any, ...]:
        # Once per node (the series are cached), so the label is computed here.
        node = label_value(node)
        histogram = self._duration.labels(node)
        # prometheus_client has no public way to add n observations to one
        # bucket, nor to add to a histogram's sum alone: its per-bucket and
        # sum values (multiprocess-aware, non-cumulative) are used directly.
        return (
            self._executions.labels(node, "success").inc,
            self._executions.labels(node, "failure").inc,
            *(self._failures.labels(node, category).inc for category in _CATEGORIES),
            self._retries.labels(node).inc,
            self._cancellations.labels(node).inc,
            self._interruptions.labels(node).inc,
            *(bucket.inc for bucket in histogram._buckets),  # noqa: SLF001
            histogram._sum.inc,  # noqa: SLF001
        )

    def start(self, interval_s: float = 5.0) -> None:
        """
        Sync every *interval_s* seconds in a daemon thread, and once more at exit.

        The exit sync runs at interpreter exit (``atexit``) and when a
        :mod:`multiprocessing` worker ends normally (which skips ``atexit``).
        Starting a running sync again changes only the interval, at once:
        the next sync comes *interval_s* seconds after this call. Thread-safe.

        Raises:
            TypeError: *interval_s* is not a real number.
            ValueError: *interval_s* is not > 0 and at most
                ``threading.TIMEOUT_MAX`` (the longest wait a thread can
                make; a longer one would end the thread with an error).
        """
        interval = _check_interval(interval_s)

        # Under the registry lock, so that start_multiprocess_sync() finds and
        # starts a sync in one step, and two starts never make two threads.
        def locked() -> None:
            self._interval_s = interval
            if self._thread is not None and self._thread.is_alive():
                # It waits out the interval it had: it waits afresh, with this one.
                self._wake.set()
                return
            first = self._thread is None
            self._stop.clear()
            self._wake.clear()
            # Started before it is published: a stop() in another thread
            # (which takes no lock) joins only a thread that has started.
            thread = threading.Thread(
                target=self._run, name="nodemetrics-multiprocess-sync", daemon=True
            )
            thread.start()
            self._thread = thread
            if first:
                atexit.register(self.stop)
                self._finalize_at_worker_exit()
                # A multiprocessing child forgets its parent's finalizers when it
                # starts, and then runs these.
                multiprocessing.util.register_after_fork(
                    self, MultiProcessSync._finalize_at_worker_exit
                )

        # Not `with`: see nodemetrics._sync.under_lock.
        _sync.under_registry_lock(locked)

    def _finalize_at_worker_exit(self) -> None:
        # multiprocessing ends its workers with os._exit(), skipping atexit,
        # but runs these finalizers first.
        multiprocessing.util.Finalize(None, self.stop, exitpriority=100)

    def _run(self) -> None:
        wake, stop = self._wake, self._stop
        while True:
            woken = wake.wait(self._interval_s)
            if stop.is_set():
                return
            if woken:
                # A new interval: wait it from now.
                wake.clear()
                continue
            self.sync()

    def stop(self) -> None:
        """Stop the background thread, if any, then sync one last time. Idempotent."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.sync()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        events: Events = []
        self._seen = self._state(events)
        if self._thread is not None and not self._stop.is_set():
            # The thread did not survive the fork; its exit hooks did.
            self._wake = threading.Event()
            thread = threading.Thread(
                target=self._run, name="nodemetrics-multiprocess-sync", daemon=True
            )
            thread.start()
            self._thread = thread
        if events:
            fire(events)


#: Whether this process was forked from inside prometheus_client (see
#: MultiProcessSync._forked_inside_client).
_INSIDE_AT_FORK = False


def start_multiprocess_sync(
    collector: NodeMetricsCollector, *, interval_s: float = 5.0, namespace: str = "nodemetrics"
) -> MultiProcessSync:
    """
    Mirror *collector* into prometheus_client's multiprocess files, from now on.

    The one call a worker process makes: every *interval_s* seconds, and when
    the process exits, the collector's counters and duration histogram are
    added to the worker's files in ``PROMETHEUS_MULTIPROC_DIR``, and the
    endpoint serving ``MultiProcessCollector`` sums every worker's. See
    :class:`MultiProcessSync`.

    Calling it again for the same collector and namespace in the same
    process (in a worker that inherited the sync started before the fork,
    say) mirrors nothing twice: it returns the sync this process already
    has, running again if it was stopped, with the new *interval_s*.

    Args:
        collector: The worker's collector.
        interval_s: Seconds between syncs: how stale a scrape may be.
        namespace: The prefix of every metric name.

    Returns:
        The running sync of *collector* and *namespace* in this process;
        :meth:`MultiProcessSync.stop` ends it.

    Raises:
        RuntimeError: prometheus_client is not in multiprocess mode
            (``PROMETHEUS_MULTIPROC_DIR`` was not set when it was imported).
        TypeError: An argument has the wrong type.
        ValueError: *interval_s* or *namespace* is out of range.
    """
    if not _multiprocess_mode():
        msg = (
            "prometheus_client is not in multiprocess mode: set PROMETHEUS_MULTIPROC_DIR "
            "before prometheus_client is first imported"
        )
        raise RuntimeError(msg)
    namespace = _check_args(collector, namespace)
    interval = _check_interval(interval_s)

    def find_or_make() -> MultiProcessSync:
        sync = _sync_of(collector, namespace)
        if sync is None:
            sync = MultiProcessSync(collector, namespace=namespace)
        sync.start(interval)
        return sync

    # Not `with`: see nodemetrics._sync.under_lock.
    return _sync.under_registry_lock(find_or_make)


def _multiprocess_mode() -> bool:
    from prometheus_client import values  # noqa: PLC0415 -- read at call time

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _check_interval(interval_s: object) -> float:
    interval = to_real(interval_s, "interval_s")
    # NaN and infinity fail the comparison too.
    if not 0.0 < interval <= threading.TIMEOUT_MAX:
        msg = f"interval_s must be finite, > 0 and <= {threading.TIMEOUT_MAX:g}, got {interval!r}"
        raise ValueError(msg)
    return interval


def _sync_of(collector: NodeMetricsCollector, namespace: str) -> MultiProcessSync | None:
    # Under the registry lock, which every sync is added to _LIVE under.
    for sync in _live_syncs():
        if sync._collector is collector and sync._namespace == namespace:  # noqa: SLF001
            return sync
    return None


_DUPLICATE = "Duplicated timeseries in CollectorRegistry: "


def _register_all(registry: CollectorRegistry, metrics: list[tuple[str, Any]]) -> None:
    # All or none: a registry that refuses one metric is left as it was.
    added: list[tuple[str, Any]] = []
    try:
        for item in metrics:
            # Listed before registered: an exception landing just after
            # register() returned still has it unregistered below.
            added.append(item)
            registry.register(item[1])
    except ValueError as exc:
        _unregister_all(registry, added)
        # prometheus_client's refusal of a duplicate: a ValueError, of the
        # subclass DuplicateTimeseries from 0.22 on, which names the series.
        text = str(exc)
        if not text.startswith(_DUPLICATE):
            msg = f"registry refused {added[-1][0]} (ValueError: {text}); it was left as it was"
            raise ValueError(msg) from exc
        msg = (
            f"registry already holds a metric that clashes with {added[-1][0]} "
            f"(the same series: {text.removeprefix(_DUPLICATE)}); it was left as it was"
        )
        raise ValueError(msg) from exc
    except Exception as exc:
        # A CollectorRegistry subclass's own register() failed.
        _unregister_all(registry, added)
        msg = (
            f"registry refused {added[-1][0]} ({type(exc).__name__}: {exc}); it was left as it was"
        )
        raise ValueError(msg) from exc
    except BaseException:
        _unregister_all(registry, added)
        raise


def _unregister_all(registry: CollectorRegistry, added: list[tuple[str, Any]]) -> None:
    for _, metric in reversed(added):
        # The one refused was never registered: unregister() raises KeyError.
        with contextlib.suppress(KeyError):
            registry.unregister(metric)


# Every live MultiProcessSync, for the fork hook that restarts their threads
# in a child: a plain set of weak references, added to under the registry
# lock and copied with set.copy(), which no other thread can interrupt
# (iterating a WeakSet while another thread adds to it could raise). The
# locks a fork must not copy held are the Guards' (see MultiProcessSync),
# which nodemetrics._sync's own hooks take and make free again.
_LIVE: set[weakref.ref[MultiProcessSync]] = set()


def _live_syncs() -> list[MultiProcessSync]:
    return [sync for sync in (ref() for ref in _LIVE.copy()) if sync is not None]


def _after_fork_in_child() -> None:
    # After nodemetrics._sync's hook (registered first, so run first in the
    # child), which made every Guard's lock and the registry lock free again.
    for sync in _live_syncs():
        sync._after_fork_in_child()  # noqa: SLF001


os.register_at_fork(after_in_child=_after_fork_in_child)
