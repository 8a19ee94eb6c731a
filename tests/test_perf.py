"""`bench perf`: the efficiency benchmark measures what it names (values, not timings, are asserted)."""

import pandas as pd
from conftest import REPO

from bench.machine import cpu_model
from bench.perf import measure_arm
from bench.profiles import get_profile


def test_measure_arm_in_process():
    profile = get_profile("smoke").as_dict()
    row = measure_arm("unet3d", {}, {}, profile, steps=1, threads=1)
    assert row["params_M"] == _expected_params()
    assert row["gflops_per_volume"] > 0 and row["train_step_s"] > 0 and row["inference_s"] > 0
    assert row["size"] == 32 and row["batch"] == 2 and row["device"] == "cpu"


def _expected_params():
    import pytest

    from bench.registry import METHODS, load_plugins

    load_plugins()
    model = METHODS.get("unet3d").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)
    return pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)


def test_perf_cli_writes_the_efficiency_table(tmp_path, bench_cli):
    study = tmp_path / "one.yaml"
    study.write_text(f"include: {REPO / 'studies' / '_base.yaml'}\ntitle: One\narms:\n  u: {{method: unet3d, label: UNet}}\n")
    result = bench_cli("perf", "--study", study, "--profile", "smoke", "--steps", "1", "--out", tmp_path / "reports")
    assert result.code == 0, result
    table = pd.read_csv(tmp_path / "reports" / "one" / "efficiency_smoke.csv")
    assert list(table["arm"]) == ["u"] and table.loc[0, "params_M"] > 0
    text = (tmp_path / "reports" / "one" / "efficiency_smoke.md").read_text()
    assert "| UNet | 0.30 |" in text
    assert f"on cpu ({cpu_model()}), 1 thread(s)" in text  # the processor the timings belong to


def test_the_processor_named_is_the_cpu_model_on_cpu_and_the_gpu_name_on_cuda(monkeypatch):
    import torch

    from bench import machine

    monkeypatch.setattr(machine, "cpu_model", lambda: "Some CPU 9000")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU of {device}")
    assert machine.processor("cpu") == "Some CPU 9000"
    assert machine.processor("cuda:0") == "GPU of cuda:0"


def test_perf_cli_measures_named_methods(tmp_path, bench_cli):
    result = bench_cli("perf", "--method", "unet3d", "--method", "unet3d", "--profile", "smoke", "--steps", "1",
                       "--out", tmp_path)
    assert result.code == 0, result
    table = pd.read_csv(tmp_path / "methods" / "efficiency_smoke.csv")
    assert list(table["arm"]) == ["unet3d"] and table.loc[0, "params_M"] == _expected_params()


def test_perf_cli_wants_a_study_or_methods(bench_cli):
    for args in ((), ("--study", "smoke", "--method", "unet3d")):
        result = bench_cli("perf", *args)
        assert result.code == 2 and "give either --study NAME or --method NAME" in result.err
    result = bench_cli("perf", "--method", "unet3dd")
    assert result.code == 2 and "unknown method 'unet3dd' (did you mean 'unet3d'?)" in result.err
