"""Guarantee 4: a forked child can record and read at once; the parent is untouched."""

from __future__ import annotations

import os
import textwrap
import threading
import warnings

import pytest

from _internals import exit_status, holding_lock, lock_held

from nodemetrics import NodeMetricsCollector


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# A child deadlocked on a lock copied from the parent must fail the test in
# seconds, not hang it.
CHILD_DEADLINE_S = 10.0


def run_in_child(fn) -> int | str:
    """
    Run fn in a forked child; return its exit status (0 when fn returns True),
    or "hung" if it has not exited within CHILD_DEADLINE_S (it is then killed).
    """
    with warnings.catch_warnings():
        # 3.12+ warns that fork() with threads running may deadlock: that is
        # what these tests check does not happen.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 1
        finally:
            os._exit(code)
    return exit_status(pid, CHILD_DEADLINE_S)


# Run in a fresh interpreter: coverage's tracer, which traces the threads of
# this test process, can itself deadlock a child forked mid-trace (seen on
# Python 3.10), and that is not what this test is about.
FORK_AMID_THREADS = textwrap.dedent(
    """
    import os, signal, threading, time, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    from nodemetrics import NodeMetricsCollector

    c = NodeMetricsCollector()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            c.record_success("busy", 1.0)
            c.record_failure("busy", 2.0)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    bad = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            before = c.get_node_metrics("busy")
            c.record_success("child", 2.0)
            c.record_success("busy", 1.0)
            after = c.get_node_metrics("busy")
            ok = (
                after.total_executions == before.total_executions + 1
                and after.success_count + after.failure_count == after.total_executions
                and c.get_node_metrics("child").success_count == 1
            )
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 10  # a deadlocked child fails, not hangs
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        if not done[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            bad += 1
            break  # one hung child is enough to know
        bad += os.waitstatus_to_exitcode(done[1]) != 0
    stop.set()
    for t in threads:
        t.join()
    m = c.get_node_metrics("busy")
    assert m.success_count == m.failure_count, m
    assert c.get_node_metrics("child").total_executions == 0
    print(f"children failed: {bad}")
    """
)


class TestFork:
    def test_child_records_while_parent_threads_record(self, fresh_python):
        """20 forks amid 3 recording threads: every child records and reads within 10 s."""
        result = fresh_python(FORK_AMID_THREADS)
        assert 0 == result.returncode, result.stderr
        assert "children failed: 0" == result.stdout.strip()

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
        assert not lock_held(c)

    def test_child_gets_a_fresh_lock(self):
        """
        Guards the fork hooks: while another thread holds the collector's lock
        (mid-recording), the process forks; the child, where that thread does
        not exist, records and reads within seconds instead of deadlocking.
        """
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        holding = threading.Event()
        release = threading.Event()

        def holder():
            with holding_lock(c):
                holding.set()
                release.wait(30)

        thread = threading.Thread(target=holder, daemon=True)
        thread.start()
        assert holding.wait(5)

        def child():
            c.record_success("n", 2.0)
            m = c.get_node_metrics("n")
            return (m.total_executions, m.last_execution_ms) == (2, 2.0)

        try:
            status = run_in_child(child)
        finally:
            release.set()
            thread.join(5)
        assert 0 == status
        assert 1 == c.get_node_metrics("n").total_executions  # the parent, untouched


# The end of the scripts below, the parent's side: how the child ended, or
# that it hung (killed after 10 s).
REPORT_HOW_THE_CHILD_ENDED = textwrap.dedent(
    """
    thread.join()
    pid = forked[0]
    deadline = time.monotonic() + 10  # a child stuck on the parent's lock fails, not hangs
    while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    if not done[0]:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("child: hung")
    else:
        print(f"child: {os.waitstatus_to_exitcode(done[1])}, parent: {ok}")
    """
)


# A signal handler forks while this thread's recording sleeps on the lock that
# another thread holds; in the child the handler returns and the recording's
# interrupted acquire resumes, on the lock the parent's holder took.
FORK_FROM_A_HANDLER_OF_A_SLEEPING_RECORDING = (
    textwrap.dedent(
        """
    import os, signal, threading, time, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    from nodemetrics import NodeMetricsCollector

    c = NodeMetricsCollector()
    c.record_success("n", 1.0)
    guard = c._guard
    forked = []
    parent_forked = threading.Event()
    main = threading.get_ident()

    def handler(signum, frame):
        pid = os.fork()
        forked.append(pid)
        if pid:
            parent_forked.set()

    signal.signal(signal.SIGUSR1, handler)

    def holder():
        with guard.lock:  # between changes, as a reader holds it
            deadline = time.monotonic() + 10
            while not guard.waiting and time.monotonic() < deadline:
                time.sleep(0.001)  # until the recording sleeps on the lock
            signal.pthread_kill(main, signal.SIGUSR1)
            parent_forked.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    ok = False
    try:
        c.record_success("n", 2.0)
        m = c.get_node_metrics("n")
        ok = (m.total_executions, m.last_execution_ms) == (2, 2.0) and not guard.waiting
    finally:
        if forked and forked[0] == 0:
            os._exit(0 if ok else 1)
    """
    )
    + REPORT_HOW_THE_CHILD_ENDED
)


def test_fork_from_a_handler_of_a_recording_asleep_on_the_lock(fresh_python):
    """
    A signal handler that forks while its thread's recording sleeps on the
    lock another thread holds: in the child, where that thread does not
    exist, the recording goes on once the handler returns, and reads see it.
    """
    result = fresh_python(FORK_FROM_A_HANDLER_OF_A_SLEEPING_RECORDING, timeout=60)
    assert 0 == result.returncode, result.stderr
    assert "child: 0, parent: True" == result.stdout.strip()


# The same with the registry lock: a signal handler forks while this thread,
# creating a collector (or the default one), waits for the registry lock that
# another thread holds.
FORK_FROM_A_HANDLER_OF_A_THREAD_WAITING_FOR_THE_REGISTRY = (
    textwrap.dedent(
        """
    import os, signal, sys, threading, time, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    from nodemetrics import NodeMetricsCollector, get_default_collector
    from nodemetrics import _sync

    forked = []
    parent_forked = threading.Event()
    main = threading.get_ident()

    def handler(signum, frame):
        pid = os.fork()
        forked.append(pid)
        if pid:
            parent_forked.set()

    signal.signal(signal.SIGUSR1, handler)

    def waiting():
        # This thread asleep on the lock: in wait_for(), which it enters only
        # once the lock was found taken. (Code that waits otherwise never
        # gets there; the signal then comes after 10 s, when it surely sleeps.)
        frame = sys._current_frames().get(main)
        return frame is not None and frame.f_code.co_name == "wait_for"

    def holder():
        with _sync.REGISTRY_LOCK:
            deadline = time.monotonic() + 10
            while not waiting() and time.monotonic() < deadline:
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGUSR1)
            parent_forked.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    ok = False
    try:
        c = NodeMetricsCollector() if make == "collector" else get_default_collector()
        c.record_success("n", 2.0)
        ok = c.get_node_metrics("n").total_executions == 1
    finally:
        if forked and forked[0] == 0:
            os._exit(0 if ok else 1)
    """
    )
    + REPORT_HOW_THE_CHILD_ENDED
)


@pytest.mark.parametrize("make", ["collector", "default collector"])
def test_fork_from_a_handler_of_a_thread_waiting_for_the_registry_lock(fresh_python, make):
    """
    A signal handler that forks while its thread waits for the registry lock
    (to create a collector, or the default one) that another thread holds:
    in the child the wait ends once the handler returns, and the collector
    records and reads.
    """
    script = f"make = {make!r}\n" + FORK_FROM_A_HANDLER_OF_A_THREAD_WAITING_FOR_THE_REGISTRY
    result = fresh_python(script, timeout=60)
    assert 0 == result.returncode, result.stderr
    assert "child: 0, parent: True" == result.stdout.strip()
