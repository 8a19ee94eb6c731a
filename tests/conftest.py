"""Shared fixtures: an isolated cache, tiny NIfTI datasets, and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """SIGINT is restored when the suite was started with it ignored. Under pytest-xdist (`-n N`), each worker
    may use its share of the cores, so that N workers, each training with `cores / N` torch threads, never
    oversubscribe the machine (measured up to 13x slower when they do)."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # a suite started in the background by a shell: the
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C tests' processes must not inherit SIG_IGN
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "BENCH_CORES" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["BENCH_CORES"] = str(max(1, cores // int(workers)))
        import torch

        torch.set_num_threads(int(os.environ["BENCH_CORES"]))


SMOKE_GROUP = {"smoke_runs", "slurm"}  # the fixtures of the "smoke_runs" group


def _xdist_groups(item) -> set[str]:
    """The session's smoke runs (with the SLURM tests, which compare with them and share one cluster), and each
    module whose tests share a module-scoped fixture (a generated cohort, the joint-model studies' runs)."""
    groups = {"smoke_runs"} if SMOKE_GROUP & set(getattr(item, "fixturenames", ())) else set()
    fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(defs and defs[-1].scope == "module" for defs in fixtures.values()):
        groups.add(item.module.__name__)
    return groups


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups (`--dist loadgroup`)
def pytest_collection_modifyitems(config, items):
    """Tests that share an expensive fixture form one xdist group, so that one worker builds it once
    (:func:`_xdist_groups`). pytest-xdist 3.8 writes the group into ``item._nodeid``; from pytest 9 the node id
    lives in ``item._id``, so :func:`pytest_collection_finish` carries it over (else the scheduler never sees a
    group and each worker builds the fixture again)."""
    for item in items:
        for group in sorted(_xdist_groups(item)):
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends the collected ids to the scheduler
def pytest_collection_finish(session):
    for item in session.items:
        grouped = getattr(item, "_nodeid", None)
        if isinstance(grouped, str) and "@" in grouped and "@" not in item.nodeid and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test uses its own cache for generated cohorts and preprocessed volumes."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(cache)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield cache
    if old is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = old


@pytest.fixture(autouse=True)
def repo_cwd(monkeypatch):
    """Run from the repository root so `studies/` is found, as a user would."""
    monkeypatch.chdir(REPO)


def save_nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return path


def brain_volume(shape=(20, 22, 18), lesion=True, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A padded blob 'brain' with one cubic lesion."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    image[3:-3, 3:-3, 3:-3] = 1.0 + 0.05 * rng.standard_normal((shape[0] - 6, shape[1] - 6, shape[2] - 6))
    mask = np.zeros(shape, np.uint8)
    if lesion:
        mask[8:12, 9:13, 7:11] = 1
        image[mask == 1] = 1.6
    return image, mask


def write_dataset(root: Path, n_per_class: int = 4) -> Path:
    """A manifest dataset of 2·n_per_class scans (one per patient) with real NIfTI files."""
    rows = ["scan_id,patient_id,timepoint,label,site,image_path,mask_path"]
    for i in range(2 * n_per_class):
        label = "MS" if i < n_per_class else "NMOSD"
        image, mask = brain_volume(seed=i)
        save_nifti(root / f"img_{i}.nii.gz", image)
        save_nifti(root / f"mask_{i}.nii.gz", mask)
        rows.append(f"s{i},p{i},0,{label},A,img_{i}.nii.gz,mask_{i}.nii.gz")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "data").parent


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-1500:]!r})"


@pytest.fixture
def bench_cli(capsys, monkeypatch):
    """Run `bench ARGS...` in-process through the real entry point (exit code, stdout, stderr)."""
    def run(*args: str) -> CliResult:
        code = _bench_status(args)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _bench_status(args) -> int:
    """``bench ARGS...`` through :func:`bench.cli.main` in this process, ``sys.argv`` restored after; its exit status."""
    from bench.cli import main

    argv, sys.argv = sys.argv, ["bench", *map(str, args)]
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return 0


def bench_in_process(*args) -> None:
    """``bench ARGS...`` through the real entry point (:func:`bench.cli.main`) in this test process, from the
    repository root; fails the test on a non-zero exit status (the command's output is in the test's captured
    output). The study tests use it instead of a ``bench`` subprocess: this process has already imported torch,
    MLflow and the report's libraries, and the fork server its first ``--jobs`` run starts (bench.procs) stays
    up and serves every later run preloaded, where each subprocess paid for both again: about 15 s of CPU per
    run. The console script itself is exercised end to end by :func:`smoke_runs`, the soaks and the SLURM tests."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        code = _bench_status(args)
    finally:
        os.chdir(cwd)
    assert code == 0, f"`bench {' '.join(map(str, args))}` exited with status {code} (output above)"


STUDY_TEST_FOLDS = 2  # the study tests' folds: layout and files do not depend on the number (shipped: 5)


def modules_loaded_by(code: str, package: str) -> list[str]:
    """The modules of ``package`` that a fresh interpreter has loaded after running ``code`` (import-cost guards)."""
    import ast
    import subprocess

    probe = f"{code}\nimport sys; print(sorted(m for m in sys.modules if m.split('.')[0] == {package!r}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def study_with_folds(directory: Path, study: str, folds: int = STUDY_TEST_FOLDS) -> Path:
    """A shipped study with every field kept but the number of folds: the study tests check each table's arms,
    columns and files, which do not depend on how many folds fill them, at 2/5 of the training."""
    path = directory / "studies" / f"{study}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"include: {REPO / 'studies' / (study + '.yaml')}\nfolds: {folds}\n")
    return path


def held_env(point: str, marker: Path) -> dict[str, str]:
    """The environment that makes a `bench` process block at ``point`` (bench.testhooks) and say so in ``marker``."""
    from bench.testhooks import HOLD_ENV, MARKER_ENV

    return {**os.environ, HOLD_ENV: point, MARKER_ENV: str(marker)}


def wait_for(condition, *procs) -> None:
    """Until ``condition()`` holds — a state, never a time; fails if any of the processes (``subprocess.Popen`` or
    ``multiprocessing.Process``) ends first."""
    import time

    while not condition():
        for proc in procs:
            running = proc.poll() is None if hasattr(proc, "poll") else proc.is_alive()
            assert running, "the process ended before reaching the state the test waits for"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """`bench run --study smoke --profile smoke --jobs 2` once per session (9 units), through the installed
    console script; tests that change the runs copy them first."""
    import subprocess
    import time

    runs = tmp_path_factory.mktemp("runs")
    start = time.perf_counter()
    bench = str(Path(sys.executable).with_name("bench"))
    proc = subprocess.run([bench, "run", "--study", "smoke", "--profile", "smoke", "--jobs", "2", "--runs-dir", str(runs)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs, proc, time.perf_counter() - start


CLUSTER_SCRIPTS = REPO / "tests" / "cluster"


def require_cluster_tool(name: str, present: bool) -> None:
    """Skip a test whose real engine (SLURM, PostgreSQL) is not installed, naming how to get it; under CI
    (`make test` installs the packages as root) a missing engine fails the test instead."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; `make test` installs it under CI as root (make cluster)")
    pytest.skip(f"{name} is not installed (as root: INSTALL_CLUSTER=1 make cluster)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server (tests/cluster/start-pg.sh) with databases `optuna` and `mlflow` (MLflow's
    migrations clash with Optuna's tables in one database): their SQLAlchemy URLs. Stopped by its PID file."""
    import subprocess

    initdb = list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    require_cluster_tool("PostgreSQL", bool(initdb) and os.geteuid() == 0)
    root = tmp_path_factory.mktemp("postgres")
    env = {**os.environ, "PG_ROOT": str(root), "PG_PORT": str(free_port()), "PG_DBS": "optuna mlflow"}
    started = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "start-pg.sh")], env=env, capture_output=True, text=True,
                             timeout=600)
    assert started.returncode == 0, started.stderr[-3000:]
    urls = dict(zip(("optuna", "mlflow"), started.stdout.split()))
    yield urls
    subprocess.run(["bash", str(CLUSTER_SCRIPTS / "stop-pg.sh")], env=env, capture_output=True, timeout=600)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real one-node SLURM cluster with accounting (tests/cluster/start-slurm.sh: munged, MariaDB, slurmdbd,
    slurmctld, slurmd on free ports): the environment (``SLURM_CONF``) for commands that use it. Every daemon
    is stopped by its PID file at the end."""
    import shutil
    import subprocess

    require_cluster_tool("SLURM", all(shutil.which(tool) or Path("/usr/sbin", tool).exists()
                                      for tool in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd"))
                         and os.geteuid() == 0)
    root = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_ROOT": str(root), "SLURM_CTLD_PORT": str(free_port()),
           "SLURM_SLURMD_PORT": str(free_port()), "SLURM_DBD_PORT": str(free_port()), "SLURM_MYSQL_PORT": str(free_port())}
    started = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "start-slurm.sh")], env=env, capture_output=True, text=True,
                             timeout=600)
    env["SLURM_CONF"] = str(root / "etc" / "slurm.conf")
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-3000:]
        yield env
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPTS / "stop-slurm.sh")], env=env, capture_output=True, timeout=600)
