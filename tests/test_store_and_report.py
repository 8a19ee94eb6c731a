"""Results-store status transitions, stale archiving, table ranking and output formats."""

import math

import pandas as pd
import pytest

from bench.report.tables import rank_marks, summary_table, to_latex, to_markdown
from bench.store import (
    DONE,
    PER_CASE,
    SPEC,
    archive_stale,
    corrupt_units,
    done_units,
    file_digests,
    unit_problem,
    unit_status,
    write_json_atomic,
)


def _finished_unit(unit, spec_hash="h1", digests=True):
    unit.mkdir(parents=True, exist_ok=True)
    write_json_atomic(unit / SPEC, {"spec_hash": spec_hash, "arm": "arm"})
    pd.DataFrame({"case_id": ["a", "b"], "dsc": [0.5, 0.25]}).to_parquet(unit / PER_CASE, index=False)
    write_json_atomic(unit / DONE, {"spec_hash": spec_hash, **({"files": file_digests(unit)} if digests else {})})
    return unit


def test_unit_status_transitions(tmp_path):
    unit = tmp_path / "study" / "arm" / "fold_0" / "seed_0"
    assert unit_status(unit, "h1") == "missing"
    unit.mkdir(parents=True)
    (unit / "history.csv").write_text("epoch\n1\n")
    assert unit_status(unit, "h1") == "partial"
    _finished_unit(unit)
    assert unit_status(unit, "h1") == "done"
    assert unit_status(unit, "h2") == "stale"
    moved = archive_stale(unit, tmp_path / "study")
    assert not unit.exists() and (moved / DONE).exists() and ".stale" in moved.parts


@pytest.mark.parametrize("digests", [True, False], ids=["with digests", "before digests were recorded"])
@pytest.mark.parametrize("damage, names", [
    (lambda u: (u / PER_CASE).write_bytes((u / PER_CASE).read_bytes()[:40]), PER_CASE),  # truncated
    (lambda u: (u / SPEC).write_text('{"spec_hash": "h1", "arm": '), SPEC),  # half a JSON
    (lambda u: (u / SPEC).write_text('{"spec_hash": "other"}'), "spec_hash 'other'"),  # another unit's spec
    (lambda u: (u / PER_CASE).unlink(), PER_CASE),
])
def test_a_damaged_finished_unit_is_corrupt_and_named(tmp_path, damage, names, digests):
    study = tmp_path / "study"
    good = _finished_unit(study / "arm" / "fold_0" / "seed_0", digests=digests)
    bad = _finished_unit(study / "arm" / "fold_1" / "seed_0", digests=digests)
    assert unit_problem(bad) is None and unit_status(bad, "h1") == "done"
    damage(bad)
    assert unit_status(bad, "h1") == "corrupt" and unit_status(good, "h1") == "done"
    assert names in unit_problem(bad) and str(bad) in unit_problem(bad)
    assert done_units(study) == [good]
    assert [d for d, _ in corrupt_units(study)] == [bad]
    moved = archive_stale(bad, study, folder=".corrupt")
    assert ".corrupt" in moved.parts and (moved / DONE).exists() and not bad.exists()


def test_one_changed_byte_is_caught_by_the_digest(tmp_path):
    unit = _finished_unit(tmp_path / "s" / "a" / "fold_0" / "seed_0")
    data = bytearray((unit / PER_CASE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (unit / PER_CASE).write_bytes(bytes(data))
    assert "SHA-256" in unit_problem(unit)


def test_an_interrupted_atomic_write_leaves_neither_file(tmp_path, monkeypatch):
    import errno
    import json

    target = tmp_path / DONE
    write_json_atomic(target, {"old": 1})

    def full_disk(data, fh, **kwargs):
        fh.write('{"spec_hash": "h')  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(target, {"new": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == [DONE]  # no temporary file left behind


@pytest.mark.parametrize(
    "values, direction, expected",
    [
        ([0.7, 0.9, 0.8], "max", ["", "best", "second"]),
        ([0.7, 0.9, 0.8], "min", ["best", "", "second"]),
        ([0.5, math.nan, 0.5], "max", ["best", "", "best"]),
        ([math.nan], "max", [""]),
    ],
)
def test_rank_marks(values, direction, expected):
    assert rank_marks(values, direction) == expected


def _folds():
    rows = []
    for arm, dsc, vd in (("a", (0.6, 0.8), (0.2, 0.4)), ("b", (0.7, 0.7), (0.1, 0.1))):
        for fold in range(2):
            rows.append({"arm": arm, "fold": fold, "seed": 0, "sigma": 0.0, "dsc": dsc[fold], "vd": vd[fold], "n_imputed": 1})
    return pd.DataFrame(rows)


def test_summary_table_mean_std():
    folds = _folds()
    pooled = folds.groupby(["arm", "sigma"], as_index=False)[["dsc", "vd"]].mean()
    table = summary_table(folds, pooled, ["a", "b"], ["dsc", "vd"])
    assert table.loc[0, "dsc_mean"] == pytest.approx(0.7) and table.loc[0, "dsc_std"] == pytest.approx(0.1414213)
    assert table.loc[1, "dsc_std"] == pytest.approx(0.0) and table.loc[0, "n_imputed"] == 2


def test_summary_table_averages_a_folds_seeds_before_the_spread_over_folds():
    folds = _folds()
    # arm a, seed 1: fold 0 DSC 0.8 (seed mean 0.7), fold 1 DSC 0.6 (seed mean 0.7) -> mean 0.7, std 0 over folds;
    # over the four fold x seed rows the std would be 0.1155
    seed1 = folds[folds["arm"] == "a"].assign(seed=1, dsc=[0.8, 0.6])
    both = pd.concat([folds, seed1], ignore_index=True)
    pooled = both.groupby(["arm", "sigma"], as_index=False)[["dsc", "vd"]].mean()
    table = summary_table(both, pooled, ["a", "b"], ["dsc", "vd"])
    assert table.loc[0, "dsc_mean"] == pytest.approx(0.7) and table.loc[0, "dsc_std"] == pytest.approx(0.0)
    assert table.loc[0, "vd_std"] == pytest.approx(0.1414213)  # seeds alike: the folds' own spread
    assert table.loc[0, ["n_folds", "n_seeds", "n_imputed"]].tolist() == [2, 2, 4]
    assert table.loc[1, ["n_folds", "n_seeds"]].tolist() == [2, 1]
    # folds of repeated cross-validation are different partitions: each counts
    repeated = folds.assign(repeat=0)
    again = repeated.assign(repeat=1)
    table = summary_table(pd.concat([repeated, again], ignore_index=True), pooled, ["a"], ["dsc"])
    assert table.loc[0, "n_folds"] == 4 and table.loc[0, "dsc_std"] == pytest.approx(0.1154701)


def test_noise_curve_averages_a_folds_seeds_before_the_spread_over_folds():
    from bench.report.figures import noise_curve

    # arm a: fold 0 seeds 0.6/0.8 (mean 0.7), fold 1 seeds 0.7/0.7 (0.7) at sigma 0; at sigma 0.1 the folds'
    # seed means are 0.5 and 0.3. Over fold x seed rows sigma 0's std would be 0.0816, not 0.
    rows = [("a", 0.0, 0, 0, 0.6), ("a", 0.0, 0, 1, 0.8), ("a", 0.0, 1, 0, 0.7), ("a", 0.0, 1, 1, 0.7),
            ("a", 0.1, 0, 0, 0.4), ("a", 0.1, 0, 1, 0.6), ("a", 0.1, 1, 0, 0.3), ("a", 0.1, 1, 1, 0.3),
            ("b", 0.0, 0, 0, float("nan"))]
    folds = pd.DataFrame(rows, columns=["arm", "sigma", "fold", "seed", "dsc"])
    mean, std = noise_curve(folds, "a", "dsc")
    assert mean.to_dict() == pytest.approx({0.0: 0.7, 0.1: 0.4})
    assert std.to_dict() == pytest.approx({0.0: 0.0, 0.1: 0.1414213})
    assert noise_curve(folds, "b", "dsc")[0].empty and noise_curve(folds, "a", "auc")[0].empty


def test_learning_curves_and_learnability_average_a_folds_seeds_first():
    from bench.report.learning import _curves, learnability_table

    # fold 0: seeds' losses 0.5 / 0.7 (mean 0.6); fold 1: 0.8 / 0.8 -> band std 0.1414 over folds, not 0.1258
    history = pd.DataFrame({"arm": "a", "epoch": 1, "fold": [0, 0, 1, 1], "seed": [0, 1, 0, 1],
                            "loss": [0.5, 0.7, 0.8, 0.8]})
    curves, columns = _curves(history, ["a"], {"a": "A"})
    assert columns == ["loss"]
    assert curves.loc[0, "loss_mean"] == pytest.approx(0.7) and curves.loc[0, "loss_std"] == pytest.approx(0.1414213)
    folds = history.rename(columns={"loss": "auc"}).assign(sigma=0.0)
    _, frame = learnability_table(folds, ["a"], {"a": "A"}, {"auc": 0.85})
    assert frame.loc[0, "auc_mean"] == pytest.approx(0.7) and frame.loc[0, "auc_std"] == pytest.approx(0.1414213)


def test_bold_and_underline_follow_metric_direction():
    folds = _folds()
    pooled = folds.groupby(["arm", "sigma"], as_index=False)[["dsc", "vd"]].mean()
    table = summary_table(folds, pooled, ["a", "b"], ["dsc", "vd"])
    md = to_markdown(table, ["A", "B"], ["dsc", "vd"])
    # DSC tie at 70.00 → both bold; VD lower is better → B (10.00) bold, A (30.00) underlined
    assert "| A | **70.00 ± 14.14** | <u>30.00 ± 14.14</u> |" in md
    assert "| B | **70.00 ± 0.00** | **10.00 ± 0.00** |" in md
    tex = to_latex(table, ["A", "B"], ["dsc", "vd"], "Cap 5%")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"DSC (\%)" in tex and r"Cap 5\%" in tex
    assert r"A & \textbf{70.00 $\pm$ 14.14} & \underline{30.00 $\pm$ 14.14} \\" in tex


def test_code_version_is_dirty_for_changed_code_but_not_for_written_reports_or_docs(tmp_path):
    """A run after another study's `bench report` (which rewrites tracked files under reports/) must still carry
    the clean commit; a change to code or a study file must not."""
    import subprocess

    from bench import __version__
    from bench.spec import describe_checkout

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    files = {"bench/x.py": "a = 1\n", "studies/s.yaml": "arms: {}\n", "reports/s/table.md": "| a |\n",
             "docs/results.md": "# r\n", "README.md": "# readme\n", "bench/notes.md": "n\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "c")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    clean = f"{__version__}+{sha}"
    assert describe_checkout(tmp_path) == clean
    for name in ("reports/s/table.md", "docs/results.md", "README.md", "bench/notes.md"):
        (tmp_path / name).write_text("rewritten\n")
    (tmp_path / "reports/new.png").write_bytes(b"\x89PNG")  # untracked output
    assert describe_checkout(tmp_path) == clean
    for name in ("bench/x.py", "studies/s.yaml"):
        git("checkout", "-q", "--", ".")  # back to clean, then change one file that decides results
        (tmp_path / name).write_text("changed\n")
        assert describe_checkout(tmp_path) == clean + "-dirty", name


def test_cpu_model_reads_proc_cpuinfo_and_falls_back_without_it(tmp_path):
    from bench.machine import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  9R14 96-Core Processor\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC  9R14 96-Core Processor\n")
    assert cpu_model(info) == "AMD EPYC 9R14 96-Core Processor"
    missing = cpu_model(tmp_path / "absent")
    assert missing and "EPYC" not in missing  # platform's processor or machine name, never empty


def test_provenance_names_each_training_machine_with_its_units():
    from bench.report import _hardware_text

    assert _hardware_text({"AMD EPYC (x86_64), cpu, 1 thread": 35}) == "AMD EPYC (x86_64), cpu, 1 thread"
    assert _hardware_text({"B, cuda": 1, "A, cpu": 4}) == "A, cpu (4 units); B, cuda (1 unit)"
