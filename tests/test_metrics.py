from __future__ import annotations

import json
import math

import attrs
import pytest

from hypothesis import given
from hypothesis import strategies as st

from nodemetrics import NodeMetrics
from nodemetrics._histogram import DEFAULT_BUCKETS_MS
from nodemetrics._node import _Node


COUNTS = [
    "total_executions",
    "success_count",
    "failure_count",
    "retry_count",
    "timeout_errors",
    "validation_errors",
    "network_errors",
    "other_errors",
    "cancelled_count",
    "interrupted_count",
]
OPTIONAL_DURATIONS = ["last_execution_ms", "p50", "p90", "p99"]

# Five counts add up to total_executions, which must stay at most 2**63 - 1.
counts = st.integers(min_value=0, max_value=2**60)
durations = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)


@st.composite
def metrics(draw: st.DrawFn) -> NodeMetrics:
    """Any snapshot that keeps NodeMetrics' invariants."""
    success = draw(counts)
    errors = draw(st.lists(counts, min_size=4, max_size=4))
    total = success + sum(errors)
    if total:
        last, avg = draw(durations), draw(durations)
        p50, p90, p99 = sorted(draw(st.lists(durations, min_size=3, max_size=3)))
    else:
        last, avg, p50, p90, p99 = None, 0.0, None, None, None
    return NodeMetrics(
        total_executions=total,
        success_count=success,
        failure_count=sum(errors),
        retry_count=draw(counts),
        last_execution_ms=last,
        avg_execution_ms=avg,
        p50=p50,
        p90=p90,
        p99=p99,
        timeout_errors=errors[0],
        validation_errors=errors[1],
        network_errors=errors[2],
        other_errors=errors[3],
        cancelled_count=draw(counts),
    )


class _Int(int):
    pass


class _Float(float):
    def __float__(self) -> float:
        raise AssertionError("a subclass's __float__ must not run")

    def __lt__(self, other: object) -> bool:
        raise AssertionError("a subclass's __lt__ must not run")


class TestNodeMetrics:
    def test_field_order(self):
        """The fields are exactly the contract's, in its order."""
        assert [
            "total_executions",
            "success_count",
            "failure_count",
            "retry_count",
            "last_execution_ms",
            "avg_execution_ms",
            "p50",
            "p90",
            "p99",
            "timeout_errors",
            "validation_errors",
            "network_errors",
            "other_errors",
            "cancelled_count",
            "interrupted_count",
        ] == [a.name for a in attrs.fields(NodeMetrics)]

    def test_empty_default(self):
        """NodeMetrics() is the empty snapshot."""
        m = NodeMetrics()
        assert 0 == m.total_executions
        assert m.last_execution_ms is None
        assert 0.0 == m.avg_execution_ms
        assert (None, None, None) == (m.p50, m.p90, m.p99)

    def test_frozen_and_slotted(self):
        """Snapshots cannot be changed and have no __dict__."""
        m = NodeMetrics()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            m.success_count = 3  # type: ignore[misc]
        assert not hasattr(m, "__dict__")

    @pytest.mark.parametrize("field", COUNTS)
    @pytest.mark.parametrize("bad", [True, 1.0, "1", None])
    def test_count_type(self, field, bad):
        """A count that is not an int (a bool included) is a TypeError naming it."""
        with pytest.raises(TypeError, match=field):
            NodeMetrics(**{field: bad})

    @pytest.mark.parametrize("field", COUNTS)
    def test_count_negative(self, field):
        """A negative count is a ValueError naming the field."""
        with pytest.raises(ValueError, match=field):
            NodeMetrics(**{field: -1})

    @pytest.mark.parametrize("field", COUNTS)
    def test_count_too_large(self, field):
        """A count above 2**63 - 1 is a ValueError naming the field; 2**63 - 1 is kept."""
        with pytest.raises(
            ValueError, match=rf"^{field} must be at most 2\*\*63 - 1, got 9223372036854775808$"
        ):
            NodeMetrics(**{field: 2**63})
        with pytest.raises(
            ValueError, match=rf"^{field} must be at most .*, got an int of 16,610 bits"
        ):
            NodeMetrics(**{field: 10**5000})

    @pytest.mark.parametrize(
        "failed",
        [{"failure_count": 2**63 - 1, "other_errors": 2**63 - 1}, {"success_count": 2**63 - 1}],
    )
    def test_largest_counts_kept(self, failed):
        """Counts of 2**63 - 1 are kept, and survive JSON."""
        largest = 2**63 - 1
        m = NodeMetrics(
            total_executions=largest, retry_count=largest, cancelled_count=largest,
            interrupted_count=largest, last_execution_ms=1.0, p50=1.0, p90=1.0, p99=1.0, **failed,
        )  # fmt: skip
        assert largest == m.retry_count
        assert m == NodeMetrics.from_dict(json.loads(json.dumps(m.to_dict())))

    @pytest.mark.parametrize("kind", [float, _Float], ids=["float", "subclass"])
    @pytest.mark.parametrize("field", [*OPTIONAL_DURATIONS, "avg_execution_ms"])
    def test_negative_zero_is_stored_as_zero(self, field, kind):
        """A duration of -0.0 is kept as 0.0, so that no snapshot shows "-0.0"."""
        fields = dict.fromkeys(OPTIONAL_DURATIONS, 0.0)
        fields.update({"avg_execution_ms": 0.0, field: kind(-0.0)})
        m = NodeMetrics(total_executions=1, success_count=1, **fields)
        assert "0.0" == repr(getattr(m, field))
        assert "-" not in json.dumps(m.to_dict())
        assert "0.0" == repr(NodeMetrics(avg_execution_ms=kind(-0.0)).avg_execution_ms)

    @pytest.mark.parametrize("field", [*OPTIONAL_DURATIONS, "avg_execution_ms"])
    @pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, -math.inf])
    def test_duration_value(self, field, bad):
        """A negative or non-finite duration is a ValueError naming the field."""
        with pytest.raises(ValueError, match=field):
            NodeMetrics(**{field: bad})

    @pytest.mark.parametrize("field", [*OPTIONAL_DURATIONS, "avg_execution_ms"])
    @pytest.mark.parametrize("bad", [True, "1.0", [1.0]])
    def test_duration_type(self, field, bad):
        """A duration that is not a number is a TypeError naming the field."""
        with pytest.raises(TypeError, match=field):
            NodeMetrics(**{field: bad})

    def test_avg_is_not_optional(self):
        """avg_execution_ms is 0.0 when empty, never None."""
        with pytest.raises(TypeError, match="avg_execution_ms"):
            NodeMetrics(avg_execution_ms=None)  # type: ignore[arg-type]

    def test_int_durations_become_floats(self):
        """An int duration (as JSON may give) is stored as a float."""
        m = NodeMetrics(
            total_executions=1, success_count=1, last_execution_ms=3, avg_execution_ms=2,
            p50=3, p90=3, p99=3,
        )  # fmt: skip
        assert 3.0 == m.p50
        assert float is type(m.p50)
        assert float is type(m.avg_execution_ms)

    @pytest.mark.parametrize("field", COUNTS)
    def test_int_subclass_is_no_count(self, field):
        """An int subclass (whose comparisons are its own) is a TypeError naming the field."""
        with pytest.raises(TypeError, match=f"{field} must be an int, got _Int"):
            NodeMetrics(**{field: _Int(0)})

    @pytest.mark.parametrize("field", [*OPTIONAL_DURATIONS, "avg_execution_ms"])
    def test_float_subclass_copied(self, field):
        """A float subclass duration is stored as an exact float; none of its code runs."""
        with pytest.raises(ValueError, match=field):
            NodeMetrics(**{field: _Float(1.5)})  # then a contradiction, not its __lt__
        m = NodeMetrics(
            **{
                **dict.fromkeys(OPTIONAL_DURATIONS, 1.5),
                "avg_execution_ms": 1.5,
                field: _Float(1.5),
            },
            total_executions=1,
            success_count=1,
        )
        assert float is type(getattr(m, field))
        assert 1.5 == getattr(m, field)


class TestDicts:
    @given(metrics())
    def test_round_trip(self, m):
        """from_dict(to_dict()) and a trip through JSON give the same snapshot."""
        assert m == NodeMetrics.from_dict(m.to_dict())
        assert m == NodeMetrics.from_dict(json.loads(json.dumps(m.to_dict())))

    def test_to_dict_is_plain(self):
        """to_dict() is a plain dict in field order."""
        d = NodeMetrics(
            total_executions=2, success_count=2, last_execution_ms=1.5, avg_execution_ms=1.5,
            p50=1.5, p90=1.5, p99=1.5,
        ).to_dict()  # fmt: skip
        assert dict is type(d)
        assert [a.name for a in attrs.fields(NodeMetrics)] == list(d)
        assert 1.5 == d["p50"]

    def test_missing_field(self):
        """A missing field is a ValueError naming it."""
        d = NodeMetrics().to_dict()
        del d["p90"]
        with pytest.raises(ValueError, match="missing field.*p90"):
            NodeMetrics.from_dict(d)

    def test_unknown_field(self):
        """An unknown field is a ValueError naming it."""
        d = {**NodeMetrics().to_dict(), "p75": 1.0}
        with pytest.raises(ValueError, match="no field.*p75"):
            NodeMetrics.from_dict(d)

    def test_unknown_field_name_escaped(self):
        """An unknown field's name is shown with its control characters escaped."""
        d = {**NodeMetrics().to_dict(), "\x1b[2J\nfake": 1, 7: 1}
        with pytest.raises(ValueError) as info:
            NodeMetrics.from_dict(d)
        assert "NodeMetrics has no field(s): 7, \\x1b[2J\\nfake" == str(info.value)

    def test_not_a_mapping(self):
        """Something other than a mapping is a TypeError naming what it got."""
        with pytest.raises(TypeError, match="^mapping must be a mapping, got list$"):
            NodeMetrics.from_dict([("p50", 1.0)])  # type: ignore[arg-type]

    def test_contradiction(self):
        """A snapshot that contradicts itself is a ValueError naming the fields."""
        d = {**NodeMetrics().to_dict(), "total_executions": 1}
        with pytest.raises(ValueError, match="total_executions must equal success_count"):
            NodeMetrics.from_dict(d)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            (
                {"total_executions": 5, "success_count": 1},
                "total_executions must equal success_count + failure_count (3), got 5",
            ),
            (
                {"other_errors": 1},
                (
                    "timeout_errors + validation_errors + network_errors + other_errors "
                    "must equal failure_count (2), got 1"
                ),
            ),
            (
                {"last_execution_ms": None},
                "last_execution_ms must be set when total_executions is 3",
            ),
            ({"p50": None}, "p50 must be set when total_executions is 3"),
            ({"p90": None}, "p90 must be set when total_executions is 3"),
            ({"p99": None}, "p99 must be set when total_executions is 3"),
            (
                {**NodeMetrics().to_dict(), "last_execution_ms": 1.0},
                "last_execution_ms must be None when total_executions is 0",
            ),
            (
                {**NodeMetrics().to_dict(), "p50": 1.0},
                "p50 must be None when total_executions is 0",
            ),
            (
                {**NodeMetrics().to_dict(), "p99": 1.0},
                "p99 must be None when total_executions is 0",
            ),
            (
                {**NodeMetrics().to_dict(), "avg_execution_ms": 1.5},
                "avg_execution_ms must be 0.0 when total_executions is 0, got 1.5",
            ),
            ({"retry_count": -3}, "retry_count must be >= 0, got -3"),
        ],
    )
    def test_contradiction_message(self, fields, message):
        """Each contradiction's message names its fields and gives both sides' values."""
        ran = {
            **NodeMetrics().to_dict(),
            "total_executions": 3,
            "success_count": 1,
            "failure_count": 2,
            "other_errors": 2,
            "last_execution_ms": 1.0,
            "avg_execution_ms": 1.0,
            "p50": 1.0,
            "p90": 1.0,
            "p99": 1.0,
        }
        with pytest.raises(ValueError) as info:
            NodeMetrics.from_dict({**ran, **fields})
        assert message == str(info.value)

    def test_wrong_type_message(self):
        """A duration of the wrong type is refused naming the field, the type and the value."""
        with pytest.raises(TypeError) as info:
            NodeMetrics(p50="1.0")  # type: ignore[arg-type]
        assert "p50 must be a float, got str '1.0'" == str(info.value)

    def test_unreadable_mapping_message(self):
        """A mapping whose items() raises is refused with that exception's repr."""

        class Unreadable(dict):
            def items(self):
                raise RuntimeError("boom")

        with pytest.raises(TypeError) as info:
            NodeMetrics.from_dict(Unreadable())
        assert "mapping could not be read: RuntimeError('boom')" == str(info.value)

    def test_every_missing_and_unknown_field_listed(self):
        """All missing fields, then all unknown ones, are listed, comma-separated."""
        d = NodeMetrics().to_dict()
        del d["p90"], d["p99"]
        with pytest.raises(ValueError, match="^NodeMetrics is missing field\\(s\\): p90, p99$"):
            NodeMetrics.from_dict(d)
        d = {**NodeMetrics().to_dict(), "p75": 1.0, "p25": 2.0}
        with pytest.raises(ValueError, match="^NodeMetrics has no field\\(s\\): p25, p75$"):
            NodeMetrics.from_dict(d)

    def test_bad_value(self):
        """A bad value in the mapping is refused, naming the field."""
        d = {**NodeMetrics().to_dict(), "retry_count": -3}
        with pytest.raises(ValueError, match="retry_count"):
            NodeMetrics.from_dict(d)


class TestUnvalidatedSnapshot:
    @given(
        st.fixed_dictionaries(
            {
                "success": counts | st.just(0),
                "retries": counts,
                "cancelled": counts,
                "interrupted": counts,
                "errors": st.lists(counts | st.just(0), min_size=4, max_size=4),
                "total_ms": st.floats(0.0, 1e15),
            }
        ),
        st.lists(st.floats(0.0, 1e12), min_size=1, max_size=7),
    )
    def test_same_as_validated(self, state, samples):
        """The collector's unvalidated snapshot is exactly the validated NodeMetrics."""
        if not state["success"] and not any(state["errors"]):
            # A node without executions has no samples (as a collector keeps it).
            state["total_ms"] = 0.0
            samples = []
        node = _Node(5, count_failures=False, bounds=DEFAULT_BUCKETS_MS)
        for name, value in state.items():
            setattr(node, name, value)
        node.last = samples[-1] if samples else None
        for value in samples:
            node.window.add(value, False)
        p50, p90, p99 = node.window.p50_p90_p99()
        executions = node.success + sum(node.errors)
        errors = node.errors

        fast = node.snapshot()

        assert NodeMetrics is type(fast)
        validated = NodeMetrics(
            total_executions=executions,
            success_count=node.success,
            failure_count=sum(node.errors),
            retry_count=node.retries,
            last_execution_ms=node.last,
            avg_execution_ms=node.total_ms / executions if executions else 0.0,
            p50=p50,
            p90=p90,
            p99=p99,
            timeout_errors=errors[0],
            validation_errors=errors[1],
            network_errors=errors[2],
            other_errors=errors[3],
            cancelled_count=node.cancelled,
            interrupted_count=node.interrupted,
        )
        assert validated == fast
        assert hash(validated) == hash(fast)
        assert repr(validated) == repr(fast)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            fast.p50 = 1.0  # type: ignore[misc]
