"""
What the OpenTelemetry exporter adds to each recording, next to baselines.

Run with ``python benchmarks/bench_otel.py`` (``--quick`` for a run of a few
seconds that only proves it works). Needs ``opentelemetry-sdk``. Prints a
Markdown table of rows ``(figure, ns, baseline, ns, ratio, target)``.

The exporter feeds its duration histogram one execution at a time (the SDK
takes no pre-aggregated points), so each execution of an exported collector
also pays one SDK ``Histogram.record()``. The figures: a ``record_success``
and a ``with track()`` block with and without an exporter attached, the
SDK's own ``Histogram.record()``, and what one collection costs per node.
Two more split what an exported ``record_success`` pays besides the SDK: a
collector with a listener that does nothing (the collector's hook), and one
whose listener calls ``record()`` with nothing around it (a "bare
listener": the cheapest way to feed the SDK from the hook, without the
exporter's lock, so not safe from re-entry or across ``fork()``). The
targets bound what each part can change: the exporter's own code against
the bare listener, and the hook against the SDK's ``record()``; the totals
against the SDK are printed for reading (README "Exporting" says why).
As in ``benchmarks/bench.py``, every statement is timed once per round by
the thread's CPU clock, rounds interleave all statements, and a row's ratio
is the median of its per-round ratios (the figures printed beside it are
that round's), so that a machine whose speed drifts, or other processes on
it, slow a figure and its baseline alike.

On a machine too loaded for wall-clock figures, count instructions instead:
``valgrind --tool=callgrind python benchmarks/bench_otel.py --run NAME``
runs one statement 2,000 times, with the garbage collector off as in the
timed rounds; the difference between two statements' totals, divided by
2,000, is what one call of one costs more than the other (set
``PYTHONHASHSEED=0`` so that both runs lay their dicts out alike).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import random
import statistics
import sys
import timeit

from collections.abc import Callable
from time import thread_time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.otel import OpenTelemetryExporter


Row = tuple[str, float, str, float, float, float | None]


def durations() -> Callable[[], float]:
    """An endless, repeatable stream of plausible durations in ms."""
    rng = random.Random(0)
    return itertools.cycle([rng.expovariate(1 / 20) for _ in range(4096)]).__next__


Rounds = list[float]


def timed(stmts: dict[str, Callable[[], object]], *, quick: bool) -> dict[str, Rounds]:
    """The ns per call of each statement in every round, timed in interleaved rounds."""
    repeat, target_s = (5, 0.002) if quick else (25, 0.02)
    loops = {}
    for name, stmt in stmts.items():
        # The thread's CPU clock, as in bench.py: other processes on a shared
        # machine take wall time from a statement, not CPU time.
        timer = timeit.Timer(stmt, timer=thread_time)
        number = 1
        while (elapsed := timer.timeit(number)) < 0.001:
            number *= 10
        number = max(1, int(number * target_s / elapsed))
        timer.timeit(number)  # warm-up
        loops[name] = (timer, number)
    rounds: dict[str, list[float]] = {name: [] for name in loops}
    gc.disable()
    try:
        for _ in range(repeat):
            for name, (timer, number) in loops.items():
                rounds[name].append(timer.timeit(number) / number)
    finally:
        gc.enable()
    return {name: [t * 1e9 for t in times] for name, times in rounds.items()}


def exported(reader: InMemoryMetricReader) -> NodeMetricsCollector:
    """A collector with an exporter attached, on a provider of its own."""
    c = NodeMetricsCollector()
    provider = MeterProvider(metric_readers=[reader])
    OpenTelemetryExporter(c, meter_provider=provider)
    return c


NODES = 100  # in the collection statement


def sdk_histogram(name: str, buckets_ms: tuple[float, ...]) -> Any:
    """An SDK Histogram in seconds, with a reader (so that it really aggregates)."""
    return (
        MeterProvider(metric_readers=[InMemoryMetricReader()])
        .get_meter("bench")
        .create_histogram(
            name,
            unit="s",
            explicit_bucket_boundaries_advisory=[b / 1000 for b in buckets_ms],
        )
    )


def statements() -> dict[str, Callable[[], object]]:
    """The timed statements, by name."""
    nxt = durations()
    plain = NodeMetricsCollector()
    plain.record_success("n", 1.0)
    # Both with a reader, so that the SDK really aggregates (without one it
    # drops each measurement early), and with the same boundaries.
    with_otel = exported(InMemoryMetricReader())
    with_otel.record_success("n", 1.0)
    sdk_hist = sdk_histogram("bench", with_otel.buckets)

    def block() -> None:
        pass

    def track_plain() -> None:
        with plain.track("n"):
            pass

    def track_otel() -> None:
        with with_otel.track("n"):
            pass

    hooked = NodeMetricsCollector()
    hooked._add_listener(lambda _node, _duration_ms: None)  # noqa: SLF001 -- the hook alone
    hooked.record_success("n", 1.0)
    bare = NodeMetricsCollector()
    bare_record = sdk_histogram("nodemetrics.node.duration", bare.buckets).record
    bare._add_listener(  # noqa: SLF001 -- what the exporter would be without its lock
        lambda node, duration_ms: bare_record(duration_ms / 1000, {"node": node})
    )
    bare.record_success("n", 1.0)

    reader = InMemoryMetricReader()
    collected = exported(reader)
    for i in range(NODES):
        collected.record_success(f"node-{i}", nxt())

    return {
        "next duration": nxt,
        "record": lambda: plain.record_success("n", nxt()),
        "record+otel": lambda: with_otel.record_success("n", nxt()),
        "record+noop listener": lambda: hooked.record_success("n", nxt()),
        "record+bare listener": lambda: bare.record_success("n", nxt()),
        "sdk record": lambda: sdk_hist.record(nxt() / 1000, {"node": "n"}),
        "empty block": block,
        "track": track_plain,
        "track+otel": track_otel,
        "collect": reader.collect,
    }


def minus(a: Rounds, b: Rounds) -> Rounds:
    """Round by round, *a* less *b*."""
    return [x - y for x, y in zip(a, b, strict=True)]


def measure(*, quick: bool) -> dict[str, Rounds]:
    """The figures, in ns per call in every round, net of their bare statement."""
    m = timed(statements(), quick=quick)
    base = m["next duration"]
    return {
        "record_success": minus(m["record"], base),
        "record_success + exporter": minus(m["record+otel"], base),
        "exporter per record_success": minus(m["record+otel"], m["record"]),
        "SDK Histogram.record()": minus(m["sdk record"], base),
        "no-op listener per record_success": minus(m["record+noop listener"], m["record"]),
        "record_success + bare listener": minus(m["record+bare listener"], base),
        "bare listener per record_success": minus(m["record+bare listener"], m["record"]),
        "with track()": minus(m["track"], m["empty block"]),
        "with track() + exporter": minus(m["track+otel"], m["empty block"]),
        "exporter per with track()": minus(m["track+otel"], m["track"]),
        "collection, per node": [t / NODES for t in m["collect"]],
    }


def rows(r: dict[str, Rounds]) -> list[Row]:
    """(figure, ns, baseline, ns, ratio, target); a target of None is for reading only."""

    def row(figure: str, baseline: str, target: float | None) -> Row:
        # The median round by ratio, as bench.py's rows: the printed ratio
        # is the ratio of the printed figures.
        ratios = sorted(
            (o / b if b > 0 else float("inf"), o, b)
            for o, b in zip(r[figure], r[baseline], strict=True)
        )
        ratio, ours, base = ratios[(len(ratios) - 1) // 2]
        return (figure, ours, baseline, base, ratio, target)

    return [
        # What the exporter's own code (its lock, re-entry check and queue)
        # adds to the cheapest way of feeding the SDK from the collector.
        row("record_success + exporter", "record_success + bare listener", 1.1),
        # What the collector's listener hook costs, against the SDK's record().
        row("no-op listener per record_success", "SDK Histogram.record()", 0.1),
        # All that nodemetrics adds to the SDK's own cost of one recording:
        # no target, since a bare listener, which no design can undercut
        # while it records every execution into the SDK from the hook,
        # already takes most of the old bounds (1.15 and 1.3).
        row("exporter per record_success", "SDK Histogram.record()", None),
        row("record_success + exporter", "SDK Histogram.record()", None),
        row("bare listener per record_success", "SDK Histogram.record()", None),
        row("record_success + bare listener", "SDK Histogram.record()", None),
        # What exporting costs a recording, against not exporting.
        row("exporter per record_success", "record_success", None),
        row("exporter per with track()", "with track()", None),
        row("collection, per node", "record_success + exporter", None),
    ]


def bench_rows(*, quick: bool = False) -> list[Row]:
    """The rows for ``benchmarks/bench.py``'s table: measure, then :func:`rows`."""
    return rows(measure(quick=quick))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="a few seconds; proves it runs")
    parser.add_argument(
        "--run",
        metavar="STATEMENT",
        help="only run one statement --loops times (for callgrind); one of: "
        + ", ".join(repr(name) for name in statements()),
    )
    parser.add_argument("--loops", type=int, default=2000)
    args = parser.parse_args()
    if args.run is not None:
        stmt = statements()[args.run]
        gc.disable()
        for _ in range(args.loops):
            stmt()
        return 0
    r = measure(quick=args.quick)
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {platform.system()}; "
        f"{'quick run, numbers indicative only' if args.quick else 'full run'}\n"
    )
    print("| figure | ns | baseline | ns | ratio | target | met |")
    print("|---|---:|---|---:|---:|---:|:---:|")
    for figure, ns, baseline, base_ns, ratio, target in rows(r):
        goal, met = ("-", "-") if target is None else (f"<= {target}", ratio <= target)
        met_text = met if isinstance(met, str) else ("yes" if met else "no")
        print(
            f"| {figure} | {ns:,.0f} | {baseline} | {base_ns:,.0f} | {ratio:.2f} | "
            f"{goal} | {met_text} |"
        )
    print("\nRaw figures (medians, ns per call):\n")
    for name, value in r.items():
        print(f"- {name}: {statistics.median(value):,.1f}")
    # The numbers are for people to read: CI checks that this runs, not them.
    return 0


if __name__ == "__main__":
    sys.exit(main())
