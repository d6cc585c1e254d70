"""
A small pipeline of four nodes, run a few dozen times, then its metrics.

Run it with `python examples/quickstart.py`. The documents run concurrently,
each with its own random generator seeded from its number, so the counts are
the same on every run whatever the interleaving; the durations are measured,
so they vary.
"""

from __future__ import annotations

import asyncio
import random

import tenacity

from nodemetrics import NodeMetricsCollector, format_table, metered


collector = NodeMetricsCollector(window_size=50)
SEED = 42


@metered("load", collector=collector)
def load(i: int) -> dict[str, object]:
    return {"id": i, "text": f"document number {i}"}


@metered("validate", collector=collector)
def validate(doc: dict[str, object], rng: random.Random) -> dict[str, object]:
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
async def enrich(doc: dict[str, object], rng: random.Random) -> dict[str, object]:
    await asyncio.sleep(rng.uniform(0.0005, 0.002))
    if rng.random() < 0.3:
        msg = "upstream reset the connection"
        raise ConnectionResetError(msg)
    return {**doc, "words": len(str(doc["text"]).split())}


stored: list[dict[str, object]] = []


async def store(doc: dict[str, object], rng: random.Random) -> None:
    async with collector.track("store"):
        await asyncio.sleep(rng.uniform(0.0001, 0.001))
        stored.append(doc)


async def run_one(i: int) -> None:
    # One generator per document: tasks sharing one would draw in whatever
    # order the event loop runs them, and the counts would change run to run.
    rng = random.Random(SEED * 1000 + i)
    doc = load(i)
    try:
        doc = validate(doc, rng)
        doc = await enrich(doc, rng)
    except (ValueError, tenacity.RetryError):
        return  # counted as a failure of the node that raised
    await store(doc, rng)


async def main() -> None:
    await asyncio.gather(*(run_one(i) for i in range(40)))


if __name__ == "__main__":
    asyncio.run(main())
    print(format_table(collector))
    print()
    print(collector.to_json(indent=2))
