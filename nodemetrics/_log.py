"""Logging that can never break the node being measured."""

from __future__ import annotations

import contextlib

from loguru import logger


def log(
    level: str,
    message: str,
    *,
    node: str | None = None,
    exception: bool | BaseException = False,
    **fields: object,
) -> None:
    """
    Log *message* (formatted with *fields*) at *level*, with *node* bound.

    With *exception* (True, or an exception), that exception is attached. An
    :class:`Exception` from a sink (a loguru handler added with
    ``catch=False``) is dropped: nodemetrics is called from inside users'
    nodes, and a broken log sink must not turn into an exception there. Any
    other :class:`BaseException` (``KeyboardInterrupt``, ``SystemExit``)
    propagates, as it does from classifiers and threshold callbacks: user
    code's request to stop is never swallowed. The collector logs most
    messages after it has counted the recording (through ``_sync.fire``).
    """
    # Exception only: a KeyboardInterrupt landing in a sink is the user's.
    with contextlib.suppress(Exception):
        logger.bind(node=node).opt(exception=exception, depth=1).log(level, message, **fields)


def log_record_failed(node: str) -> None:
    """Log, with the exception being handled, that recording *node* failed."""
    log(
        "ERROR",
        "nodemetrics.record_failed: could not record node {name!r}",
        node=node,
        exception=True,
        name=node,
    )
