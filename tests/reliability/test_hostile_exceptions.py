"""Issue 10, item 7: a failure is counted, whatever its exception or the classifier does."""

from __future__ import annotations

import asyncio

from collections.abc import Callable

import pytest

from nodemetrics import ErrorCategory, NodeMetricsCollector, metered


class Hostile(RuntimeError):
    """What hostile code raises, so that a test sees it if it leaks."""


def hostile(*_args: object) -> None:
    raise Hostile("hostile")


class ClassPropertyError(Exception):
    """An exception whose ``__class__`` raises."""

    @property  # type: ignore[misc]
    def __class__(self):  # type: ignore[override]
        hostile()


class NoMroMeta(type):
    """A metaclass whose classes' ``__mro__`` raises."""

    __mro__ = property(hostile)  # type: ignore[assignment]


class NoNameMeta(type):
    """A metaclass whose classes' ``__name__`` raises."""

    __name__ = property(hostile)  # type: ignore[assignment]


class NoMroTimeoutError(TimeoutError, metaclass=NoMroMeta):
    pass


class NoNameConnectionError(ConnectionError, metaclass=NoNameMeta):
    pass


class HostileStr(str):  # noqa: SLOT000 -- a hostile caller's str need not be slotted
    """A str whose ``__hash__`` and ``__eq__`` raise."""

    __hash__ = hostile  # type: ignore[assignment]
    __eq__ = hostile  # type: ignore[assignment]
    __ne__ = hostile  # type: ignore[assignment]


def make_exceptions() -> dict[str, BaseException]:
    return {
        "class_property": ClassPropertyError("node failed"),
        "metaclass_mro": NoMroTimeoutError("node failed"),
        "metaclass_name": NoNameConnectionError("node failed"),
    }


EXCEPTIONS = list(make_exceptions())


def hostile_category(category: str) -> Callable[[BaseException], str]:
    """A classifier returning *category* as a str subclass whose hash and == raise."""
    return lambda exc: HostileStr(category)


# (classifier, exception, the category it must be counted under)
CASES = {
    # classify_error cannot look at the class: "other", its documented fallback.
    "class_property": (None, "class_property", "other"),
    "metaclass_mro": (None, "metaclass_mro", "other"),
    "metaclass_name": (None, "metaclass_name", "other"),
    # A valid category as a hostile str is that category.
    "str_subclass_timeout": (hostile_category("network"), "plain", "network"),
    "str_subclass_other": (hostile_category("other"), "plain", "other"),
    # An invalid one falls back to classify_error (a ValueError: validation).
    "str_subclass_invalid": (hostile_category("bogus"), "plain", "validation"),
    # Hostile exception and hostile classifier result together.
    "both": (hostile_category("timeout"), "class_property", "timeout"),
}

FIELDS = {
    "timeout": "timeout_errors",
    "validation": "validation_errors",
    "network": "network_errors",
    "other": "other_errors",
}


def exception_for(name: str) -> BaseException:
    return ValueError("plain node failure") if name == "plain" else make_exceptions()[name]


def check_counted(c: NodeMetricsCollector, category: str, logs) -> None:
    m = c.get_node_metrics("n")
    assert (1, 1, 0) == (m.total_executions, m.failure_count, m.success_count)
    assert 1 == getattr(m, FIELDS[category])
    assert not any("record_failed" in message for message in logs.messages)


def sync_track(c, exc):
    with c.track("n"):
        raise exc


async def async_track(c, exc):
    async with c.track("n"):
        raise exc


def sync_metered(c, exc):
    @metered("n", collector=c)
    def node():
        raise exc

    node()


async def async_metered(c, exc):
    @metered("n", collector=c)
    async def node():
        raise exc

    await node()


def run(path, c, exc) -> BaseException | None:
    """Run a path; return what it raised."""
    try:
        result = path(c, exc)
    except BaseException as raised:
        return raised
    if not asyncio.iscoroutine(result):
        return None

    raised_in_task: list[BaseException] = []

    async def catch() -> None:
        # Caught and kept inside the task: asyncio looks at a task's
        # exception or result (isinstance(), repr()) and would run the hostile
        # __class__ or __name__, which hangs asyncio.run() itself.
        try:
            await result
        except BaseException as raised:
            raised_in_task.append(raised)

    asyncio.run(catch())
    return raised_in_task[0] if raised_in_task else None


PATHS = [sync_track, async_track, sync_metered, async_metered]


class TestCounted:
    @pytest.mark.parametrize("case", list(CASES))
    def test_record_failure(self, case, logs):
        """record_failure(node, ms, exc): counted once, under the right category."""
        classifier, exc_name, category = CASES[case]
        c = NodeMetricsCollector(classifier=classifier)
        c.record_failure("n", 1.0, exception_for(exc_name))
        check_counted(c, category, logs)

    @pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
    @pytest.mark.parametrize("case", list(CASES))
    def test_instrumented(self, case, path, logs):
        """track() and @metered, sync and async: counted, and the same exception propagates."""
        classifier, exc_name, category = CASES[case]
        c = NodeMetricsCollector(classifier=classifier)
        exc = exception_for(exc_name)
        assert run(path, c, exc) is exc
        assert exc.__context__ is None
        assert exc.__cause__ is None
        check_counted(c, category, logs)

    @pytest.mark.parametrize("case", EXCEPTIONS)
    def test_explicit_category(self, case, logs):
        """An explicit category= counts even a hostile exception without looking at it."""
        c = NodeMetricsCollector(classifier=hostile)
        c.record_failure("n", 1.0, make_exceptions()[case], category=ErrorCategory.NETWORK)
        check_counted(c, "network", logs)

    @pytest.mark.parametrize("case", EXCEPTIONS)
    def test_classifier_sees_the_exception(self, case, logs):
        """A classifier gets the node's own exception object, hostile or not."""
        seen: list[BaseException] = []
        c = NodeMetricsCollector(classifier=seen.append)
        exc = make_exceptions()[case]
        assert run(sync_track, c, exc) is exc
        assert [exc] == seen
        check_counted(c, "other", logs)


class NoName(metaclass=NoNameMeta):
    """An object, not an exception, whose class's ``__name__`` raises."""


@pytest.mark.parametrize(
    ("arg", "call"),
    [
        ("error", lambda c: c.record_failure("n", 1.0, NoName())),  # type: ignore[arg-type]
        ("func", lambda c: metered("x", collector=c)(NoName())),  # type: ignore[arg-type]
        ("collector", lambda _c: metered("x", collector=NoName())),  # type: ignore[arg-type]
    ],
)
def test_refusal_names_a_type_whose_metaclass_hides_its_name(
    arg: str, call: Callable[[NodeMetricsCollector], object]
) -> None:
    # The message names the type from its slot: the metaclass's __name__
    # property, which raises, is never asked.
    c = NodeMetricsCollector()
    with pytest.raises(TypeError, match=rf"^{arg} must .* got NoName$"):
        call(c)
    assert c.get_all_node_metrics() == {}
