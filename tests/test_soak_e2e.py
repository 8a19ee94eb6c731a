"""The kill soak (bench/soak.py): `bench run --jobs 2` on `smoke` killed at least ten times — SIGKILL of the
process group, SIGKILL of the parent alone, SIGTERM, Ctrl-C in turn — then completed: nothing lost, duplicated
or mixed, no orphan worker, exactly one FINISHED MLflow child run per unit; and `bench tune --jobs 2` killed
in each of the four ways, ending with every outer fold exactly at its budget."""

from __future__ import annotations

import pytest

from bench.soak import MODES, TUNE_TRIALS, soak

pytestmark = pytest.mark.slow


def test_ten_kills_lose_duplicate_and_mix_nothing_and_leave_no_orphan(tmp_path):
    lines: list[str] = []
    result = soak(kills=10, out=tmp_path / "soak", study="smoke", profile="smoke", jobs=2, seed=1, log=lines.append)
    totals = result.totals
    report = "\n".join(lines)
    assert totals["kills"] == 10 and {k["mode"] for k in result.kills} == set(MODES), report
    assert all(k["exit"] != 0 for k in result.kills), report  # each one really interrupted a run
    assert any(k["workers"] >= 2 and k["mode"] == "SIGKILL parent" for k in result.kills), report  # workers were there
    assert {k: totals[k] for k in ("lost", "duplicated", "mixed", "failed_left", "orphans", "mlflow_missing",
                                   "mlflow_extra")} == dict.fromkeys(("lost", "duplicated", "mixed", "failed_left",
                                                                      "orphans", "mlflow_missing", "mlflow_extra"), 0), report
    assert totals["units"] == 9 * len(result.cycles) and result.ok


def test_killed_searches_end_exactly_at_budget_with_no_trial_twice(tmp_path):
    """`bench tune --jobs 2` killed once in each of the four ways (the script runs more: `--tune --kills 10`)."""
    lines: list[str] = []
    result = soak(kills=4, out=tmp_path / "soak", jobs=2, seed=2, tune=True, log=lines.append)
    totals, report = result.totals, "\n".join(lines)
    assert totals["kills"] == 4 and [k["mode"] for k in result.kills] == list(MODES), report
    assert all(c["units"] == 2 * TUNE_TRIALS for c in result.cycles), report  # every fold exactly at its budget
    assert result.ok, (totals, report)


def test_an_invocation_that_finishes_nothing_fails_the_soak_instead_of_hanging_it(tmp_path, monkeypatch):
    """The soak's failure bound (a hung `bench tune` once held a fresh-clone `make test` until it was killed):
    progress resets the clock; no progress past the bound kills the invocation's group and raises."""
    import subprocess

    import bench.soak as soak_module
    from bench.procs import alive

    finished = ["a"]
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    watch = soak_module._Stall(lambda: finished, proc, tmp_path)
    monkeypatch.setattr(soak_module, "HUNG_S", -1.0)  # any time without progress is too long
    finished.append("b")  # progress since the last look: not hung
    watch.last_look = float("-inf")
    watch.check()
    assert proc.poll() is None and watch.seen == 2
    watch.last_look = float("-inf")
    with pytest.raises(RuntimeError, match="finished nothing .* hung; see .*bench.log"):
        watch.check()
    assert proc.wait(timeout=60) != 0 and not alive(proc.pid)
