"""
A registry that already holds a mirrored name, and one collector synced twice in a process.

A registry that clashes with a mirrored metric is refused with a
``ValueError`` naming ``registry`` and the metric, and is left exactly as it
was; a second sync of one collector and namespace in one process (the
README's two patterns, "in each worker" and "once before forking", both
followed) is the first one again, so no count is mirrored twice.
"""

from __future__ import annotations

import textwrap

import pytest

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus_multiprocess import (
    MultiProcessSync,
    start_multiprocess_sync,
)


MIRRORED = [
    "nodemetrics_node_executions_total",
    "nodemetrics_node_failures_total",
    "nodemetrics_node_retries_total",
    "nodemetrics_node_cancellations_total",
    "nodemetrics_node_interruptions_total",
    "nodemetrics_node_duration_seconds",
]


def names(registry: CollectorRegistry) -> dict[str, object]:
    """Every series name the registry holds, with the metric that holds it."""
    return dict(registry._names_to_collectors)


# -- a registry that clashes ---------------------------------------------------


class TestRegistryClash:
    @pytest.mark.parametrize("clash", MIRRORED)
    def test_clash_is_refused_and_registry_left_as_it_was(self, clash):
        """A clash with any mirrored metric: ValueError naming it; the registry is unchanged."""
        registry = CollectorRegistry()
        own = Gauge(clash, "the user's own", registry=registry)
        own.set(7)
        before, scrape = names(registry), generate_latest(registry)
        for _ in range(2):  # a second attempt fails the same way, on the same name
            with pytest.raises(ValueError, match=f"^registry .*{clash}") as caught:
                MultiProcessSync(NodeMetricsCollector(), registry=registry)
            assert before == names(registry)
            assert scrape == generate_latest(registry)
            others = [name for name in MIRRORED if name != clash]
            assert not [name for name in others if name in str(caught.value)]
        # Another namespace fits beside the user's metric, and mirrors.
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        MultiProcessSync(c, namespace="other", registry=registry).sync()
        assert b'other_node_executions_total{node="n",outcome="success"} 1.0' in (
            generate_latest(registry)
        )

    def test_users_histogram_of_the_same_name(self):
        """The reviewer's case: the user's own duration Histogram, then a retry."""
        registry = CollectorRegistry()
        Histogram("nodemetrics_node_duration_seconds", "the user's own", registry=registry)
        before = names(registry)
        for _ in range(2):
            with pytest.raises(
                ValueError, match="^registry already .*nodemetrics_node_duration_seconds"
            ):
                MultiProcessSync(NodeMetricsCollector(), registry=registry)
            assert before == names(registry)

    def test_a_sync_in_the_registry_already(self):
        """A second sync into the registry of a first is refused; the first keeps mirroring."""
        registry = CollectorRegistry()
        c = NodeMetricsCollector()
        first = MultiProcessSync(c, registry=registry)
        before = names(registry)
        with pytest.raises(ValueError, match="^registry .*nodemetrics_node_executions_total"):
            MultiProcessSync(NodeMetricsCollector(), registry=registry)
        assert before == names(registry)
        c.record_success("n", 1.0)
        first.sync()
        assert b'nodemetrics_node_executions_total{node="n",outcome="success"} 1.0' in (
            generate_latest(registry)
        )

    @pytest.mark.parametrize(
        ("raised", "expected"), [(RuntimeError("full"), ValueError), (KeyboardInterrupt(), None)]
    )
    def test_registry_that_raises_midway(self, raised, expected):
        """A registry whose register() raises at the third metric is left as it was."""

        class Flaky(CollectorRegistry):
            calls = 0

            def register(self, collector):
                Flaky.calls += 1
                if Flaky.calls == 3:
                    raise raised
                super().register(collector)

        registry = Flaky()
        Counter("mine", "the user's own", registry=registry)
        Flaky.calls = 0
        before = names(registry)
        with pytest.raises(expected or type(raised)) as caught:
            MultiProcessSync(NodeMetricsCollector(), registry=registry)
        if expected is ValueError:
            assert str(caught.value).startswith("registry")
            assert "nodemetrics_node_retries_total" in str(caught.value)
        else:
            assert caught.value is raised  # propagates as it is
        assert before == names(registry)


# -- one sync per collector and namespace in a process -------------------------


@pytest.fixture
def multiprocess_mode(monkeypatch):
    """prometheus_client as if PROMETHEUS_MULTIPROC_DIR had been set at its import."""
    monkeypatch.setattr(values.ValueClass, "_multiprocess", True, raising=False)


@pytest.mark.usefixtures("multiprocess_mode")
class TestStartedTwice:
    def test_second_start_returns_the_first(self):
        """start_multiprocess_sync() twice for one collector: one sync, the last interval."""
        c = NodeMetricsCollector()
        first = start_multiprocess_sync(c, interval_s=3600)
        try:
            second = start_multiprocess_sync(c, interval_s=7200)
            assert first is second
            assert 7200.0 == first._interval_s
            assert "running=True" in repr(first)
        finally:
            first.stop()

    def test_stopped_sync_is_started_again(self):
        """After stop(), start_multiprocess_sync() restarts the same sync, not a new one."""
        c = NodeMetricsCollector()
        first = start_multiprocess_sync(c, interval_s=3600)
        first.stop()
        assert "running=False" in repr(first)
        again = start_multiprocess_sync(c, interval_s=3600)
        try:
            assert first is again
            assert "running=True" in repr(first)
        finally:
            first.stop()

    def test_bad_second_call_changes_nothing(self):
        """A second call with a bad interval is refused and leaves the running sync as it was."""
        c = NodeMetricsCollector()
        first = start_multiprocess_sync(c, interval_s=3600)
        try:
            for bad, error, name in [
                (0, ValueError, "interval_s"),
                ("1", TypeError, "interval_s"),
                ("a-b", ValueError, "namespace"),
            ]:
                kwargs = {"namespace": bad} if name == "namespace" else {"interval_s": bad}
                with pytest.raises(error, match=f"^{name} must be"):
                    start_multiprocess_sync(c, **kwargs)
                assert 3600.0 == first._interval_s
                assert "running=True" in repr(first)
            assert first is start_multiprocess_sync(c, interval_s=3600)
        finally:
            first.stop()

    def test_other_collector_or_namespace_gets_its_own(self):
        """Another collector, or another namespace, is another sync."""
        c = NodeMetricsCollector()
        syncs = [
            start_multiprocess_sync(c, interval_s=3600),
            start_multiprocess_sync(c, interval_s=3600, namespace="other"),
            start_multiprocess_sync(NodeMetricsCollector(), interval_s=3600),
        ]
        try:
            assert 3 == len({id(sync) for sync in syncs})
        finally:
            for sync in syncs:
                sync.stop()

    def test_second_multiprocess_sync_is_refused(self):
        """In multiprocess mode, a second MultiProcessSync(c, namespace=ns) is refused."""
        c = NodeMetricsCollector()
        first = start_multiprocess_sync(c, interval_s=3600)
        try:
            for registry in (None, CollectorRegistry()):
                with pytest.raises(ValueError, match="^collector already has a MultiProcessSync"):
                    MultiProcessSync(c, registry=registry)
            unstarted = MultiProcessSync(c, namespace="other")
            with pytest.raises(ValueError, match="^collector already has a MultiProcessSync"):
                MultiProcessSync(c, namespace="other")
            assert unstarted is start_multiprocess_sync(c, interval_s=3600, namespace="other")
            unstarted.stop()
        finally:
            first.stop()


def test_outside_multiprocess_mode_each_registry_gets_its_own():
    """Without multiprocess mode, two syncs of one collector into two registries each count once."""
    c = NodeMetricsCollector()
    registries = [CollectorRegistry(), CollectorRegistry()]
    syncs = [MultiProcessSync(c, registry=registry) for registry in registries]
    for _ in range(5):
        c.record_success("n", 1.0)
    for sync in syncs:
        sync.sync()
    for registry in registries:
        line = b'nodemetrics_node_executions_total{node="n",outcome="success"} 5.0'
        assert line in generate_latest(registry)


# -- real processes and their files --------------------------------------------

# In a fresh interpreter: prometheus_client chooses multiprocess mode when it
# is first imported.
PRELUDE = textwrap.dedent(
    """
    import os, tempfile, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nm-mp-twice-")
    import multiprocessing
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from nodemetrics import NodeMetricsCollector
    from nodemetrics.exporters.prometheus_multiprocess import start_multiprocess_sync

    def scraped(node):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        prefix = f'nodemetrics_node_executions_total{{node="{node}",outcome="success"}} '
        lines = generate_latest(registry).decode().splitlines()
        return [float(line[len(prefix):]) for line in lines if line.startswith(prefix)]
    """
)

TWICE_IN_ONE_PROCESS = PRELUDE + textwrap.dedent(
    """
    c = NodeMetricsCollector()
    s1 = start_multiprocess_sync(c, interval_s=3600)
    s2 = start_multiprocess_sync(c, interval_s=3600)  # e.g. post_worker_init and at import
    for _ in range(5):
        c.record_success("n", 1.0)
    s1.sync()
    s2.sync()
    s1.stop()
    # Started again after a stop: what the first run mirrored is not mirrored again.
    s3 = start_multiprocess_sync(c, interval_s=3600)
    c.record_success("n", 1.0)
    s3.stop()
    print(scraped("n"))
    """
)


def test_twice_in_one_process_mirrors_once(fresh_python):
    """start_multiprocess_sync() twice, and once after stop(): every count is in the files once."""
    result = fresh_python(TWICE_IN_ONE_PROCESS, timeout=120)
    assert 0 == result.returncode, result.stderr
    assert "[6.0]" == result.stdout.strip()


# The parent starts a sync before forking, and each worker starts one too
# (a Pool initializer): both README patterns at once. The workers exit
# normally, so their exit syncs carry everything.
BEFORE_FORK_AND_IN_EACH_WORKER = PRELUDE + textwrap.dedent(
    """
    c = NodeMetricsCollector()
    c.record_success("n", 1.0)  # the parent's own, before the fork
    parent = start_multiprocess_sync(c, interval_s=3600)

    own = []

    def init():
        own.append(start_multiprocess_sync(c, interval_s=3600))

    def work(i):
        for _ in range(5):
            c.record_success("n", 1.0)
        return own[0] is parent

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4, initializer=init) as pool:
        reused = pool.map(work, range(8), chunksize=1)
        pool.close()
        pool.join()  # a normal exit: each worker's exit sync runs
    parent.stop()
    print(reused.count(True), scraped("n"))
    """
)


def test_before_fork_and_in_each_worker_mirrors_once(fresh_python):
    """A sync started before forking and again in each worker: every count mirrored once."""
    result = fresh_python(BEFORE_FORK_AND_IN_EACH_WORKER, timeout=120)
    assert 0 == result.returncode, result.stderr
    # 8 tasks of 5 in the workers, and the parent's own 1.
    assert "8 [41.0]" == result.stdout.strip()
