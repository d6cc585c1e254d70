"""
The cost of instrumenting a node, next to baselines measured in the same run.

Run with ``nox -s bench`` (or ``nox -s bench -- --quick`` for a run of a
few seconds that only proves the harness works). Prints a Markdown table.

Every figure is the median of many timeit loops, after a warm-up, timed in
rounds that interleave all the statements (see `Timers`); overheads are a
timed call minus the bare call measured in the same run, and every baseline
(prometheus_client, OpenTelemetry, a hand-written timing wrapper) is
measured here, never typed in.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import platform
import random
import statistics
import sys
import threading
import timeit
import tracemalloc

from collections.abc import Callable
from time import perf_counter, perf_counter_ns
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from nodemetrics import NodeMetricsCollector, metered


class Config:
    def __init__(self, *, quick: bool) -> None:
        self.quick = quick
        self.repeat = 5 if quick else 25
        self.target_s = 0.002 if quick else 0.02  # per repeat
        self.memory_nodes = 1_000 if quick else 10_000
        self.thread_records = 20_000 if quick else 400_000


def durations() -> Callable[[], float]:
    """An endless, repeatable stream of plausible durations in ms."""
    rng = random.Random(0)
    return itertools.cycle([rng.expovariate(1 / 20) for _ in range(4096)]).__next__


class Timers:
    """
    Named statements, each timed by a `timeit` loop, in interleaved rounds.

    Each statement is calibrated and warmed up alone; then every round times
    each statement once, and a figure is the median of its rounds. Timing
    round by round, instead of statement by statement, means that a machine
    whose speed drifts during the run slows a figure and its baseline alike.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stmts: dict[str, tuple[Callable[[], object], int]] = {}

    def add(self, name: str, stmt: Callable[[], object], calls: int = 1) -> None:
        """Time `stmt`, which makes `calls` calls, as ns per call under `name`."""
        self.stmts[name] = (stmt, calls)

    def run(self) -> dict[str, float]:
        """Return the median ns per call of each statement, by name."""
        loops = {}
        for name, (stmt, calls) in self.stmts.items():
            timer = timeit.Timer(stmt)
            # Calibrate: enough calls to last target_s per round.
            number = 1
            while (elapsed := timer.timeit(number)) < 0.001:
                number *= 10
            number = max(1, int(number * self.cfg.target_s / elapsed))
            timer.timeit(number)  # warm-up
            loops[name] = (timer, number, number * calls)
        rounds: dict[str, list[float]] = {name: [] for name in loops}
        gc.disable()
        try:
            for _ in range(self.cfg.repeat):
                for name, (timer, number, total_calls) in loops.items():
                    rounds[name].append(timer.timeit(number) / total_calls)
        finally:
            gc.enable()
        return {name: statistics.median(times) * 1e9 for name, times in rounds.items()}


def filled(window: int, node: str = "n") -> NodeMetricsCollector:
    c = NodeMetricsCollector(window_size=window)
    nxt = durations()
    for _ in range(window):
        c.record_success(node, nxt())
    c.get_node_metrics(node)
    return c


def bench_calls(cfg: Config) -> dict[str, float]:
    t = Timers(cfg)
    registry = CollectorRegistry()
    hist = Histogram("bench_seconds", "bench", registry=registry)
    c = NodeMetricsCollector()

    def noop() -> None:
        pass

    @functools.wraps(noop)
    def floor() -> None:
        start = perf_counter_ns()
        noop()
        perf_counter_ns() - start

    t.add("bare call", noop)
    t.add("floor", floor)
    t.add("prom @time()", hist.time()(noop))
    t.add("metered", metered("noop", collector=c)(noop))

    def prom_with() -> None:
        with hist.time():
            pass

    def track_with() -> None:
        with c.track("noop"):
            pass

    def empty() -> None:
        pass

    t.add("empty block", empty)
    t.add("prom with", prom_with)
    t.add("track", track_with)

    nxt = durations()
    t.add("next duration", nxt)
    t.add("prom observe", lambda: hist.observe(nxt()))
    add_records(t, nxt)

    # Not a target: a read after a timed block also folds the batch in.
    tc = NodeMetricsCollector()

    def track_get() -> None:
        with tc.track("noop"):
            pass
        tc.get_node_metrics("noop")

    t.add("track+get", track_get)

    try:
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        pass
    else:
        otel_hist = MeterProvider().get_meter("bench").create_histogram("bench")
        attrs = {"node": "n"}
        t.add("otel record", lambda: otel_hist.record(nxt(), attrs))
    return derived(t.run())


def add_records(t: Timers, nxt: Callable[[], float]) -> None:
    for window in (100, 10_000, 100_000):
        # One collector per statement, so that none leaves another's window
        # in a state it would not be in on its own.
        rec = filled(window).record_success
        get = filled(window).get_node_metrics
        both = filled(window)
        rec2, get2 = both.record_success, both.get_node_metrics
        t.add(f"record {window}", lambda rec=rec: rec("n", nxt()))
        t.add(f"get cached {window}", lambda get=get: get("n"))
        t.add(f"record+get {window}", lambda rec=rec2, get=get2: (rec("n", nxt()), get("n")))


def derived(m: dict[str, float]) -> dict[str, float]:
    """The figures, from the timed statements: overheads net of their baseline call."""
    r = {
        "bare call": m["bare call"],
        "floor wrapper": m["floor"] - m["bare call"],
        "prom @time()": m["prom @time()"] - m["bare call"],
        "@metered": m["metered"] - m["bare call"],
        "empty block": m["empty block"],
        "prom with time()": m["prom with"] - m["empty block"],
        "with track()": m["track"] - m["empty block"],
        "next duration": m["next duration"],
        "prom observe()": m["prom observe"] - m["next duration"],
        "get after track()": m["track+get"] - m["track"],
    }
    for window in (100, 10_000, 100_000):
        r[f"record {window}"] = m[f"record {window}"] - m["next duration"]
        r[f"get cached {window}"] = m[f"get cached {window}"]
        r[f"record+get {window}"] = m[f"record+get {window}"] - m["next duration"]
        r[f"get after record {window}"] = m[f"record+get {window}"] - m[f"record {window}"]
    if "otel record" in m:
        r["otel record()"] = m["otel record"] - m["next duration"]
    return r


def bench_async(cfg: Config) -> dict[str, float]:
    t = Timers(cfg)
    c = NodeMetricsCollector()
    loop = asyncio.new_event_loop()
    n = 200 if cfg.quick else 2_000

    async def anoop() -> None:
        pass

    @functools.wraps(anoop)
    async def afloor() -> None:
        start = perf_counter_ns()
        await anoop()
        perf_counter_ns() - start

    def awaited(fn: Callable[[], Any]) -> Callable[[], object]:
        async def drive() -> None:
            for _ in range(n):
                await fn()

        return lambda: loop.run_until_complete(drive())

    t.add("async bare", awaited(anoop), calls=n)
    t.add("async floor", awaited(afloor), calls=n)
    t.add("async metered", awaited(metered("anoop", collector=c)(anoop)), calls=n)
    try:
        m = t.run()
    finally:
        loop.close()
    return {
        "async bare": m["async bare"],
        "async floor wrapper": m["async floor"] - m["async bare"],
        "async @metered": m["async metered"] - m["async bare"],
    }


def bench_memory(cfg: Config) -> dict[str, float]:
    nxt = durations()
    gc.collect()
    tracemalloc.start()
    c = NodeMetricsCollector(max_nodes=None)
    for i in range(cfg.memory_nodes):
        node = f"node-{i}"
        for _ in range(100):
            c.record_success(node, nxt())
    recorded = tracemalloc.get_traced_memory()[0]
    c.get_all_node_metrics()
    read = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    scale = 10_000 / cfg.memory_nodes
    return {
        "memory recorded MB": recorded * scale / 1e6,
        "memory read MB": read * scale / 1e6,
    }


def bench_threads(cfg: Config) -> dict[str, float]:
    total = cfg.thread_records

    def run(n_threads: int) -> float:
        c = NodeMetricsCollector()
        nxt = durations()
        each = total // n_threads
        barrier = threading.Barrier(n_threads + 1)

        def work() -> None:
            rec = c.record_success
            barrier.wait()
            for _ in range(each):
                rec("n", nxt())

        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        for t in threads:
            t.start()
        barrier.wait()
        start = perf_counter()
        for t in threads:
            t.join()
        elapsed = perf_counter() - start
        if c.get_node_metrics("n").total_executions != each * n_threads:
            msg = "lost a count under contention"
            raise AssertionError(msg)
        return total / elapsed

    # Pairs run back to back, and the median of their ratios, so that a
    # machine whose speed drifts between runs does not skew the ratio.
    pairs = [(run(1), run(2)) for _ in range(3 if cfg.quick else 9)]
    return {
        "1 thread rec/s": statistics.median(one for one, _ in pairs),
        "2 threads rec/s": statistics.median(two for _, two in pairs),
        "2/1 threads ratio": statistics.median(two / one for one, two in pairs),
    }


def ratio_rows(r: dict[str, float]) -> list[tuple[str, str, float, str, float, float]]:
    """(figure, what, ours, baseline name, baseline, target ratio)."""
    return [
        ("P1", "sync `@metered` overhead", r["@metered"], "prom `@Histogram.time()`",
         r["prom @time()"], 0.45),
        ("P2", "async `@metered` overhead", r["async @metered"], "async wraps + 2 perf_counter_ns",
         r["async floor wrapper"], 5.0),
        ("P3", "`with track()` overhead", r["with track()"], "prom `with Histogram.time()`",
         r["prom with time()"], 0.5),
        ("P4", "`record_success`, window 100", r["record 100"], "prom `Histogram.observe()`",
         r["prom observe()"], 0.7),
        ("P5", "`record_success`, window 10,000", r["record 10000"], "the same, window 100",
         r["record 100"], 2.0),
        ("P5", "`record_success`, window 100,000", r["record 100000"], "the same, window 100",
         r["record 100"], 3.0),
        ("P6", "`get_node_metrics` (unchanged node), window 100", r["get cached 100"],
         "one `record_success`, window 100", r["record 100"], 4.0),
        ("P6", "`get_node_metrics` after a record, window 100", r["get after record 100"],
         "one `record_success`, window 100", r["record 100"], 4.0),
        ("P6", "`get_node_metrics` (unchanged node), window 100,000", r["get cached 100000"],
         "the same, window 100", r["get cached 100"], 2.0),
        ("P6", "`get_node_metrics` after a record, window 100,000",
         r["get after record 100000"], "the same, window 100", r["get after record 100"], 2.0),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="a few seconds; proves it runs")
    args = parser.parse_args()
    cfg = Config(quick=args.quick)

    r = {**bench_calls(cfg), **bench_async(cfg)}
    mem = bench_memory(cfg)
    threads = bench_threads(cfg)

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {platform.system()}; "
        f"{'quick run, numbers indicative only' if cfg.quick else 'full run'}\n"
    )
    print("| | figure | ns | baseline | ns | ratio | target | met |")
    print("|---|---|---:|---|---:|---:|---:|:---:|")
    failed = 0
    for pid, what, ours, base_name, base, target in ratio_rows(r):
        ratio = ours / base if base > 0 else float("inf")
        met = ratio <= target
        failed += not met
        print(
            f"| {pid} | {what} | {ours:,.0f} | {base_name} | {base:,.0f} | "
            f"{ratio:.2f} | <= {target} | {'yes' if met else 'no'} |"
        )
    mem_mb = max(mem.values())
    print(
        f"| P7 | memory, 10,000 nodes x 100 samples (tracemalloc, after a read) | "
        f"{mem_mb:.1f} MB | budget | 30 MB | {mem_mb / 30:.2f} | <= 1.0 | "
        f"{'yes' if mem_mb <= 30 else 'no'} |"
    )
    failed += mem_mb > 30
    t_ratio = threads["2/1 threads ratio"]
    print(
        f"| P8 | 2 threads, one collector: records/s | {threads['2 threads rec/s']:,.0f} | "
        f"1 thread, same total work | {threads['1 thread rec/s']:,.0f} | {t_ratio:.2f} | "
        f">= 0.6 | {'yes' if t_ratio >= 0.6 else 'no'} |"
    )
    failed += t_ratio < 0.6

    print("\nBaselines and raw figures (ns per call unless said):\n")
    for name, value in sorted({**r, **mem}.items()):
        print(f"- {name}: {value:,.1f}")
    print(f"\n{failed} of {len(ratio_rows(r)) + 2} targets missed")
    # The numbers are for people to read: CI checks that this runs, not them.
    return 0


if __name__ == "__main__":
    sys.exit(main())
