from __future__ import annotations

import pytest
import tenacity

from nodemetrics import NodeMetricsCollector, metered


def flaky(failures: int, exc: type[Exception] = ConnectionError):
    """A callable that fails `failures` times, then returns 'ok'."""
    calls = {"n": 0}

    def call():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"attempt {calls['n']}")
        return "ok"

    return call


class TestRetryHook:
    def test_hook_records_attempt(self):
        """The hook takes a RetryCallState and records a retry for the node."""
        c = NodeMetricsCollector()
        hook = c.retry_hook("fetch")
        for attempt in (1, 2):
            state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
            state.attempt_number = attempt
            assert hook(state) is None
        assert 2 == c.get_node_metrics("fetch").retry_count

    def test_metered_outside_retry(self):
        """@metered outside @retry: 3 attempts are 1 execution and 2 retries."""
        c = NodeMetricsCollector()
        call = flaky(2)

        @metered("fetch", collector=c)
        @tenacity.retry(
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_attempt(5),
            before_sleep=c.retry_hook("fetch"),
        )
        def fetch():
            return call()

        assert "ok" == fetch()
        m = c.get_node_metrics("fetch")
        assert (1, 1, 0, 2) == (
            m.total_executions,
            m.success_count,
            m.failure_count,
            m.retry_count,
        )

    def test_metered_inside_retry(self):
        """@metered inside @retry: 3 attempts are 3 executions, 2 failed, and 2 retries."""
        c = NodeMetricsCollector()
        call = flaky(2)

        @tenacity.retry(
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_attempt(5),
            before_sleep=c.retry_hook("fetch"),
        )
        @metered("fetch", collector=c)
        def fetch():
            return call()

        assert "ok" == fetch()
        m = c.get_node_metrics("fetch")
        assert (3, 1, 2, 2, 2) == (
            m.total_executions,
            m.success_count,
            m.failure_count,
            m.network_errors,
            m.retry_count,
        )

    def test_gives_up(self):
        """When tenacity gives up, the RetryError is a failure classified by the last attempt."""
        c = NodeMetricsCollector()

        @metered("fetch", collector=c)
        @tenacity.retry(
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_attempt(3),
            before_sleep=c.retry_hook("fetch"),
        )
        def fetch():
            raise TimeoutError

        with pytest.raises(tenacity.RetryError):
            fetch()
        m = c.get_node_metrics("fetch")
        assert (1, 1, 2) == (m.failure_count, m.timeout_errors, m.retry_count)

    def test_retrying_object(self):
        """The hook works with a Retrying object used as an iterator too."""
        c = NodeMetricsCollector()
        call = flaky(1)
        for attempt in tenacity.Retrying(wait=tenacity.wait_none(), before_sleep=c.retry_hook("n")):
            with attempt, c.track("n"):
                call()
        m = c.get_node_metrics("n")
        assert (2, 1, 1) == (m.total_executions, m.failure_count, m.retry_count)


class TestRetryHookAsync:
    async def test_metered_outside_retry(self):
        """Async: @metered outside @retry is 1 execution and 2 retries."""
        c = NodeMetricsCollector()
        call = flaky(2)

        @metered("fetch", collector=c)
        @tenacity.retry(
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_attempt(5),
            before_sleep=c.retry_hook("fetch"),
        )
        async def fetch():
            return call()

        assert "ok" == await fetch()
        m = c.get_node_metrics("fetch")
        assert (1, 0, 2) == (m.total_executions, m.failure_count, m.retry_count)

    async def test_metered_inside_retry(self):
        """Async: @metered inside @retry is 3 executions, 2 failed, and 2 retries."""
        c = NodeMetricsCollector()
        call = flaky(2, TimeoutError)

        @tenacity.retry(
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_attempt(5),
            before_sleep=c.retry_hook("fetch"),
        )
        @metered("fetch", collector=c)
        async def fetch():
            return call()

        assert "ok" == await fetch()
        m = c.get_node_metrics("fetch")
        assert (3, 2, 2, 2) == (
            m.total_executions,
            m.failure_count,
            m.timeout_errors,
            m.retry_count,
        )

    async def test_async_retrying(self):
        """The hook works with AsyncRetrying as an async iterator."""
        c = NodeMetricsCollector()
        call = flaky(2)
        async for attempt in tenacity.AsyncRetrying(
            wait=tenacity.wait_none(), before_sleep=c.retry_hook("n")
        ):
            with attempt:
                async with c.track("n"):
                    call()
        m = c.get_node_metrics("n")
        assert (3, 2, 2) == (m.total_executions, m.failure_count, m.retry_count)
