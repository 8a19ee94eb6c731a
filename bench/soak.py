"""Kill soak: ``bench run`` (or ``bench tune``) killed again and again at random moments, then checked for
lost, duplicated and mixed work and for orphan workers.

Usage (the numbers go into ``soak.json`` and one line per kill)::

    python -m bench.soak --kills 10 --study smoke --profile smoke --jobs 2 --out /tmp/soak
    python -m bench.soak --tune --kills 10 --out /tmp/soak-tune

Each invocation is killed at a *state*, never at a time: after its n-th newly finished unit (n = 1 or 2,
so every invocation makes progress and the soak ends), plus a random delay of up to ``--max-delay``
seconds, so the kill lands anywhere — in training, in evaluation, while DONE.json or the MLflow mirror is
being written. The signals rotate through the four ways a run dies:

* ``SIGKILL`` to the whole process group (the OOM killer, ``kill -9 -PGID``);
* ``SIGKILL`` to the parent alone (its workers must notice and stop: no orphan trains on and writes later);
* ``SIGTERM`` to the parent (``kill``, a batch scheduler's stop);
* ``SIGINT`` to the whole process group (Ctrl-C in a terminal).

A signal that lands while the run is exiting after its last unit (exit status 0) is not counted as a kill;
the next invocation gets the same signal again, so every kind is really exercised.

When a run directory's study completes, its invariants are checked and a fresh cycle starts, until the
kills are done. A cycle holds when every planned unit is done exactly once (a DONE.json, once written, never
changes), no FAILED.json is left, every per-case table matches its unit (spec hash, fold, the fold's test
scans × σ), no worker outlives its parent, and MLflow holds exactly one FINISHED child run per unit.

With ``--tune`` the soak kills ``bench tune --jobs 2`` of a small search (:data:`TUNE_STUDY`, on the smoke
profile) after its n-th newly finished trial; a cycle holds when every outer fold has exactly its budget of
finished trials, no two with the same weights (a dead worker's trial is failed and retried once, never run
twice), and MLflow holds exactly one child run per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import alive

__all__ = ["soak", "SoakResult", "MODES", "check_cycle", "check_tune_cycle", "descendants", "alive", "wait_gone",
           "TUNE_STUDY", "tune_study"]

MODES = ("SIGKILL group", "SIGKILL parent", "SIGTERM parent", "SIGINT group")
#: How long the workers of a dead parent may take to go (their watchdog polls every 0.5 s).
ORPHAN_GRACE_S = 60.0
#: An invocation whose finished units (trials) stay the same this long is reported as hung: a failure bound, not a
#: pace (a smoke unit or trial takes seconds, minutes on a loaded machine); without it a hang never ends the soak.
HUNG_S = 900.0
#: The search the tuning soak kills: two outer folds × TUNE_TRIALS trials of the joint model's weights.
TUNE_TRIALS = 4
TUNE_STUDY = """include: {base}
title: A small loss-weight search (kill soak, tuning tests)
folds: 2
metrics: [dsc, auc]
reference: fixed
tune:
  arm: tuned
  weights: {{cls: [0.1, 10], cross: [0.1, 10]}}
  objective: [dsc, auc]
  trials: {trials}
  inner_folds: 2
  startup_trials: 1
  warmup_epochs: 1
arms:
  fixed: {{method: joint_model, label: fixed}}
  tuned: {{method: joint_model, label: tuned, weights: tuned}}
"""


def tune_study(trials: int) -> str:
    """:data:`TUNE_STUDY` with ``trials`` trials per outer fold, as a study file's text."""
    return TUNE_STUDY.format(base=Path(__file__).resolve().parent.parent / "studies" / "_base.yaml", trials=trials)


@dataclass
class SoakResult:
    kills: list[dict] = field(default_factory=list)
    cycles: list[dict] = field(default_factory=list)
    invocations: int = 0
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        keys = ("units", "lost", "duplicated", "mixed", "failed_left", "mlflow_missing", "mlflow_extra")
        totals = {k: sum(c.get(k, 0) for c in self.cycles) for k in keys}
        totals["orphans"] = sum(k["orphans"] for k in self.kills)
        totals["duplicated"] += sum(k["duplicated"] for k in self.kills)
        totals["kills"] = len(self.kills)
        return totals

    @property
    def ok(self) -> bool:
        t = self.totals
        return all(t[k] == 0 for k in ("lost", "duplicated", "mixed", "failed_left", "orphans", "mlflow_missing",
                                       "mlflow_extra"))


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc; Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _done_files(study_root: Path) -> dict[str, str]:
    return {str(p.parent.relative_to(study_root)): p.read_text()
            for p in study_root.glob("*/fold_*/seed_*/DONE.json")}


def _finished_trials(runs: Path, study: str) -> dict[str, str]:
    """``{"<study id>#<trial number>": state}`` of the search's finished trials (read-only, straight from sqlite)."""
    import sqlite3

    path = runs / study / "tune" / "optuna.db"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            rows = db.execute("SELECT study_id, number, state FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchall()
    except sqlite3.OperationalError:  # the schema is still being created
        return {}
    return {f"{sid}#{number}": state for sid, number, state in rows}


def _kill(proc: subprocess.Popen, mode: str) -> None:
    sig = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}[mode.split()[0]]
    try:
        if mode.endswith("group"):
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids: set[int], grace: float) -> set[int]:
    """The pids still alive after ``grace`` seconds (a failure bound, not a pace: returns as soon as all are gone)."""
    deadline = time.monotonic() + grace
    while True:
        living = {p for p in pids if alive(p)}
        if not living or time.monotonic() > deadline:
            return living
        time.sleep(0.1)


def check_cycle(study: str, runs: Path, tracking: bool = True) -> dict:
    """The invariants of a completed study's run directory (see the module docstring)."""
    import pandas as pd

    from bench.splits import read_splits
    from bench.store import DONE, FAILED, PER_CASE, SPEC, read_json, splits_file, unit_problem

    root = runs / study
    splits = read_splits(splits_file(runs, study))
    units = sorted(p for p in root.glob("*/fold_*/seed_*") if p.is_dir())
    mixed, lost, hashes = [], [], []
    for unit in units:
        if not (unit / DONE).exists():
            lost.append(str(unit))
            continue
        done, spec = read_json(unit / DONE), read_json(unit / SPEC)
        frame = pd.read_parquet(unit / PER_CASE)
        hashes.append(done["spec_hash"])
        expected = set(splits.test[spec["fold"]])
        problems = [unit_problem(unit),
                    None if set(frame["spec_hash"]) == {done["spec_hash"]} == {spec["spec_hash"]} else "spec hash",
                    None if set(frame["fold"]) == {spec["fold"]} else "fold",
                    None if set(frame["case_id"]) == expected else "cases",
                    None if len(frame) == len(expected) * len(spec["noise"]) else "rows"]
        if any(problems):
            mixed.append(f"{unit}: {[p for p in problems if p]}")
    failed_left = len(list(root.glob(f"*/fold_*/seed_*/{FAILED}")))
    result = {"runs": str(runs), "units": len(units), "lost": len(lost), "mixed": len(mixed), "failed_left": failed_left,
              "duplicated": 0, "mlflow_missing": 0, "mlflow_extra": 0, "details": lost + mixed}
    if tracking:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{(runs / 'mlflow.db').resolve()}")
        experiment = client.get_experiment_by_name(study)
        children = client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'unit'",
                                      max_results=50000)
        finished = Counter(r.data.tags["bench.spec_hash"] for r in children if r.info.status == "FINISHED")
        result["mlflow_missing"] = sum(1 for h in hashes if finished[h] == 0)
        result["mlflow_extra"] = len(children) - sum(1 for h in hashes if finished[h] >= 1)
    return result


def check_tune_cycle(study: str, runs: Path) -> dict:
    """The invariants of a completed search (see the module docstring)."""
    import optuna
    from mlflow.tracking import MlflowClient

    from bench.search import Search
    from bench.store import read_json
    from bench.tuning import SURPLUS, make_storage, open_fold_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune = runs / study / "tune"
    search = Search.from_json(read_json(tune / "search.json"))
    storage = make_storage(f"sqlite:///{tune / 'optuna.db'}")
    lost = duplicated = trials = 0
    keys = set()
    for fold in range(search.folds):
        ran = [t for t in open_fold_study(search, storage, fold).get_trials() if not t.user_attrs.get(SURPLUS)]
        finished = [t for t in ran if t.state.name in ("COMPLETE", "PRUNED")]
        weights = Counter(tuple(sorted(t.params.items())) for t in finished)
        lost += max(0, search.trials - len(finished))
        duplicated += max(0, len(finished) - search.trials) + sum(n - 1 for n in weights.values())
        trials += len(finished)
        keys |= {f"fold_{fold}#{t.number}" for t in ran if t.state.name in ("COMPLETE", "PRUNED", "FAIL")}
    client = MlflowClient(f"sqlite:///{(runs / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name(study)
    children = client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'trial'", max_results=50000)
    logged = Counter(r.data.tags["bench.trial_key"] for r in children if r.info.status in ("FINISHED", "FAILED"))
    unfinished = sum(1 for r in children if r.info.status not in ("FINISHED", "FAILED"))
    extra = sum(n - 1 for n in logged.values()) + len(set(logged) - keys) + unfinished
    return {"runs": str(runs), "units": trials, "lost": lost, "duplicated": duplicated, "mixed": 0, "failed_left": 0,
            "mlflow_missing": len(keys - set(logged)), "mlflow_extra": extra, "details": []}


class _Stall:
    """Fails a soak whose invocation has finished nothing new for :data:`HUNG_S` seconds (killing its process group),
    with the log to read, instead of waiting forever."""

    def __init__(self, progress, proc: subprocess.Popen, out: Path) -> None:
        self.progress, self.proc, self.out = progress, proc, out
        self.seen, self.since, self.last_look = len(progress()), time.monotonic(), 0.0

    def check(self) -> None:
        now = time.monotonic()
        if now - self.last_look < 5.0:  # reading the store is not free: look every few seconds
            return
        self.last_look = now
        done = len(self.progress())
        if done != self.seen:
            self.seen, self.since = done, now
        elif now - self.since > HUNG_S:
            _kill(self.proc, "SIGKILL group")
            raise RuntimeError(f"an invocation finished nothing for {HUNG_S:.0f} s ({done} finished): hung; "
                               f"see {self.out / 'bench.log'}")


def soak(*, kills: int, out: Path, study: str = "smoke", profile: str = "smoke", jobs: int = 2, seed: int = 0,
         max_delay: float = 2.0, tune: bool = False, log=print) -> SoakResult:
    """Kill ``bench run`` (``tune``: ``bench tune``) at least ``kills`` times (see the module docstring)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell: the runs would
        signal.signal(signal.SIGINT, signal.default_int_handler)  # inherit an ignored SIGINT and shrug off Ctrl-C
    rng = random.Random(seed)
    bench = str(Path(sys.executable).with_name("bench"))
    result, start, cycle = SoakResult(), time.perf_counter(), 0
    out.mkdir(parents=True, exist_ok=True)
    if tune:
        study_file = out / "soak_tune.yaml"
        study_file.write_text(tune_study(TUNE_TRIALS))
        study, command = "soak_tune", ["tune", "--study", str(study_file), "--grace-period", "2"]
    else:
        command = ["run", "--study", study]
    while len(result.kills) < kills:
        runs = out / f"cycle_{cycle}"
        root = runs / study
        seen: dict[str, str] = {}

        def progress(runs: Path = runs, root: Path = root) -> dict[str, str]:
            return _finished_trials(runs, study) if tune else (_done_files(root) if root.exists() else {})

        while True:
            used = Counter(k["mode"] for k in result.kills)  # the least used signal next: a kill that lands
            mode = min(MODES, key=lambda m: used[m])  # after the run's end does not count and is tried again
            target = rng.choice((1, 2))
            before = len(progress())
            with (out / "bench.log").open("a") as logfile:
                logfile.write(f"\n=== cycle {cycle}, invocation {result.invocations} ===\n")
                logfile.flush()
                proc = subprocess.Popen([bench, *command, "--profile", profile, "--jobs", str(jobs), "--runs-dir", str(runs)],
                                        stdout=logfile, stderr=logfile, start_new_session=True)
            result.invocations += 1
            # the state: `target` more finished units than at the start (or the study complete), then a random moment
            watch = _Stall(progress, proc, out)
            while proc.poll() is None and len(progress()) < before + target:
                watch.check()
                time.sleep(0.05)
            if len(result.kills) >= kills or proc.poll() is not None:
                while proc.poll() is None:
                    watch.check()
                    time.sleep(0.2)
                code = proc.wait()
                if code != 0:
                    raise RuntimeError(f"bench {command[0]} exited with status {code} without being killed; see {out / 'bench.log'}")
                break
            time.sleep(rng.uniform(0.0, max_delay))
            family = descendants(proc.pid)
            if proc.poll() is not None:  # finished during the delay: nothing to kill
                proc.wait()
                break
            _kill(proc, mode)
            code = proc.wait()
            if code == 0:  # the signal landed as the run was exiting after its last unit: not a kill
                break
            orphans = wait_gone(family, ORPHAN_GRACE_S)
            for pid in orphans:  # report them, then clean up so the next invocation is not disturbed
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            now = progress()
            duplicated = sum(1 for unit, text in seen.items() if now.get(unit) != text)
            seen.update(now)
            row = {"cycle": cycle, "mode": mode, "exit": code, "done": len(now), "workers": len(family),
                   "orphans": len(orphans), "duplicated": duplicated}
            result.kills.append(row)
            log(f"kill {len(result.kills):2d}: {mode:15s} exit {code:4d}, {len(now)} {'trial(s)' if tune else 'unit(s)'} "
                f"finished, {len(family)} child process(es), {len(orphans)} orphan(s), {duplicated} finished record(s) changed")
        final = progress()
        cycle_check = check_tune_cycle(study, runs) if tune else check_cycle(study, runs)
        cycle_check["duplicated"] += sum(1 for unit, text in seen.items() if final.get(unit) != text)
        result.cycles.append(cycle_check)
        log(f"cycle {cycle}: {cycle_check['units']} {'trials' if tune else 'units'}, lost {cycle_check['lost']}, duplicated "
            f"{cycle_check['duplicated']}, mixed {cycle_check['mixed']}, FAILED.json left {cycle_check['failed_left']}, "
            f"MLflow missing {cycle_check['mlflow_missing']}, extra {cycle_check['mlflow_extra']}")
        cycle += 1
    result.seconds = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="at least this many kills (default 10)")
    parser.add_argument("--tune", action="store_true", help="kill `bench tune` of a small search instead of `bench run`")
    parser.add_argument("--study", default="smoke")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--max-delay", type=float, default=2.0, help="largest random delay after the state, seconds")
    parser.add_argument("--out", type=Path, required=True, help="a new directory for the run directories and logs")
    args = parser.parse_args(argv)
    result = soak(kills=args.kills, out=args.out, study=args.study, profile=args.profile, jobs=args.jobs, seed=args.seed,
                  max_delay=args.max_delay, tune=args.tune)
    summary = {"totals": result.totals, "ok": result.ok, "invocations": result.invocations, "seconds": round(result.seconds, 1),
               "kills": result.kills, "cycles": result.cycles}
    (args.out / "soak.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({"totals": result.totals, "ok": result.ok, "seconds": round(result.seconds, 1)}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

