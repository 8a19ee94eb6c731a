"""The MLflow mirror's guard: a tracking error is one warning, then mirroring stops; the work goes on."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from bench.tracking import Ending, Guarded


class _Tracker:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def log_unit(self, name: str) -> str:
        self.calls.append(name)
        if name == self.fail_on:
            raise RuntimeError("(sqlite3.OperationalError) database is locked\n[SQL: INSERT ...]")
        return f"run-{name}"


def test_calls_pass_through_until_the_first_error_then_are_skipped_with_one_warning():
    warnings: list[str] = []
    inner = _Tracker(fail_on="b")
    guarded = Guarded(lambda: inner, warn=warnings.append, catch_up="`bench sync smoke`")
    assert guarded.log_unit("a") == "run-a" and guarded.failed is None
    assert guarded.log_unit("b") is None  # the error is swallowed ...
    assert guarded.log_unit("c") is None  # ... and nothing more is attempted
    assert inner.calls == ["a", "b"]
    assert len(warnings) == 1 and "database is locked" in warnings[0] and "`bench sync smoke`" in warnings[0]
    assert "INSERT" not in warnings[0]  # only the first line of the error
    assert guarded.failed.startswith("RuntimeError: (sqlite3.OperationalError) database is locked")


def test_a_tracker_that_cannot_be_opened_is_a_warning_and_every_call_a_no_op():
    warnings: list[str] = []

    def unreachable():
        raise ConnectionError("http://127.0.0.1:9: connection refused")

    guarded = Guarded(unreachable, warn=warnings.append, catch_up="x")
    assert guarded.log_unit("a") is None and guarded.finish("FINISHED") is None
    assert len(warnings) == 1 and "opening the tracking store" in warnings[0] and "connection refused" in warnings[0]


def test_ctrl_c_inside_a_tracker_call_is_not_swallowed():
    class Interrupted:
        def log_unit(self, name):
            raise KeyboardInterrupt

    guarded = Guarded(Interrupted, warn=lambda text: None, catch_up="x")
    with pytest.raises(KeyboardInterrupt):
        guarded.log_unit("a")


@pytest.mark.parametrize("error, expected", [(None, "FINISHED"), (KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")])
def test_ending_hands_over_how_the_invocation_ended_and_lets_errors_through(error, expected):
    ended = []
    with pytest.raises(error) if error else nullcontext():
        with Ending(ended.append):
            if error:
                raise error
    assert ended == [expected]
    with Ending(ended.append) as end:
        end.status = "FAILED"  # a body may say so itself (units failed, nothing raised)
    assert ended[-1] == "FAILED"

