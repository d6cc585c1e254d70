"""
MultiProcessSync across a fork amid a running sync, with undecodable node names, and bad input.

A fork while the sync thread is inside prometheus_client must not leave the
child with one of prometheus_client's locks held (the child's sync would
hang); a node name UTF-8 cannot encode must not break the scrape; and
``registry=`` and ``start(interval_s=)`` refuse what they cannot use.
"""

from __future__ import annotations

import fractions
import math
import os
import textwrap
import threading

import pytest

from _hostile import RaisingClass, masquerade
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus_multiprocess import MultiProcessSync


# -- fork amid a running sync --------------------------------------------------

# In a fresh interpreter: prometheus_client chooses multiprocess mode when it
# is first imported, and coverage's tracer in the test process could itself
# deadlock a forked child (see tests/reliability/test_fork.py).
FORK_AMID_SYNC = textwrap.dedent(
    """
    import glob, os, signal, sys, tempfile, time, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    directory = tempfile.mkdtemp(prefix="nm-mp-fork-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client.multiprocess import MultiProcessCollector
    from nodemetrics import NodeMetricsCollector
    from nodemetrics.exporters.prometheus_multiprocess import start_multiprocess_sync

    NODES, FORKS, DEADLINE_S = 300, 30, 10.0

    def mirrored_in_this_process(node):
        # The child's own files: what its syncs wrote, and nothing else.
        files = glob.glob(os.path.join(directory, f"*_{os.getpid()}.db"))
        for metric in MultiProcessCollector.merge(files, accumulate=False):
            for s in metric.samples:
                if s.name == "nodemetrics_node_executions_total" and s.labels == {
                    "node": node, "outcome": "success"
                }:
                    return s.value
        return 0.0

    c = NodeMetricsCollector()
    sync = start_multiprocess_sync(c, interval_s=0.001)
    bad = []
    for attempt in range(FORKS):
        # Every node changes, so that the thread's next sync is long and
        # spent mostly inside prometheus_client.
        for i in range(NODES):
            c.record_success(f"n{i}", 1.0)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                c.record_success("child", 1.0)
                sync.sync()
                code = 0 if mirrored_in_this_process("child") == 1.0 else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + DEADLINE_S  # a sync of one node takes ms
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a child process; no race depends on it
        if not done[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            bad.append(f"fork {attempt}: the child hung in sync() for {DEADLINE_S} s")
            break  # one hung child is enough to know
        if os.waitstatus_to_exitcode(done[1]) != 0:
            bad.append(f"fork {attempt}: the child exited with {done[1]}")
    sync.stop()
    print("; ".join(bad) or "ok")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forks_amid_a_running_sync_never_hang_the_child(fresh_python):
    """30 forks while the sync thread runs every 1 ms: each child syncs its own recording."""
    result = fresh_python(FORK_AMID_SYNC)
    assert 0 == result.returncode, result.stderr
    assert "ok" == result.stdout.strip()


# -- node names UTF-8 cannot encode --------------------------------------------


def exported(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """(sample, node, outcome) -> value of the executions counters in a scrape."""
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels["node"], s.labels.get("outcome", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "nodemetrics_node_executions_total"
    }


def test_undecodable_node_name_is_escaped_not_fatal():
    """A node name with a lone surrogate is exported backslash-escaped; the others as they are."""
    c = NodeMetricsCollector()
    registry = CollectorRegistry()
    sync = MultiProcessSync(c, registry=registry)
    bad = b"report-\xff.csv".decode("utf-8", "surrogateescape")  # as os.listdir() gives it
    c.record_success("good", 1.0)
    c.record_success("café", 1.0)
    c.record_success(bad, 1.0)
    c.record_success(bad, 1.0)
    sync.sync()
    s = exported(registry)
    total = "nodemetrics_node_executions_total"
    assert 1 == s[(total, "good", "success")]
    assert 1 == s[(total, "café", "success")]
    assert 2 == s[(total, "report-\\udcff.csv", "success")]
    c.record_success(bad, 1.0)
    sync.sync()  # the escaped series is the node's, from one sync to the next
    assert 3 == exported(registry)[(total, "report-\\udcff.csv", "success")]


MULTIPROCESS_SCRAPE = textwrap.dedent(
    """
    import os, tempfile
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nm-mp-name-")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from nodemetrics import NodeMetricsCollector
    from nodemetrics.exporters.prometheus_multiprocess import MultiProcessSync

    c = NodeMetricsCollector()
    sync = MultiProcessSync(c)
    c.record_success("good", 1.0)
    c.record_success(b"bad-\\xff".decode("utf-8", "surrogateescape"), 1.0)
    sync.sync()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    text = generate_latest(registry).decode()
    for line in text.splitlines():
        if line.startswith("nodemetrics_node_executions_total{") and 'outcome="success"' in line:
            print(line)
    """
)


def test_undecodable_node_name_in_multiprocess_files(fresh_python):
    """The endpoint reading the multiprocess files scrapes every node, the escaped one too."""
    result = fresh_python(MULTIPROCESS_SCRAPE, timeout=120)
    assert 0 == result.returncode, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        'nodemetrics_node_executions_total{node="bad-\\\\udcff",outcome="success"} 1.0',
        'nodemetrics_node_executions_total{node="good",outcome="success"} 1.0',
    ]


# -- bad input -----------------------------------------------------------------


class LyingFloat(float):
    """A float whose comparisons lie: it must act as its plain value."""

    def __lt__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True


def test_constructor_refuses_unusable_collector_and_registry():
    """registry= must be a CollectorRegistry or None, checked by real type; so must collector=."""
    c = NodeMetricsCollector()
    registry = CollectorRegistry()
    cases = [
        ({"registry": "default"}, "registry"),
        ({"registry": RaisingClass()}, "registry"),
        ({"registry": masquerade(CollectorRegistry)}, "registry"),
        ({"registry": CollectorRegistry}, "registry"),  # the class, not one
        ({"collector": RaisingClass(), "registry": registry}, "collector"),
        ({"collector": masquerade(NodeMetricsCollector), "registry": registry}, "collector"),
    ]
    for kwargs, name in cases:
        args = {"collector": c, **kwargs}
        with pytest.raises(TypeError, match=f"^{name} must be"):
            MultiProcessSync(args.pop("collector"), **args)
    # The refusals registered nothing: the same names still register there.
    assert b"" == generate_latest(registry)
    MultiProcessSync(c, registry=registry)
    assert b"" != generate_latest(registry)


def test_start_refuses_unusable_interval_and_changes_nothing():
    """interval_s: a real number (by real type) in (0, TIMEOUT_MAX]; a refusal changes nothing."""
    sync = MultiProcessSync(NodeMetricsCollector(), registry=CollectorRegistry())
    for bad, error in [
        (RaisingClass(), TypeError),
        (masquerade(float), TypeError),
        ("1", TypeError),
        (True, TypeError),
        (None, TypeError),
        (1e300, ValueError),
        (threading.TIMEOUT_MAX * 2, ValueError),
        (10**400, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (0, ValueError),
        (-1.0, ValueError),
        (LyingFloat(-1.0), ValueError),
    ]:
        with pytest.raises(error, match="^interval_s must be"):
            sync.start(bad)
        assert "running=False" in repr(sync), bad
    sync.start(3600)
    try:
        with pytest.raises(ValueError, match="^interval_s must be"):
            sync.start(1e300)
        assert 3600.0 == sync._interval_s  # the running thread's interval is kept
        assert "running=True" in repr(sync)
        sync.start(fractions.Fraction(7200, 1))  # any real number
        assert 7200.0 == sync._interval_s
        assert float is type(sync._interval_s)
        sync.start(threading.TIMEOUT_MAX)  # the longest wait a thread can make
        assert threading.TIMEOUT_MAX == sync._interval_s
        assert "running=True" in repr(sync)
    finally:
        sync.stop()
