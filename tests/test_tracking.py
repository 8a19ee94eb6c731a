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



def _schema(path) -> tuple[list, list, list]:
    import sqlite3

    with sqlite3.connect(path) as db:  # names and columns, not the SQL text: MLflow's migrations order a table's
        names = db.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()  # CHECKs at random
        tables = [(kind, name, db.execute(f"PRAGMA table_info('{name}')").fetchall()) for kind, name in names]
        revision = db.execute("SELECT version_num FROM alembic_version").fetchall()
        experiments = db.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments").fetchall()
    db.close()
    return tables, revision, experiments


def test_a_new_sqlite_database_is_a_copy_of_the_migrated_template_and_mlflow_uses_it(tmp_path, monkeypatch):
    """A new runs directory's database is copied from the template (MLflow's migrations run once per cache), is the
    same database MLflow itself would have made, takes runs; an existing database is never touched."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from bench.tracking import _open_experiment

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # where MLflow puts the Default experiment's artefacts: ./mlruns
    reference = tmp_path / "reference.db"
    MlflowClient(f"sqlite:///{reference}").search_experiments()  # made by MLflow alone
    template = tmp_path / "cache" / "mlflow" / f"empty-{mlflow.__version__}.db"
    for name in ("first", "second"):
        runs = tmp_path / name
        client, experiment = _open_experiment(f"sqlite:///{runs / 'mlflow.db'}", "study", runs)
        assert template.exists()
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "test/auc", 0.75)
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).data.metrics == {"test/auc": 0.75}
        tables, revision, experiments = _schema(runs / "mlflow.db")
        ref_tables, ref_revision, ref_experiments = _schema(reference)
        assert tables == ref_tables and revision == ref_revision  # the same schema at the same migration
        assert experiments[0] == ref_experiments[0]  # Default, with the artefact location MLflow gives it here
        assert experiments[1][1:] == ("study", (runs / "mlartifacts" / "study").as_uri(), "active")
        assert not list(runs.glob("*.tmp"))
    before = (tmp_path / "first" / "mlflow.db").read_bytes()
    _open_experiment(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}", "study", tmp_path / "first")
    assert (tmp_path / "first" / "mlflow.db").read_bytes() == before  # an existing database is opened as it is
