"""The loss-weight search, piece by piece: the `tune:` section's validation, nested inner folds that
never hold an outer test patient, the budget guard against concurrent workers, the per-trial sampler
seed, `weights: tuned` in `bench run`'s plan, the spread statistics of the report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import wait_for

from bench.data.manifest import Case
from bench.errors import ConfigError, LeakageError
from bench.splits import make_splits
from bench.study import load_study

REPO = Path(__file__).resolve().parent.parent
BASE = f"include: {REPO / 'studies' / '_base.yaml'}\ntitle: T\nfolds: 2\n"
TUNE = "tune:\n  arm: tuned\n  weights: {cls: [0.1, 10], cross: [0.1, 10]}\n  objective: [dsc, auc]\n  trials: 3\n"
ARMS = "arms:\n  fixed: {method: joint_model}\n  tuned: {method: joint_model, weights: tuned}\n"


def _load(tmp_path: Path, text: str):
    path = tmp_path / "study.yaml"
    path.write_text(BASE + text)
    return load_study(str(path))


def test_tune_section_resolves_with_defaults(tmp_path):
    study = _load(tmp_path, TUNE + ARMS)
    tune = study.tune
    assert tune.arm == "tuned" and dict(tune.weights) == {"cls": (0.1, 10.0), "cross": (0.1, 10.0)}
    assert tune.objective == ("dsc", "auc") and tune.direction == "maximize" and tune.trials == 3
    assert (tune.inner_folds, tune.pruner, tune.log, tune.enqueue_defaults) == (3, "median", True, True)
    assert study.arm("tuned").tuned and not study.arm("fixed").tuned and dict(study.arm("tuned").weights) == {}
    # without `weights:` the method's registered search space is used
    study = _load(tmp_path, "tune: {arm: tuned, objective: [hd95, assd]}\n" + ARMS)
    assert set(study.tune.weights) == {"seg", "cls", "cross"} and study.tune.direction == "minimize"


@pytest.mark.parametrize("text, message", [
    (ARMS.replace("weights: tuned", "weights: tunde"), r"arms\.tuned\.weights: .*'tuned'.*did you mean 'tuned'"),
    (ARMS, r"arms\.tuned\.weights: 'tuned' needs a `tune:` section"),
    (TUNE + ARMS.replace(", weights: tuned", ""), r"arms\.tuned\.weights: the tuned arm must say `weights: tuned`"),
    (TUNE.replace("arm: tuned", "arm: tund") + ARMS, r"tune\.arm: .*did you mean 'tuned'"),
    (TUNE.replace("cross: [0.1, 10]", "crosss: [0.1, 10]") + ARMS, r"tune\.weights\.crosss: .*did you mean 'cross'"),
    (TUNE.replace("[0.1, 10]}", "[0, 10]}") + ARMS, r"tune\.weights\.cross: expected 0 < low < high"),
    (TUNE.replace("[0.1, 10]}", "[5, 1]}") + ARMS, r"tune\.weights\.cross: expected 0 < low < high"),
    (TUNE.replace("[dsc, auc]", "[dsc, assd]") + ARMS, r"tune\.objective: .*mix higher- and lower-is-better"),
    (TUNE.replace("[dsc, auc]", "[dsc, aucc]") + ARMS, r"tune\.objective\[1\]: unknown metric 'aucc'"),
    (TUNE + "  pruner: hyperband\n" + ARMS, r"tune\.pruner: expected one of median, halving, none"),
    (TUNE + "  inner_folds: 1\n" + ARMS, r"tune\.inner_folds: expected a value >= 2"),
    (TUNE + "  budget: 3\n" + ARMS, r"tune\.budget: unknown key"),
    ("tune: {arm: tuned, objective: [auc]}\narms:\n  tuned: {method: unet3d, weights: tuned}\n",
     r"tune\.objective: arm 'tuned' \(unet3d\) is a seg method; it has no auc"),
])
def test_tune_section_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, text)
    assert str(tmp_path / "study.yaml") in str(info.value)


def test_repository_tune_studies():
    joint = load_study("tune_joint_beta")
    assert [a.name for a in joint.arms] == ["fixed", "tuned"] and joint.reference == "fixed"
    assert dict(joint.tune.weights) == {"cls": (0.1, 10.0), "cross": (0.1, 10.0)}  # β1 = 1 stays (scale-free)
    assert joint.tune.objective == ("dsc_lesion", "auc") and joint.resolve_profile("cpu").width == 0.25
    uml = load_study("tune_uml_weights")
    assert set(uml.tune.weights) == {"mutual", "seg"} and uml.arm("tuned").method == "uml"


def _cases(n_ms=24, n_nmosd=20, longitudinal=(4, 4, 5, 3)):
    """MS patients with several scans each (the ISBI-like ones), the rest one scan per patient."""
    cases, pid = [], 0
    for n_tp in longitudinal:
        cases += [Case(f"p{pid}_t{t}", f"p{pid}", str(t), 0, "A", Path("x"), None) for t in range(n_tp)]
        pid += 1
    for label, n in ((0, n_ms - sum(longitudinal)), (1, n_nmosd)):
        for _ in range(n):
            cases.append(Case(f"p{pid}_t0", f"p{pid}", "0", label, "B", Path("x"), None))
            pid += 1
    return cases


@pytest.mark.parametrize("inner_folds", [2, 3])
def test_inner_folds_never_hold_an_outer_test_patient(inner_folds):
    from bench.tuning import inner_splits

    cases = _cases()
    outer = make_splits(cases, 5, 0, "data")
    for fold in range(5):
        outer_train, outer_test = outer.train_test(fold, cases)
        held_out = {c.patient_id for c in outer_test}
        inner, train = inner_splits(outer, fold, cases, inner_folds)
        assert [c.scan_id for c in train] == [c.scan_id for c in outer_train]
        validated = []
        for j in range(inner_folds):
            itrain, ival = inner.train_test(j, train)
            assert not ({c.patient_id for c in itrain} | {c.patient_id for c in ival}) & held_out
            assert not {c.patient_id for c in itrain} & {c.patient_id for c in ival}  # grouped inside too
            assert {c.label for c in ival} == {0, 1}  # stratified: both classes to validate on
            validated += [c.scan_id for c in ival]
        assert sorted(validated) == sorted(c.scan_id for c in outer_train)  # every outer training scan once


def test_inner_split_guard_fires_on_a_leaky_split(monkeypatch):
    import bench.splits
    from bench.splits import Splits
    from bench.tuning import inner_splits

    cases = _cases()
    outer = make_splits(cases, 5, 0, "data")
    _, outer_test = outer.train_test(0, cases)

    def leaky(train, folds, seed, fingerprint):  # an inner "split" that validates on an outer test scan
        return Splits(folds, seed, fingerprint, ((outer_test[0].scan_id,), *[() for _ in range(folds - 1)]))

    monkeypatch.setattr(bench.splits, "make_splits", leaky)
    with pytest.raises(LeakageError, match=f"outer fold 0, inner fold 0: outer test patient.*{outer_test[0].patient_id}"):
        inner_splits(outer, 0, cases, 2)


def test_weight_spread_by_hand():
    from bench.report.tuning import weight_spread

    log = weight_spread([1.0, 4.0], log=True)  # logs 0 and ln 4: mean ln 2, sd ln4/√2
    assert log["centre"] == pytest.approx(2.0) and log["spread"] == pytest.approx(4 ** (1 / math.sqrt(2)))
    assert (log["min"], log["max"]) == (1.0, 4.0)
    linear = weight_spread([1.0, 2.0, 6.0], log=False)
    assert linear["centre"] == pytest.approx(3.0) and linear["spread"] == pytest.approx(math.sqrt(7.0))


def _search(tmp_path: Path, **changes):
    from bench.tuning import Search

    values = dict(study="s", arm="tuned", method="joint_model", kind="joint", model_args={},
                  defaults={"seg": 1.0, "cls": 0.8, "cross": 1.0}, space={"cls": (0.1, 10.0), "cross": (0.1, 10.0)},
                  log=True, objective=("dsc", "auc"), direction="maximize", trials=3, inner_folds=2, pruner="median",
                  sampler_seed=0, startup_trials=1, warmup_epochs=1, enqueue_defaults=True,
                  profile={"name": "smoke", "epochs": 2, "workers": 0}, training={}, folds=2, data_fingerprint="d",
                  split_hash="h", manifest="m", cache_dir="c", splits_path="p")
    values.update(changes)
    return Search(**values)


def test_search_identity_ignores_the_budget_and_locations_only(tmp_path):
    base = _search(tmp_path)
    assert base.hash == _search(tmp_path, trials=30, manifest="elsewhere", cache_dir="x").hash
    assert base.hash == _search(tmp_path, profile={"name": "smoke", "epochs": 2, "workers": 4}).hash
    for change in ({"space": {"cls": (0.1, 5.0), "cross": (0.1, 10.0)}}, {"objective": ("dsc",)}, {"inner_folds": 3},
                   {"profile": {"name": "cpu", "epochs": 2, "workers": 0}}, {"sampler_seed": 1}, {"split_hash": "g"}):
        assert _search(tmp_path, **change).hash != base.hash, change
    assert _search(tmp_path).to_json()["search_hash"] == base.hash
    from bench.tuning import Search

    assert Search.from_json(base.to_json()) == base


def _storage(tmp_path):
    from bench.tuning import make_storage

    return make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", grace=2)


def test_paper_weights_are_the_first_trial_and_surplus_trials_never_train(tmp_path, monkeypatch):
    import optuna

    import bench.tuning as tuning

    search = _search(tmp_path)
    storage = _storage(tmp_path)
    study = tuning.open_fold_study(search, storage, 0)
    tuning.open_fold_study(search, storage, 0)  # opened again (a resumed or second worker): enqueued once
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {"cls": 0.8, "cross": 1.0}

    trained = []
    monkeypatch.setattr(tuning, "run_trial", lambda search, fold, trial, cache, on_epoch: trained.append(
        {k: trial.suggest_float(k, *search.space[k], log=True) for k in search.space}) or 0.5)
    for _ in range(3):
        study.optimize(tuning._objective(search, 0, study, {}, None), n_trials=1, catch=(tuning.TrialFailed, tuning._Surplus))
    assert trained[0] == {"cls": 0.8, "cross": 1.0}
    # a fourth trial asked by a concurrent worker is beyond the budget: failed, flagged, never trained
    study.optimize(tuning._objective(search, 0, study, {}, None), n_trials=1, catch=(tuning.TrialFailed, tuning._Surplus))
    last = study.trials[-1]
    assert last.state.name == "FAIL" and last.user_attrs[tuning.SURPLUS] and len(trained) == 3
    assert tuning.trial_counts(study)["finished"] == 3


def test_the_sampler_is_seeded_by_trial_number_so_workers_do_not_repeat_draws(tmp_path):
    import optuna

    from bench.tuning import _sampler

    search = _search(tmp_path, startup_trials=10)

    def draw(number: int) -> float:
        study = optuna.create_study(sampler=_sampler(search, 0, number))
        return study.ask().suggest_float("cls", 0.1, 10.0, log=True)

    assert draw(1) == draw(1)  # one worker repeats itself
    assert len({draw(n) for n in range(1, 6)}) == 5  # two workers asking trials 1 and 2 draw differently
    other_fold = optuna.create_study(sampler=_sampler(search, 1, 1)).ask().suggest_float("cls", 0.1, 10.0, log=True)
    assert other_fold != draw(1)


def test_tuned_weights_need_a_finished_search_of_the_same_spec(tmp_path):
    from bench.search import BEST_FILE, tune_dir, tuned_weights
    from bench.store import write_json_atomic

    search = _search(tmp_path)
    with pytest.raises(ConfigError, match=r"weights: tuned.*best\.json does not exist; run `bench tune --study s --profile smoke`"):
        tuned_weights(tmp_path, search)
    record = {"search_hash": search.hash, "trials": 3, "profile": "smoke", "folds": {
        "0": {"done": True, "finished": 3, "complete": 2, "weights": {"seg": 1.0, "cls": 2.0, "cross": 0.5}},
        "1": {"done": False, "finished": 1, "complete": 1, "weights": {"seg": 1.0, "cls": 0.3, "cross": 0.5}}}}
    write_json_atomic(tune_dir(tmp_path, "s") / BEST_FILE, record)
    with pytest.raises(ConfigError, match=r"outer fold 1's search is unfinished \(1 of 3 trials, 1 complete\)"):
        tuned_weights(tmp_path, search)
    record["folds"]["1"]["done"] = True
    write_json_atomic(tune_dir(tmp_path, "s") / BEST_FILE, record)
    assert tuned_weights(tmp_path, search) == {0: {"seg": 1.0, "cls": 2.0, "cross": 0.5}, 1: {"seg": 1.0, "cls": 0.3, "cross": 0.5}}
    with pytest.raises(ConfigError, match=r"made by a search with another spec"):
        tuned_weights(tmp_path, _search(tmp_path, inner_folds=3))


@pytest.mark.parametrize("name, kind", [("median", "MedianPruner"), ("halving", "SuccessiveHalvingPruner"),
                                        ("none", "NopPruner")])
def test_the_study_pruner_is_the_one_optuna_uses(tmp_path, name, kind):
    import optuna

    from bench.tuning import _pruner, open_fold_study

    search = _search(tmp_path, pruner=name, warmup_epochs=2, startup_trials=1)
    assert type(_pruner(search)).__name__ == kind
    study = open_fold_study(search, _storage(tmp_path), 0)
    assert type(study.pruner).__name__ == kind
    if name == "median":  # a trial below the median of the finished ones is pruned after the warm-up, not before
        for value in (0.9, 0.8):
            done = study.ask()
            for step in range(1, 5):
                done.report(value, step)
            study.tell(done, value)
        weak = study.ask()
        weak.report(0.1, 2)
        assert not weak.should_prune()  # step 2: inside warmup_epochs = 2
        weak.report(0.1, 3)
        assert weak.should_prune()
        assert isinstance(study.pruner, optuna.pruners.MedianPruner)


def test_trackers_leave_the_tracking_uri_environment_alone(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI, which default_tracking_uri reads first: a second
    study run in the same process (or a subprocess) would be logged into the first one's database."""
    import os

    from bench.tracking import SearchTracker, Tracker, default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = tmp_path / "a"
    Tracker(default_tracking_uri(first), "s", first, parent_name="p", parent_params={}).finish()
    SearchTracker(default_tracking_uri(first), "s", first, search_hash="h", params={}).finish()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert default_tracking_uri(tmp_path / "b") == f"sqlite:///{(tmp_path / 'b').resolve() / 'mlflow.db'}"


def test_a_trial_repeating_an_earlier_trials_weights_is_refused_as_surplus():
    """A dead worker's trial re-queued twice (its Ctrl-C handler and the heartbeat) must not run twice."""
    import optuna

    from bench.tuning import SURPLUS, _refuse_twin

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    space = {"cls": optuna.distributions.FloatDistribution(0.1, 10, log=True)}
    first = study.ask(space)
    _refuse_twin(first, first.params)  # nothing earlier: goes on
    study.tell(first, 0.5)
    failed = study.ask(space)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(failed.params)  # retrying a failed trial's weights is allowed ...
    retry = study.ask(space)
    _refuse_twin(retry, retry.params)
    study.enqueue_trial(first.params)  # ... repeating a finished (or running) trial's weights is not
    twin = study.ask(space)
    with pytest.raises(Exception, match=f"repeats the weights of trial {first.number}"):
        _refuse_twin(twin, twin.params)
    assert twin.user_attrs[SURPLUS] is True and twin.user_attrs["bench.duplicate_of"] == first.number


def test_a_trial_left_running_without_a_heartbeat_is_adopted_then_failed_and_requeued(tmp_path):
    """A worker killed between Optuna's `ask` and its heartbeat thread's first beat leaves a RUNNING trial that
    Optuna's stale check skips for good (the tuning kill soak hung on one); the workers' scan gives it a heartbeat,
    after which the grace period fails it and re-queues its weights."""
    import sqlite3

    from bench.tuning import adopt_silent_trials, make_storage, quiet_optuna

    optuna = quiet_optuna()
    path = tmp_path / "optuna.db"
    study = optuna.create_study(storage=make_storage(f"sqlite:///{path}", grace=4), study_name="fold_0")
    weights = {"cls": optuna.distributions.FloatDistribution(0.1, 10.0, log=True)}
    dead = study.ask(weights)  # RUNNING, and no heartbeat thread ever started: its worker died right here
    optuna.storages.fail_stale_trials(study)
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]  # Optuna alone never fails it
    assert adopt_silent_trials(study, after=3600) == []  # too young to tell from a live worker about to beat
    assert adopt_silent_trials(study, after=0) == [dead.number]
    assert adopt_silent_trials(study, after=0) == []  # one heartbeat, once
    with sqlite3.connect(path) as db:  # the heartbeat ages past the grace period (rewound rather than waited for)
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")
    db.close()
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].params == dead.params  # re-queued with the dead trial's weights
    live = study.ask(weights)  # a live trial with its heartbeat is left to Optuna's own check
    study._storage.record_heartbeat(live._trial_id)
    assert adopt_silent_trials(study, after=0) == []


_POP_WAITING = """
import json, pathlib, sys, time
from bench.tuning import make_storage, quiet_optuna
optuna = quiet_optuna()
study = optuna.load_study(study_name="fold_0", storage=make_storage(sys.argv[1]))
pathlib.Path(sys.argv[3]).touch()  # loaded and ready
go = pathlib.Path(sys.argv[2])
while not go.exists():  # start together (states on disk, not times)
    time.sleep(0.01)
taken = []
while (trial_id := study._pop_waiting_trial_id()) is not None:
    taken.append(trial_id)
print(json.dumps(taken))
"""


def test_concurrent_workers_on_sqlite_take_each_enqueued_trial_exactly_once(tmp_path):
    """Optuna gives a waiting (enqueued) trial to one worker with SELECT … FOR UPDATE, which SQLite ignores; without
    `make_storage`'s BEGIN IMMEDIATE, four processes popping 80 enqueued trials took 15-16 of them twice (two
    workers trained the same trial and the second failed with "Cannot tell a COMPLETE trial")."""
    import json
    import subprocess
    import sys

    from bench.tuning import make_storage, quiet_optuna

    optuna = quiet_optuna()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="fold_0")
    for i in range(80):
        study.enqueue_trial({"cls": 0.1 + i / 10}, skip_if_exists=False)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready_{i}" for i in range(4)]
    workers = [subprocess.Popen([sys.executable, "-c", _POP_WAITING, url, str(go), str(r)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
    wait_for(lambda: all(r.exists() for r in ready), *workers)
    go.touch()
    taken = []
    for worker in workers:
        out, err = worker.communicate()
        assert worker.returncode == 0, err[-2000:]
        taken += json.loads(out)
    waiting = {t._trial_id for t in study.get_trials(deepcopy=False)}
    assert sorted(taken) == sorted(waiting)  # every trial once: none twice, none left waiting
    assert {t.state.name for t in study.get_trials()} == {"RUNNING"}
