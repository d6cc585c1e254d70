"""
Report a collector through OpenTelemetry metrics.

Needs the ``otel`` extra: ``pip install 'nodemetrics[otel]'``.

.. code-block:: python

    from nodemetrics.exporters.otel import OpenTelemetryExporter

    OpenTelemetryExporter(collector)  # the global MeterProvider's meter "nodemetrics"

The duration histogram is fed one execution at a time. The OpenTelemetry
Python SDK has no way to hand it pre-aggregated data (no ``MetricProducer``:
opentelemetry-python issue #4768), so the exporter registers a listener on
the collector and records every execution, after the collector's lock is
released, into a synchronous ``Histogram``. Recording into the SDK takes
locks of its own; so that a recording made by a signal handler, a finalizer
or a GC callback that interrupted one in the same thread cannot deadlock on
them, only the holder of the exporter's lock calls the SDK, and an execution
made by the thread that holds it already is queued for the holder, which
records the queue before it leaves. The lock follows the collector's
protocol (``nodemetrics._sync``): taken in a ``try`` whose ``finally``
releases it, written out, so that no exception can leave it held, and
made free again in a forked child. The fork hook
takes it before ``os.fork()`` as it takes a collector's (waiting a second at
most), so no other thread is inside this exporter's ``record()``, holding
the SDK's locks, when the process forks. Each collection records what is
still queued before it reads.

The observable counters report the collector's counts, which
``reset_node_metrics()`` sets back to zero; an OpenTelemetry monotonic sum
must never go down, so each counter keeps, per node and attribute set, the
last count it observed and an offset. The collector reads each node's
serial with its snapshot: ``reset_node_metrics()`` drops a node and a later
recording makes a new one, with a new serial, so a serial other than the
one last seen, or a node gone from the collector, means the node was reset,
whatever its counts, and the last observed counts move into the offsets.
Each collection reads the collector and updates these under the exporter's
lock, so that two collections cannot apply their readings out of order. A
recording that finds the lock taken by such a collection waits about as
long as it would have for the collector's own lock, which the read holds
for most of that time anyway; the recording itself does no more than before.

**One exporter per meter provider.** The SDK keeps the first instrument
registered under a name on a meter and silently drops the callbacks of any
later one, and it cannot remove an instrument. So the instruments, the
lock and the counters' totals belong to the meter provider (remembered
weakly, by identity, in :data:`_PROVIDERS`), not to an exporter: the first
exporter on a provider creates them, a second one is refused while the
first is open, and one created after the first's ``close()`` reports
through the same instruments, its counters going on from the totals. The
global provider (``meter_provider=None``) is also remembered as such: until
a global provider is set, the API's proxy hands out meters that forward to
whichever provider is set later.

Node names go through :func:`nodemetrics.exporters._names.label_value`: a
lone surrogate cannot be encoded by an OTLP exporter, which would drop the
attribute (and so merge every such node into one unlabelled series).
"""

from __future__ import annotations

import functools
import weakref

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from nodemetrics import _sync
from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics
from nodemetrics._sync import Events, Guard, fire, under_lock, unheld, wait_for
from nodemetrics._validate import type_name
from nodemetrics.exporters._names import label_value


__all__ = ["OpenTelemetryExporter"]


class OpenTelemetryExporter:
    r"""
    OpenTelemetry instruments that report a nodemetrics collector.

    Registers, on the meter ``nodemetrics`` of *meter_provider* (the global
    provider when omitted):

    - ``nodemetrics.node.duration``: Histogram in seconds, attribute ``node``,
      with the collector's ``buckets`` (divided by 1000) as its explicit
      bucket boundaries (advisory: a View the application configured for
      this instrument takes precedence). Every success and failure recorded
      after the exporter is created is recorded into it once, with its exact
      duration, so counts, sums, min and max are exact. It is cumulative
      unless the reader asks for delta temporality, and, unlike the
      collector's own numbers, it is not emptied by
      :meth:`~nodemetrics.NodeMetricsCollector.reset_node_metrics`.
    - ``nodemetrics.node.window.duration``: ObservableGauge in seconds,
      ``node`` and ``quantile`` (``"0.5"``, ``"0.9"``, ``"0.99"``), over the
      rolling window.
    - ``nodemetrics.node.executions``: ObservableCounter, attributes ``node``
      and ``outcome`` (``success`` or ``failure``);
    - ``nodemetrics.node.failures``: ObservableCounter, ``node`` and
      ``error.type`` (the category);
    - ``nodemetrics.node.retries``, ``nodemetrics.node.cancellations``,
      ``nodemetrics.node.interruptions``: ObservableCounters, ``node``.

    The observable instruments read the collector at each collection. The
    counters, like the histogram, never go down (an OpenTelemetry monotonic
    sum must not): :meth:`~nodemetrics.NodeMetricsCollector.reset_node_metrics`
    does not lower them, a node's later counts are added to what they
    reported before, and a node reset and never recorded again keeps its
    last values. A reset is noticed at the next collection, whatever the
    counts then; what the node counted between the previous collection and
    its reset is missing from the counters.

    A node name that cannot be UTF-8 (a lone surrogate, as ``os.fsdecode()``
    makes of bytes that are not) is written with the surrogate as its
    ``\udcxx`` escape, as the Prometheus exporters write it.

    One meter provider takes one open exporter: OpenTelemetry would keep the
    first exporter's instruments and drop the second one's callbacks. After
    :meth:`close`, another exporter on the same provider reports through the
    same instruments (their bucket boundaries included), its counters going
    on from where they were.

    Thread safety: any number of threads may record while the SDK collects.
    Feeding the histogram costs each execution about one SDK
    ``Histogram.record()`` (see README "Exporting").

    Args:
        collector: The collector to report.
        meter_provider: Where to register the instruments.

    Raises:
        TypeError: *collector* is not a collector, or *meter_provider* is
            neither ``None`` nor a meter provider instance (an object with a
            callable ``get_meter`` that returns a meter), or its meter failed
            to create an instrument (what it raised is chained). Nothing is
            attached to the collector then, and any instrument the meter
            did create observes nothing.
        ValueError: *meter_provider* (or the global provider) has an open
            exporter already, or had one for a collector with other
            ``buckets``. Nothing is created then.
    """

    def __init__(
        self, collector: NodeMetricsCollector, *, meter_provider: MeterProvider | None = None
    ) -> None:
        # By real type, as nodemetrics._validate checks: an object's
        # __class__ could lie or raise.
        if not issubclass(type(collector), NodeMetricsCollector):
            msg = f"collector must be a NodeMetricsCollector, got {type_name(collector)}"
            raise TypeError(msg)
        provider, get_meter = _meter_provider(meter_provider)
        # The global provider as such too, when it is this one: an exporter
        # made on the global provider while it was the API's proxy reports
        # to the provider set later, under another id().
        keys = (
            (id(provider), _GLOBAL)
            if meter_provider is None or metrics.get_meter_provider() is provider
            else (id(provider),)
        )
        self._collector = collector
        # Each execution made while this thread held the lock, for the holder.
        self._queue: deque[tuple[str, float]] = deque()
        which = "meter_provider" if meter_provider is not None else "meter_provider (None: global)"
        instruments, new = _claim(self, provider, keys, collector.buckets, which)
        self._instruments = instruments
        # The provider's lock, with the collector's protocol (see
        # nodemetrics._sync): released by a written-out `finally`, made free again in
        # a forked child.
        self._guard = instruments.guard
        if new:
            try:
                _create(instruments, get_meter)
            except BaseException:
                _abandon(instruments, keys)
                raise
        self._record = instruments.record
        # One bound method, so that close() removes the very object added.
        self._listener = self._on_execution
        collector._add_listener(self._listener)  # noqa: SLF001 -- the exporters' hook

    def __repr__(self) -> str:
        return f"<OpenTelemetryExporter(collector={self._collector!r})>"

    def close(self) -> None:
        """
        Stop reporting this collector.

        The histogram takes no more executions and the observable
        instruments observe nothing from now on.

        OpenTelemetry has no way to remove an instrument from its meter;
        closing frees the collector from the exporter's per-execution cost,
        and lets another exporter report through this one's instruments.
        Closing twice is no error.
        """
        instruments = self._instruments
        if instruments.owner is self:
            instruments.owner = None
        self._collector._remove_listener(self._listener)  # noqa: SLF001 -- the exporters' hook
        self._drain()

    def _on_execution(self, node: str, duration_ms: float) -> None:
        # Paid by every execution, and nothing here can go: callgrind puts
        # the re-entry check, the lock and the queue check at 3.0k
        # instructions of an exported record_success's 76.0k, over a
        # listener that calls record() bare (73.1k, of which record() is
        # 62.0k). A per-node cache of the attributes dict saved 0.1k (the
        # SDK copies and hashes it anyway); recording in batches under one
        # lock saved 2k but would stamp exemplars, and a node's first point,
        # with the time and context of the batch, not of the execution.
        guard = self._guard
        if guard.owned():
            # This thread is inside the SDK's record() already (a signal
            # handler, finalizer or GC callback recorded): calling it again
            # could wait on the SDK's own locks. The holder records it next.
            self._queue.append((node, duration_ms))
            return
        # Another thread holds the lock for one record(), or for one
        # collection's read of the collector (whose own lock the read holds
        # anyway), at most: wait.
        lock = guard.lock
        try:
            if not lock.acquire(False):
                wait_for(lock)
            # label_value() only for a name that is not ASCII: the check costs
            # 0.3k instructions (callgrind: 66.8k -> 67.1k over a plain
            # record_success), a call of label_value() would cost more.
            self._record(
                duration_ms / 1000, {"node": node if node.isascii() else label_value(node)}
            )
            if self._queue:
                self._drain_held()
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _drain(self) -> None:
        guard = self._guard
        if guard.owned():
            return
        lock = guard.lock
        try:
            if not lock.acquire(False):
                wait_for(lock)
            self._drain_held()
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _drain_held(self) -> None:
        # Only what is queued now; later arrivals wait for the next call.
        queue = self._queue
        record = self._record
        for _ in range(len(queue)):
            node, duration_ms = queue.popleft()
            record(duration_ms / 1000, {"node": label_value(node)})

    def _observe_window(self) -> list[Observation]:
        """Read the window's percentiles of every node, for the gauge."""
        # Reading applies what the collector has queued; recording what the
        # exporter has queued then makes this collection's histogram hold
        # every execution that returned before it began.
        snapshots = sorted(self._collector.get_all_node_metrics().items())
        self._drain()
        return [
            observation
            for node, m in snapshots
            for observation in _window_durations(label_value(node), m)
        ]

    def _observe_counter(
        self,
        series: dict[str, _Series],
        observe: Callable[[str, NodeMetrics], Iterable[tuple[int, dict[str, str]]]],
    ) -> list[Observation]:
        """Read the collector, update one counter's *series* and report them."""
        guard = self._guard
        instruments = self._instruments
        reentered = guard.owned()
        if reentered and instruments.observing:
            # A collection nested in one of these callbacks, in its own
            # thread (a signal handler, with a provider that lets
            # collections nest): the totals may be half updated, and a
            # later reading applied before an earlier one could lower
            # them. Observe nothing this time.
            return []
        # The threshold callbacks (and listeners) of the recordings the read
        # applies: user code, run once the lock is released, whatever happens.
        events: Events = []

        def observe_under_lock() -> list[Observation]:
            instruments.observing = True
            try:
                # Read under the lock, so that no other collection updates
                # the totals from a later reading meanwhile.
                readings = self._collector._read_incarnations(events)  # noqa: SLF001 -- see _Series
                if not reentered:
                    self._drain_held()
                observations = _observe_totals(series, observe, readings)
            finally:
                instruments.observing = False
            return observations

        try:
            # Taken as the collector's lock is (see nodemetrics._sync).
            observations = under_lock(guard.lock, observe_under_lock)
        finally:
            if events:
                fire(events)
        return observations


class _Instruments:
    """nodemetrics' instruments on one meter provider, and who reports through them."""

    __slots__ = ("bounds", "guard", "observing", "owner", "record", "totals")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        #: The collector buckets the histogram was created with.
        self.bounds = bounds
        #: Taken to call the SDK's record() and to update the totals.
        self.guard = Guard()
        #: The open exporter that reports through them, if any.
        self.owner: OpenTelemetryExporter | None = None
        #: The histogram's record(), once created.
        self.record: Callable[..., object] = _not_created
        #: Each counter's series, by node (in _COUNTERS' order). Only under the lock.
        self.totals: list[dict[str, _Series]] = [{} for _ in _COUNTERS]
        #: Whether one of the counters' callbacks is reading and updating
        #: its totals (under the lock), for a collection nested in it.
        self.observing = False
        self.guard.after_fork_mid_call = self.forked_mid_record

    def forked_mid_record(self) -> None:
        """
        Never call the SDK's ``record()`` again, in a child forked from inside it.

        A signal handler that forked while its thread held the lock (inside
        ``record()``, or about to be) leaves the SDK's own locks, which that
        call may hold, held for ever in the child: recording there would
        wait for ever. The child's executions are counted by the collector
        but not exported.
        """
        self.record = _not_created
        owner = self.owner
        if owner is not None:
            owner._record = _not_created  # noqa: SLF001

    def counter(
        self,
        series: dict[str, _Series],
        observe: Callable[[str, NodeMetrics], Iterable[tuple[int, dict[str, str]]]],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """Return the callback of one counter: its owner's reading, or nothing."""

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            owner = self.owner
            return [] if owner is None else owner._observe_counter(series, observe)  # noqa: SLF001

        return callback

    def gauge(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Report the window gauge: its owner's reading, or nothing."""
        owner = self.owner
        return [] if owner is None else owner._observe_window()  # noqa: SLF001


def _not_created(*_args: object) -> None:
    """Nothing to record into: the instruments' creation failed."""


class _Total:
    """One attribute set of one node of one counter: what it reports, across resets."""

    __slots__ = ("attributes", "last", "offset")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        #: The count last observed in the collector.
        self.last = 0
        #: What was counted before the collector's count last started from zero.
        self.offset = 0


class _Series:
    """
    One node's attribute sets of one counter, and the node's serial last seen.

    ``reset_node_metrics()`` drops a node and a later recording makes a new
    one: its serial (read with its snapshot, under the collector's lock)
    changes, and so a reset is told for certain, whatever the counts.
    """

    __slots__ = ("serial", "totals")

    def __init__(self, serial: int | None, totals: list[_Total]) -> None:
        self.serial = serial
        self.totals = totals

    def restart(self, serial: int | None) -> None:
        """Move the last counts into the offsets: the node was reset."""
        for total in self.totals:
            total.offset += total.last
            total.last = 0
        self.serial = serial


def _observe_totals(
    series: dict[str, _Series],
    observe: Callable[[str, NodeMetrics], Iterable[tuple[int, dict[str, str]]]],
    readings: dict[str, tuple[int, NodeMetrics]],
) -> list[Observation]:
    """
    Update *series* from one reading of the collector, and report them.

    A node read with a serial other than the one last seen, or no longer in
    the collector, was reset: its last counts move into the offsets, so that
    no total ever goes down. A node that is gone keeps being reported with
    its totals, so that a stream neither drops nor, when the node comes
    back, starts again from zero. Two names written as one attribute value
    (a lone surrogate and its escape spelled out) add up.
    """
    for node, (serial, m) in sorted(readings.items()):
        counts = list(observe(label_value(node), m))
        known = series.get(node)
        if known is None:
            known = series[node] = _Series(serial, [_Total(a) for _, a in counts])
        elif known.serial != serial:
            known.restart(serial)
        for total, (count, _) in zip(known.totals, counts, strict=True):
            total.last = count
    values: dict[tuple[str, ...], int] = {}
    attributes: dict[tuple[str, ...], dict[str, str]] = {}
    for node, known in series.items():
        if node not in readings and known.serial is not None:
            known.restart(None)
        for total in known.totals:
            key = tuple(total.attributes.values())
            values[key] = values.get(key, 0) + total.offset + total.last
            attributes[key] = total.attributes
    return [Observation(value, attributes[key]) for key, value in values.items()]


#: The meter providers exporters were created on, by ``id()``: a weak
#: reference to the provider (or, for one that takes none, a function that
#: returns it, which keeps it alive) and its instruments. ``_GLOBAL`` is the
#: global provider, whatever it was then: until one is set, the API hands
#: out proxy meters that forward to the provider set later.
_PROVIDERS: dict[int, tuple[Callable[[], object], _Instruments]] = {}
#: No object's id(): the key of the global provider.
_GLOBAL = 0


def _claim(
    exporter: OpenTelemetryExporter,
    provider: object,
    keys: tuple[int, ...],
    bounds: tuple[float, ...],
    which: str,
) -> tuple[_Instruments, bool]:
    """
    Make *exporter* the owner of *provider*'s instruments, new ones if it has none.

    *keys* are the provider's keys in :data:`_PROVIDERS`: its ``id()``, and
    :data:`_GLOBAL` if it is the global provider; *which* names it in an error.
    Returns the instruments and whether they are new (still to be created).
    The registry's lock is held only for these few dict operations, which
    run no user code; a weak reference's callback never takes it.

    Raises:
        ValueError: An open exporter owns them, or they were created for
            other buckets.
    """

    def claim() -> tuple[_Instruments, bool]:
        found = [
            entry[1]
            for key in keys
            if (entry := _PROVIDERS.get(key)) is not None and entry[0]() is not None
        ]
        for instruments in found:
            if instruments.owner is not None:
                msg = (
                    f"{which} already has a live exporter, {instruments.owner!r}: OpenTelemetry"
                    " would drop this one's callbacks; close() that one first, or give each"
                    " collector a MeterProvider of its own"
                )
                raise ValueError(msg)
        new = not found
        instruments = _Instruments(bounds) if new else found[0]
        if instruments.bounds != bounds:
            msg = (
                f"meter_provider already has nodemetrics' histogram, with buckets"
                f" {instruments.bounds} (OpenTelemetry keeps them): a collector with buckets"
                f" {bounds} needs a MeterProvider of its own"
            )
            raise ValueError(msg)
        instruments.owner = exporter
        for key in keys:
            _PROVIDERS[key] = _reference(provider, key), instruments
        return instruments, new

    # Not `with`: see _sync.under_lock.
    return _sync.under_registry_lock(claim)


def _reference(provider: object, key: int) -> Callable[[], object]:
    """Return a weak reference to *provider* that forgets *key* when it dies."""
    try:
        return weakref.ref(provider, functools.partial(_forget, key))
    except TypeError:
        # It takes no weak reference: remembered for good, as the SDK would
        # remember its instruments.
        return functools.partial(_itself, provider)


def _itself(provider: object) -> object:
    return provider


def _forget(key: int, reference: weakref.ref[Any]) -> None:
    # Run by the garbage collector, maybe in a thread that holds the
    # registry's lock: plain dict operations only.
    entry = _PROVIDERS.get(key)
    if entry is not None and entry[0] is reference:
        _PROVIDERS.pop(key, None)


def _abandon(instruments: _Instruments, keys: tuple[int, ...]) -> None:
    """Forget *instruments*, whose creation failed: what was created observes nothing."""
    instruments.owner = None

    def forget() -> None:
        for key in keys:
            entry = _PROVIDERS.get(key)
            if entry is not None and entry[1] is instruments:
                del _PROVIDERS[key]

    # Not `with`: see _sync.under_lock.
    _sync.under_registry_lock(forget)


def _create(instruments: _Instruments, get_meter: Callable[[str], object]) -> None:
    """
    Create the instruments on the meter ``nodemetrics`` of *get_meter*.

    Raises:
        TypeError: ``get_meter`` raised, returned no meter, or the meter
            raised creating an instrument; what was raised is chained.
    """
    try:
        meter = get_meter("nodemetrics")
    except Exception as exc:
        msg = f"meter_provider.get_meter('nodemetrics') raised {type_name(exc)}"
        raise TypeError(msg) from exc
    create_histogram, create_counter, create_gauge = _creators(meter)
    name = "nodemetrics.node.duration"
    try:
        instruments.record = create_histogram(
            name,
            unit="s",
            description="Durations of a node's executions.",
            explicit_bucket_boundaries_advisory=[bound / 1000 for bound in instruments.bounds],
        ).record
        for (name, observe, unit, description), series in zip(
            _COUNTERS, instruments.totals, strict=True
        ):
            create_counter(
                name,
                callbacks=[instruments.counter(series, observe)],
                unit=unit,
                description=description,
            )
        name = "nodemetrics.node.window.duration"
        create_gauge(
            name,
            callbacks=[instruments.gauge],
            unit="s",
            description="Percentiles of a node's durations over its rolling window.",
        )
    except Exception as exc:
        msg = f"meter_provider's meter raised {type_name(exc)} creating {name}"
        raise TypeError(msg) from exc


_CREATORS = ("create_histogram", "create_observable_counter", "create_observable_gauge")


def _creators(meter: object) -> list[Callable[..., Any]]:
    """
    Return the meter's methods that create the instruments.

    Raises:
        TypeError: *meter* lacks one of them (``get_meter`` returned no meter).
    """
    try:
        found: list[object] = [getattr(meter, name, None) for name in _CREATORS]
    except Exception:  # noqa: BLE001 -- a hostile attribute must not replace our error
        found = []
    if len(found) != len(_CREATORS) or not all(map(callable, found)):
        msg = f"meter_provider.get_meter() must return a Meter, got {type_name(meter)}"
        raise TypeError(msg)
    return cast("list[Callable[..., Any]]", found)


def _meter_provider(meter_provider: object) -> tuple[object, Callable[[str], object]]:
    """
    Return *meter_provider* (the global provider if ``None``) and its ``get_meter``.

    Raises:
        TypeError: *meter_provider* is neither ``None`` nor an instance with
            a callable ``get_meter``.
    """
    if meter_provider is None:
        provider = metrics.get_meter_provider()
        return provider, provider.get_meter
    # By real type, as nodemetrics._validate checks: an object's __class__
    # could lie or raise. A class has get_meter too, as a plain function.
    if issubclass(type(meter_provider), type):
        name = type.__dict__["__name__"].__get__(meter_provider)
        msg = f"meter_provider must be a MeterProvider instance, got the class {name}"
        raise TypeError(msg)
    if issubclass(type(meter_provider), MeterProvider):
        return meter_provider, cast("MeterProvider", meter_provider).get_meter
    # Any other object with a callable get_meter will do: the API's
    # MeterProvider is an interface, which an implementation need not subclass.
    try:
        get_meter: object = getattr(meter_provider, "get_meter", None)
    except Exception:  # noqa: BLE001 -- a hostile attribute must not replace our error
        get_meter = None
    if not callable(get_meter):
        msg = (
            "meter_provider must be a MeterProvider (an object with a callable"
            f" get_meter) or None, got {type_name(meter_provider)}"
        )
        raise TypeError(msg)
    return meter_provider, cast("Callable[[str], object]", get_meter)


def _executions(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.success_count, {"node": node, "outcome": "success"}
    yield m.failure_count, {"node": node, "outcome": "failure"}


def _failures(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    for category, field in FAILURE_FIELDS:
        yield getattr(m, field), {"node": node, "error.type": category}


def _retries(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.retry_count, {"node": node}


def _cancellations(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.cancelled_count, {"node": node}


def _interruptions(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.interrupted_count, {"node": node}


def _window_durations(node: str, m: NodeMetrics) -> Iterable[Observation]:
    for quantile, field in QUANTILE_FIELDS:
        value = getattr(m, field)
        if value is not None:
            yield Observation(value / 1000, {"node": node, "quantile": quantile})


_COUNTERS = (
    (
        "nodemetrics.node.executions",
        _executions,
        "{execution}",
        "Executions of a node, by outcome.",
    ),
    ("nodemetrics.node.failures", _failures, "{execution}", "Failed executions, by category."),
    ("nodemetrics.node.retries", _retries, "{retry}", "Retries of a node."),
    ("nodemetrics.node.cancellations", _cancellations, "{execution}", "Cancelled executions."),
    ("nodemetrics.node.interruptions", _interruptions, "{execution}", "Paused executions."),
)
