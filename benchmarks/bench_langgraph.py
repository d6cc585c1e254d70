"""
The cost of `instrument()` on a LangGraph graph, next to the same graph plain.

Run with `python benchmarks/bench_langgraph.py [--quick]` (needs langgraph),
or through `nox -s bench`. Prints a Markdown table; `rows()` returns it as
data, `(figure, ns, baseline, ns, ratio, target)`, for `bench.py` to fold in.

The graph is a chain of 10 trivial nodes. Every statement is timed in each
round, in a shuffled order, and each ratio is the median over rounds of
that round's ratio, so that a machine whose speed drifts during the run
(shared VMs drift by 2x) moves a figure and its baseline alike. Times are
the process's CPU time, not wall time: a graph run takes milliseconds, and
on a shared VM the wall time of so long a statement mostly measures when
the other tenants were scheduled.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import platform
import random
import statistics
import sys

from collections.abc import Callable
from time import process_time_ns
from typing import Any, TypedDict

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph import END, START, StateGraph

from nodemetrics import NodeMetricsCollector
from nodemetrics.integrations.langgraph import instrument


NODES = 10
TARGET = 1.08

Row = tuple[str, float, str, float, float, float | None]


class State(TypedDict):
    x: int


def step(state: State) -> State:
    return {"x": state["x"] + 1}


async def astep(state: State) -> State:
    return {"x": state["x"] + 1}


def graph(node: Callable[..., Any]) -> Any:
    g = StateGraph(State)
    names = [f"n{i}" for i in range(NODES)]
    for name in names:
        g.add_node(name, node)
    g.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    g.add_edge(names[-1], END)
    return g.compile()


class NoopHandler(BaseCallbackHandler):
    """What any LangChain handler costs before it does anything."""

    run_inline = True


def statements() -> dict[str, Callable[[], object]]:
    plain, aplain = graph(step), graph(astep)
    metered, ametered = instrument(plain, NodeMetricsCollector()), instrument(aplain)
    noop_config = {"callbacks": [NoopHandler()]}
    loop = asyncio.new_event_loop()

    def ainvoke(app: Any) -> Callable[[], object]:
        # A graph run costs milliseconds; run_until_complete() a few µs.
        return lambda: loop.run_until_complete(app.ainvoke({"x": 0}))

    return {
        "plain invoke": lambda: plain.invoke({"x": 0}),
        "no-op handler invoke": lambda: plain.invoke({"x": 0}, noop_config),
        "instrument() invoke": lambda: metered.invoke({"x": 0}),
        "plain ainvoke": ainvoke(aplain),
        "instrument() ainvoke": ainvoke(ametered),
    }


def measure(quick: bool) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per statement, ns per graph run (median of rounds), and each round's figures."""
    stmts = statements()
    rounds = 3 if quick else 40
    calls = 2 if quick else 20
    for stmt in stmts.values():  # warm up
        for _ in range(calls):
            stmt()
    per_round: dict[str, list[float]] = {name: [] for name in stmts}
    order = list(stmts)
    rng = random.Random(0)
    gc.collect()
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            stmt = stmts[name]
            start = process_time_ns()
            for _ in range(calls):
                stmt()
            per_round[name].append((process_time_ns() - start) / calls)
    return {name: statistics.median(v) for name, v in per_round.items()}, per_round


def rows(*, quick: bool = False) -> list[Row]:
    """The table's rows: (figure, ns, baseline, ns, ratio, target or None)."""
    medians, per_round = measure(quick)

    def ratio(figure: str, baseline: str) -> float:
        return statistics.median(
            f / b for f, b in zip(per_round[figure], per_round[baseline], strict=True)
        )

    def per_node(figure: str, baseline: str) -> float:
        # The median of each round's difference: what one node run adds.
        pairs = zip(per_round[figure], per_round[baseline], strict=True)
        return statistics.median(f - b for f, b in pairs) / NODES

    plain_node = medians["plain invoke"] / NODES
    added, metering = (
        per_node("instrument() invoke", "plain invoke"),
        per_node("instrument() invoke", "no-op handler invoke"),
    )

    return [
        (
            "instrument() invoke, 10 nodes",
            medians["instrument() invoke"],
            "plain invoke",
            medians["plain invoke"],
            ratio("instrument() invoke", "plain invoke"),
            TARGET,
        ),
        (
            "no-op LangChain handler invoke",
            medians["no-op handler invoke"],
            "plain invoke",
            medians["plain invoke"],
            ratio("no-op handler invoke", "plain invoke"),
            None,
        ),
        (
            "instrument() invoke",
            medians["instrument() invoke"],
            "no-op handler invoke",
            medians["no-op handler invoke"],
            ratio("instrument() invoke", "no-op handler invoke"),
            None,
        ),
        (
            "instrument() ainvoke, 10 async nodes",
            medians["instrument() ainvoke"],
            "plain ainvoke",
            medians["plain ainvoke"],
            ratio("instrument() ainvoke", "plain ainvoke"),
            None,
        ),
        (
            "instrument(): added per node run",
            added,
            "a plain node run",
            plain_node,
            added / plain_node,
            None,
        ),
        (
            "metering alone per node run",
            metering,
            "a plain node run",
            plain_node,
            metering / plain_node,
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="a few seconds; proves it runs")
    args = parser.parse_args()
    table = rows(quick=args.quick)
    print(
        f"LangGraph: Python {platform.python_version()} on {platform.machine()}, "
        f"{'quick run, numbers indicative only' if args.quick else 'full run'}\n"
    )
    print("| figure | ns | baseline | ns | ratio | target | met |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    failed = False
    for figure, ns, baseline, base_ns, ratio, target in table:
        met = "-" if target is None else ("yes" if ratio <= target else "NO")
        failed |= met == "NO"
        shown = "-" if target is None else f"{target:.2f}"
        cells = [figure, f"{ns:,.0f}", baseline, f"{base_ns:,.0f}", f"{ratio:.3f}", shown, met]
        print(f"| {' | '.join(cells)} |")
    print(
        f"\nCost per node run: {table[-2][1] / 1000:.2f} µs with instrument(), of which "
        f"{table[-1][1] / 1000:.2f} µs beyond a no-op LangChain handler "
        f"(a plain node run: {table[-1][3] / 1000:.1f} µs)."
    )
    # Like bench.py, the quick run only proves the harness works.
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
