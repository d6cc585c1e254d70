"""
A small pipeline of four nodes, run a few dozen times, then its metrics.

Run it with `python examples/quickstart.py`.
"""

from __future__ import annotations

import asyncio
import random

import tenacity

from nodemetrics import NodeMetricsCollector, metered


collector = NodeMetricsCollector(window_size=50)
rng = random.Random(42)


@metered("load", collector=collector)
def load(i: int) -> dict[str, object]:
    return {"id": i, "text": f"document number {i}"}


@metered("validate", collector=collector)
def validate(doc: dict[str, object]) -> dict[str, object]:
    if rng.random() < 0.1:
        msg = f"document {doc['id']} is malformed"
        raise ValueError(msg)
    return doc


# @metered outside @retry: one execution per call, however many attempts.
@metered("enrich", collector=collector)
@tenacity.retry(
    wait=tenacity.wait_none(),
    stop=tenacity.stop_after_attempt(4),
    before_sleep=collector.retry_hook("enrich"),
)
async def enrich(doc: dict[str, object]) -> dict[str, object]:
    await asyncio.sleep(rng.uniform(0.0005, 0.002))
    if rng.random() < 0.3:
        msg = "upstream reset the connection"
        raise ConnectionResetError(msg)
    return {**doc, "words": len(str(doc["text"]).split())}


stored: list[dict[str, object]] = []


async def store(doc: dict[str, object]) -> None:
    async with collector.track("store"):
        await asyncio.sleep(rng.uniform(0.0001, 0.001))
        stored.append(doc)


async def run_one(i: int) -> None:
    doc = load(i)
    try:
        doc = validate(doc)
        doc = await enrich(doc)
    except (ValueError, tenacity.RetryError):
        return  # counted as a failure of the node that raised
    await store(doc)


async def main() -> None:
    await asyncio.gather(*(run_one(i) for i in range(40)))


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    asyncio.run(main())
    header = ["node", "runs", "ok", "fail", "retry", "p50 ms", "p99 ms"]
    print(f"{header[0]:<10}", *(f"{h:>8}" for h in header[1:]))
    for node, m in sorted(collector.get_all_node_metrics().items()):
        print(
            f"{node:<10} {m.total_executions:>8} {m.success_count:>8} {m.failure_count:>8} "
            f"{m.retry_count:>8} {ms(m.p50):>8} {ms(m.p99):>8}"
        )
    print()
    print(collector.to_json(indent=2))
