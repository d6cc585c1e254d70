"""@metered on callables that are not plain functions.

A sync callable that returns a coroutine (an ``async def`` under a sync
pass-through decorator, an object with an ``async def __call__``, any
function that returns one) is timed when awaited; ``@staticmethod`` and
``@classmethod`` stay what they were; and every refusal names its argument.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import re
import warnings

import pytest

from _hostile import HostileStr

from nodemetrics import NodeMetricsCollector, metered


SLEEP_S = 0.05
AT_LEAST_MS = 40.0  # an await of asyncio.sleep(0.05) cannot take less


def passthrough(fn):
    """A typical sync decorator: it calls the function and returns what it returns."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def counts(c, node):
    m = c.get_node_metrics(node)
    return {
        "success": m.success_count,
        "failure": m.failure_count,
        "cancelled": m.cancelled_count,
        "network": m.network_errors,
        "timeout": m.timeout_errors,
        "other": m.other_errors,
    }


def expected(**nonzero):
    base = dict.fromkeys(("success", "failure", "cancelled", "network", "timeout", "other"), 0)
    return base | nonzero


def innermost_function(exc):
    """The name of the function whose frame raised *exc*: its traceback's last entry."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name


class Handler:
    """A callable object whose __call__ is an async def."""

    def __init__(self, error=None):
        self.error = error

    async def __call__(self, value):
        await asyncio.sleep(SLEEP_S)
        if self.error is not None:
            raise self.error
        return value


def returning_coroutine(c, error=None):
    """A plain sync function (no __wrapped__) that returns a coroutine."""

    async def work(value):
        await asyncio.sleep(SLEEP_S)
        if error is not None:
            raise error
        return value

    @metered("plain", collector=c)
    def plain(value):
        return work(value)

    return plain


class TestReturnedCoroutine:
    """Finding 5: the await is what is timed and recorded."""

    async def test_passthrough_success_is_timed_when_awaited(self):
        """Under a sync decorator: nothing recorded when called, a timed success when awaited."""
        c = NodeMetricsCollector()
        result = object()

        @metered("fetch", collector=c)
        @passthrough
        async def fetch():
            await asyncio.sleep(SLEEP_S)
            return result

        pending = fetch()
        assert inspect.iscoroutine(pending)
        assert 0 == c.get_node_metrics("fetch").total_executions
        assert result is await pending
        assert expected(success=1) == counts(c, "fetch")
        assert c.get_node_metrics("fetch").last_execution_ms >= AT_LEAST_MS

    async def test_passthrough_failure_is_recorded_and_propagates(self):
        """The node's own exception propagates, raised in the node, and is one failure."""
        c = NodeMetricsCollector()
        error = ConnectionError("down")

        @metered("fetch", collector=c)
        @passthrough
        async def fetch():
            await asyncio.sleep(SLEEP_S)
            raise error

        with pytest.raises(ConnectionError) as caught:
            await fetch()
        assert error is caught.value
        assert "fetch" == innermost_function(caught.value)
        assert expected(failure=1, network=1) == counts(c, "fetch")
        assert c.get_node_metrics("fetch").last_execution_ms >= AT_LEAST_MS

    async def test_async_call_object_success_and_failure(self):
        """An object with an async __call__ is metered as an async function."""
        c = NodeMetricsCollector()
        ok = metered("ok", collector=c)(Handler())
        error = TimeoutError()
        bad = metered("bad", collector=c)(Handler(error))
        # It gets the async wrapper: frameworks that ask see a coroutine function.
        assert inspect.iscoroutinefunction(ok)
        assert 7 == await ok(7)
        with pytest.raises(TimeoutError) as caught:
            await bad(1)
        assert error is caught.value
        assert "__call__" == innermost_function(caught.value)
        assert expected(success=1) == counts(c, "ok")
        assert expected(failure=1, timeout=1) == counts(c, "bad")
        assert c.get_node_metrics("ok").last_execution_ms >= AT_LEAST_MS
        assert c.get_node_metrics("bad").last_execution_ms >= AT_LEAST_MS

    async def test_plain_function_returning_a_coroutine(self):
        """Any sync function's returned coroutine is awaited under the same rules."""
        c = NodeMetricsCollector()
        assert "v" == await returning_coroutine(c)("v")
        assert expected(success=1) == counts(c, "plain")
        assert c.get_node_metrics("plain").last_execution_ms >= AT_LEAST_MS
        error = ValueError("bad input")
        with pytest.raises(ValueError, match="bad input") as caught:
            await returning_coroutine(c, error)("v")
        assert error is caught.value
        assert "work" == innermost_function(caught.value)
        assert 1 == c.get_node_metrics("plain").failure_count
        assert 2 == c.get_node_metrics("plain").total_executions

    async def test_cancelled_await_is_a_cancellation(self):
        """A task cancelled while it awaits the node records one cancellation."""
        c = NodeMetricsCollector()

        @metered("slow", collector=c)
        @passthrough
        async def slow():
            await asyncio.sleep(60)

        task = asyncio.create_task(slow())
        await asyncio.sleep(0)  # let the task start its await
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
        assert expected(cancelled=1) == counts(c, "slow")

    async def test_the_await_is_timed_not_the_wait_before_it(self):
        """As for an async def, the clock starts when the coroutine first runs."""
        c = NodeMetricsCollector()

        @metered("fetch", collector=c)
        @passthrough
        async def fetch():
            await asyncio.sleep(SLEEP_S)

        pending = fetch()
        await asyncio.sleep(0.5)  # not a race fix: time that must not be counted
        await pending
        duration = c.get_node_metrics("fetch").last_execution_ms
        assert AT_LEAST_MS <= duration < 450

    def test_never_awaited_records_nothing_and_close_is_quiet(self):
        """A closed, never-awaited coroutine records nothing and warns of nothing."""
        c = NodeMetricsCollector()

        @metered("fetch", collector=c)
        @passthrough
        async def fetch():
            return 1

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pending = fetch()
            assert "fetch" == pending.__name__
            pending.close()
            del pending
            gc.collect()
        assert [] == [str(w.message) for w in seen]
        assert 0 == c.get_node_metrics("fetch").total_executions

    def test_forgotten_coroutine_warns_once_under_its_name(self):
        """A forgotten coroutine gives Python's usual warning, once, naming the function."""
        c = NodeMetricsCollector()

        @metered("fetch", collector=c)
        @passthrough
        async def fetch():
            return 1

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pending = fetch()
            del pending
            gc.collect()
        messages = [str(w.message) for w in seen]
        assert [f"coroutine '{fetch.__qualname__}' was never awaited"] == messages
        assert 0 == c.get_node_metrics("fetch").total_executions

    def test_sync_runner_of_an_async_def_stays_sync(self):
        """A sync function whose __wrapped__ is async (runs it with asyncio.run) stays sync."""
        c = NodeMetricsCollector()

        def run_sync(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return asyncio.run(fn(*args, **kwargs))

            return wrapper

        @metered("main", collector=c)
        @run_sync
        async def main(x):
            await asyncio.sleep(0)
            return 2 * x

        assert not inspect.iscoroutinefunction(main)
        assert 42 == main(21)
        assert expected(success=1) == counts(c, "main")
        # ...and the object with an async __call__, the other new async case, is async.
        assert inspect.iscoroutinefunction(metered("h", collector=c)(Handler()))


class TestStaticAndClassMethods:
    """Finding 6: the descriptor is kept, and the function inside is metered."""

    def test_staticmethod_sync(self):
        c = NodeMetricsCollector()
        error = ConnectionResetError()

        class K:
            @metered("double", collector=c)
            @staticmethod
            def double(x):
                return 2 * x

            @metered("fail", collector=c)
            @staticmethod
            def fail():
                raise error

        assert isinstance(K.__dict__["double"], staticmethod)
        assert (42, 42) == (K().double(21), K.double(21))
        with pytest.raises(ConnectionResetError) as caught:
            K().fail()
        assert error is caught.value
        assert "fail" == innermost_function(caught.value)
        assert expected(success=2) == counts(c, "double")
        assert expected(failure=1, network=1) == counts(c, "fail")

    async def test_staticmethod_async(self):
        c = NodeMetricsCollector()
        error = TimeoutError()

        class K:
            @metered("double", collector=c)
            @staticmethod
            async def double(x):
                await asyncio.sleep(SLEEP_S)
                return 2 * x

            @metered("fail", collector=c)
            @staticmethod
            async def fail():
                await asyncio.sleep(SLEEP_S)
                raise error

        assert inspect.iscoroutinefunction(K.double)
        assert 42 == await K().double(21)
        with pytest.raises(TimeoutError) as caught:
            await K.fail()
        assert error is caught.value
        assert "fail" == innermost_function(caught.value)
        assert expected(success=1) == counts(c, "double")
        assert expected(failure=1, timeout=1) == counts(c, "fail")
        assert c.get_node_metrics("double").last_execution_ms >= AT_LEAST_MS
        assert c.get_node_metrics("fail").last_execution_ms >= AT_LEAST_MS

    def test_classmethod_sync(self):
        c = NodeMetricsCollector()
        error = ConnectionError()

        class K:
            @metered("make", collector=c)
            @classmethod
            def make(cls):
                return cls

            @metered("fail", collector=c)
            @classmethod
            def fail(cls):
                raise error

        class Sub(K):
            pass

        assert isinstance(K.__dict__["make"], classmethod)
        assert (K, Sub, Sub) == (K.make(), Sub.make(), Sub().make())
        with pytest.raises(ConnectionError) as caught:
            Sub.fail()
        assert error is caught.value
        assert "fail" == innermost_function(caught.value)
        assert expected(success=3) == counts(c, "make")
        assert expected(failure=1, network=1) == counts(c, "fail")

    async def test_classmethod_async(self):
        c = NodeMetricsCollector()
        error = ConnectionError()

        class K:
            @metered("make", collector=c)
            @classmethod
            async def make(cls):
                await asyncio.sleep(SLEEP_S)
                return cls

            @metered("fail", collector=c)
            @classmethod
            async def fail(cls):
                await asyncio.sleep(SLEEP_S)
                raise error

        assert inspect.iscoroutinefunction(K.make)
        assert K is await K().make()
        with pytest.raises(ConnectionError) as caught:
            await K.fail()
        assert error is caught.value
        assert "fail" == innermost_function(caught.value)
        assert expected(success=1) == counts(c, "make")
        assert expected(failure=1, network=1) == counts(c, "fail")
        assert c.get_node_metrics("make").last_execution_ms >= AT_LEAST_MS

    def test_bare_form_names_the_function(self):
        """Bare @metered above either descriptor defaults to the function's __qualname__."""
        c = NodeMetricsCollector()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("nodemetrics._instrument.get_default_collector", lambda: c)

            class K:
                @metered
                @staticmethod
                def s():
                    return "s"

                @metered
                @classmethod
                def k(cls):
                    return "k"

        assert ("s", "k") == (K().s(), K().k())
        prefix = "TestStaticAndClassMethods.test_bare_form_names_the_function.<locals>.K."
        assert [prefix + "s", prefix + "k"] == sorted(c.get_all_node_metrics(), reverse=True)

    def test_generator_inside_is_refused(self):
        """Generator detection looks at the function inside the descriptor."""

        def gen():
            yield 1

        with pytest.raises(TypeError, match="generator"):
            metered("n")(staticmethod(gen))
        with pytest.raises(TypeError, match="generator"):
            metered("n")(classmethod(gen))


class TestRefusalsNameTheArgument:
    """Every refusal of metered() begins with the name of the argument at fault."""

    @staticmethod
    def begins_with(argument, error):
        return re.match(rf"{argument}\b", str(error)) is not None

    def test_not_callable(self):
        with pytest.raises(TypeError) as caught:
            metered("n")(42)
        assert self.begins_with("func", caught.value), str(caught.value)

    def test_generator_function(self):
        def gen():
            yield 1

        with pytest.raises(TypeError) as caught:
            metered("n")(gen)
        assert self.begins_with("func", caught.value), str(caught.value)
        with pytest.raises(TypeError) as caught:
            metered(gen)  # bare: the function came as *name*
        assert self.begins_with("name", caught.value), str(caught.value)

    def test_no_qualname(self):
        part = functools.partial(int, base=2)
        for decorate in (metered, metered(collector=NodeMetricsCollector())):
            with pytest.raises(TypeError) as caught:
                decorate(part)
            assert self.begins_with("name", caught.value), str(caught.value)

    def test_a_qualname_set_to_a_hostile_str_subclass_is_used_as_its_plain_value(self):
        """A __qualname__ set to a str subclass whose own methods raise names the node
        as its plain value: every call counts, none of its code runs."""

        def work():
            return 42

        work.__qualname__ = HostileStr("work")
        c = NodeMetricsCollector()
        wrapped = metered(collector=c)(work)
        assert [42] * 10 == [wrapped() for _ in range(10)]
        metrics = c.get_all_node_metrics()
        assert ["work"] == list(metrics)
        assert type(next(iter(metrics))) is str
        assert 10 == metrics["work"].success_count

    def test_an_empty_qualname_falls_back_to_the_name(self):
        def work():
            return 1

        work.__qualname__ = ""
        c = NodeMetricsCollector()
        metered(collector=c)(work)()
        assert ["work"] == list(c.get_all_node_metrics())
