from __future__ import annotations

import pytest
import stamina

from stamina.instrumentation import get_on_retry_hooks, set_on_retry_hooks

from nodemetrics import NodeMetricsCollector, get_default_collector, metered
from nodemetrics.integrations.stamina import instrument_stamina, on_retry_hook


@pytest.fixture(autouse=True)
def _restore_hooks():
    before = get_on_retry_hooks()
    stamina.set_testing(True, attempts=3)  # no waiting between attempts
    yield
    stamina.set_testing(False)
    set_on_retry_hooks(before)


def failing_times(n: int):
    calls = {"n": 0}

    def call():
        calls["n"] += 1
        if calls["n"] <= n:
            raise ConnectionError
        return "ok"

    return call


@stamina.retry(on=ConnectionError)
def fetch(call):
    return call()


class TestStaminaHook:
    def test_counts_retries_per_callable(self):
        """Every stamina retry is a retry of the node named after the callable."""
        c = NodeMetricsCollector()
        instrument_stamina(c)
        assert "ok" == fetch(failing_times(2))
        assert 2 == c.get_node_metrics(f"{__name__}.fetch").retry_count

    def test_keeps_other_hooks(self):
        """Hooks already active stay active."""
        seen = []
        set_on_retry_hooks([lambda details: seen.append(details.retry_num)])
        c = NodeMetricsCollector()
        hook = instrument_stamina(c)
        assert hook in get_on_retry_hooks()
        fetch(failing_times(1))
        assert [1] == seen
        assert 1 == c.get_node_metrics(f"{__name__}.fetch").retry_count

    def test_twice_for_one_collector_counts_each_retry_once(self):
        """A second call for the same collector replaces the hook the first added (with
        its node_names), keeping the other hooks; another collector gets its own."""
        seen = []
        set_on_retry_hooks([lambda details: seen.append(details.retry_num)])
        c, other = NodeMetricsCollector(), NodeMetricsCollector()
        first = instrument_stamina(c)
        instrument_stamina(other)
        second = instrument_stamina(c, node_names={f"{__name__}.fetch": "fetch"})
        assert first not in get_on_retry_hooks()
        assert second in get_on_retry_hooks()
        fetch(failing_times(2))
        assert [1, 2] == seen
        assert 2 == c.get_node_metrics("fetch").retry_count
        assert 0 == c.get_node_metrics(f"{__name__}.fetch").retry_count
        assert 2 == other.get_node_metrics(f"{__name__}.fetch").retry_count

    def test_mapping_names(self):
        """A mapping renames the nodes it knows and keeps the others."""
        c = NodeMetricsCollector()
        instrument_stamina(c, node_names={f"{__name__}.fetch": "fetch"})
        fetch(failing_times(1))
        for attempt in stamina.retry_context(on=ConnectionError):
            with attempt:
                if attempt.num == 1:
                    raise ConnectionError
        assert 1 == c.get_node_metrics("fetch").retry_count
        assert [("fetch", 1), ("<context block>", 1)] == [
            (n, m.retry_count) for n, m in c.get_all_node_metrics().items()
        ]

    def test_callable_names_and_skipping(self):
        """A callable maps names; returning None skips the retry."""
        c = NodeMetricsCollector()
        instrument_stamina(c, node_names=lambda name: None if name.endswith(".fetch") else "all")
        fetch(failing_times(2))
        for attempt in stamina.retry_context(on=ConnectionError):
            with attempt:
                if attempt.num == 1:
                    raise ConnectionError
        assert ["all"] == list(c.get_all_node_metrics())
        assert 1 == c.get_node_metrics("all").retry_count

    def test_with_metered(self):
        """@metered outside @stamina.retry: one execution, its retries counted."""
        c = NodeMetricsCollector()
        # stamina names it "module.qualname"; map that to the metered node's name.
        instrument_stamina(c, node_names=lambda name: name.rpartition(".")[2])

        @metered("flaky", collector=c)
        @stamina.retry(on=ConnectionError)
        def flaky(call):
            return call()

        assert "ok" == flaky(failing_times(2))
        m = c.get_node_metrics("flaky")
        assert (1, 1, 2) == (m.total_executions, m.success_count, m.retry_count)

    def test_default_collector(self):
        """Without a collector the default one records."""
        hook = on_retry_hook()
        set_on_retry_hooks([hook])
        before = get_default_collector().get_node_metrics(f"{__name__}.fetch").retry_count
        fetch(failing_times(1))
        after = get_default_collector().get_node_metrics(f"{__name__}.fetch").retry_count
        assert before + 1 == after

    def test_failing_mapping_never_breaks_the_retry(self, logs):
        """A node_names callable that raises is logged; stamina retries on."""

        def broken(name):
            raise RuntimeError("mapping bug")

        instrument_stamina(NodeMetricsCollector(), node_names=broken)
        assert "ok" == fetch(failing_times(2))
        assert 2 == sum("nodemetrics.stamina_hook_failed" in m for m in logs.messages)

    @pytest.mark.parametrize(
        ("kwargs", "match"), [({"collector": {}}, "collector"), ({"node_names": 3}, "node_names")]
    )
    def test_bad_arguments(self, kwargs, match):
        """Bad arguments are refused, naming them."""
        with pytest.raises(TypeError, match=match):
            on_retry_hook(**kwargs)
