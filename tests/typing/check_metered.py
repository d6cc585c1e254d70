"""Checked by mypy, never run: decorated functions keep their types."""

from __future__ import annotations

from typing_extensions import assert_type

from nodemetrics import NodeMetricsCollector, metered


c = NodeMetricsCollector()


@metered
def bare(x: int, y: str = "") -> float:
    return float(x)


@metered("named", collector=c)
def named(x: int) -> list[int]:
    return [x]


@metered()
async def coro(x: int) -> str:
    return str(x)


assert_type(bare(1, y="a"), float)
assert_type(named(3), list[int])


async def use() -> None:
    assert_type(await coro(1), str)


bare("not an int")  # type: ignore[arg-type]
named(1, 2)  # type: ignore[call-arg]
