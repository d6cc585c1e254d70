"""Real node functions run through @metered, track and tenacity, end to end."""

from __future__ import annotations

import asyncio
import json

import tenacity

from nodemetrics import NodeMetrics, NodeMetricsCollector, metered


def build_pipeline(c: NodeMetricsCollector):
    attempts: dict[int, int] = {}

    @metered("load", collector=c)
    def load(i: int) -> dict:
        return {"id": i, "text": f"doc {i}"}

    @metered("validate", collector=c)
    def validate(doc: dict) -> dict:
        if doc["id"] % 7 == 0:
            raise ValueError(f"doc {doc['id']} rejected")
        return doc

    @metered("enrich", collector=c)
    @tenacity.retry(
        wait=tenacity.wait_none(),
        stop=tenacity.stop_after_attempt(3),
        before_sleep=c.retry_hook("enrich"),
        reraise=True,
    )
    async def enrich(doc: dict) -> dict:
        # Every third doc fails once with a network error before succeeding.
        attempts[doc["id"]] = attempts.get(doc["id"], 0) + 1
        await asyncio.sleep(0)
        if doc["id"] % 3 == 0 and attempts[doc["id"]] == 1:
            raise ConnectionResetError("flaky upstream")
        return {**doc, "words": len(doc["text"].split())}

    async def run_one(i: int) -> dict | None:
        doc = load(i)
        try:
            doc = validate(doc)
        except ValueError:
            return None
        doc = await enrich(doc)
        async with c.track("store"):
            await asyncio.sleep(0)
        return doc

    return run_one


def test_pipeline_counts_are_exact():
    """Every count of a 50-document run through four nodes is what the code did."""
    c = NodeMetricsCollector()
    run_one = build_pipeline(c)

    async def main():
        return await asyncio.gather(*(run_one(i) for i in range(1, 51)))

    results = asyncio.run(main())
    rejected = [i for i in range(1, 51) if i % 7 == 0]  # 7 docs
    accepted = [i for i in range(1, 51) if i % 7]
    flaky = [i for i in accepted if i % 3 == 0]

    assert len(rejected) == results.count(None)
    load, validate, enrich, store = (
        c.get_node_metrics(n) for n in ["load", "validate", "enrich", "store"]
    )
    assert (
        NodeMetrics(
            total_executions=50,
            success_count=50,
            last_execution_ms=load.last_execution_ms,
            avg_execution_ms=load.avg_execution_ms,
            p50=load.p50,
            p90=load.p90,
            p99=load.p99,
        )
        == load
    )
    assert (50, 43, 7, 7) == (
        validate.total_executions,
        validate.success_count,
        validate.failure_count,
        validate.validation_errors,
    )
    assert (len(accepted), len(accepted), 0, len(flaky)) == (
        enrich.total_executions,
        enrich.success_count,
        enrich.failure_count,
        enrich.retry_count,
    )
    assert (len(accepted), 0) == (store.total_executions, store.failure_count)
    snapshot = json.loads(c.to_json())
    assert {"load", "validate", "enrich", "store"} == set(snapshot)
    assert enrich == NodeMetrics.from_dict(snapshot["enrich"])


def test_sync_pipeline_with_retries():
    """A sync node retried by tenacity inside @metered counts every attempt."""
    c = NodeMetricsCollector()
    calls = {"n": 0}

    @tenacity.retry(
        wait=tenacity.wait_none(),
        stop=tenacity.stop_after_attempt(4),
        before_sleep=c.retry_hook("fetch"),
    )
    @metered("fetch", collector=c)
    def fetch():
        calls["n"] += 1
        if calls["n"] < 4:
            raise TimeoutError
        return "payload"

    @metered("parse", collector=c)
    def parse(payload):
        with c.track("parse.inner"):
            return payload.upper()

    assert "PAYLOAD" == parse(fetch())
    m = c.get_node_metrics("fetch")
    assert (4, 3, 3, 3) == (m.total_executions, m.failure_count, m.timeout_errors, m.retry_count)
    assert 1 == c.get_node_metrics("parse").success_count
    assert 1 == c.get_node_metrics("parse.inner").success_count
