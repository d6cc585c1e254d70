from __future__ import annotations

import os
import threading

import pytest

from nodemetrics import NodeMetricsCollector


pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns on fork() with threads running; forking there is the point.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def run_in_child(fn) -> int:
    """Run fn in a forked child; return its exit status (0 when fn returns True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class TestFork:
    # coverage's tracer can deadlock a child forked while other threads are
    # being traced (seen on Python 3.10): this test runs untraced.
    @pytest.mark.no_cover
    def test_child_records_while_parent_threads_record(self):
        """After fork() amid recording threads the child records and reads at once."""
        c = NodeMetricsCollector()
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                c.record_success("busy", 1.0)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            statuses = []
            for _ in range(5):

                def child():
                    before = c.get_node_metrics("busy").total_executions
                    c.record_success("child", 2.0)
                    c.record_success("busy", 1.0)
                    after = c.get_node_metrics("busy").total_executions
                    return after == before + 1 and c.get_node_metrics("child").success_count == 1

                statuses.append(run_in_child(child))
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert [0] * 5 == statuses
        assert 0 == c.get_node_metrics("child").total_executions

    def test_parent_untouched_and_keeps_recording(self):
        """The child's recordings never reach the parent, which goes on recording."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)

        def child():
            for _ in range(10):
                c.record_failure("n", 1.0)
            return c.get_node_metrics("n").failure_count == 10

        assert 0 == run_in_child(child)
        c.record_success("n", 1.0)
        m = c.get_node_metrics("n")
        assert (2, 0) == (m.total_executions, m.failure_count)
        assert not c._lock.locked()
