"""Study files: YAML → frozen, validated dataclasses.

A study is one YAML file in ``studies/``; ``_base*.yaml`` files hold what studies share and are
pulled in with ``include:`` (mappings merge deeply, the including file wins; ``arms`` never merge).
Arms differ only by method, ``model_args`` and loss ``weights``; ``weights: tuned`` makes an arm train,
in each outer fold, with the best weights the study's ``tune:`` search found on that fold's training
set (``bench tune``, :mod:`bench.tuning`). Every mistake is reported with the file, the key path, what
was expected and the close matches.

Example:
    >>> study = load_study("smoke")            # doctest: +SKIP
    >>> [arm.method for arm in study.arms]     # doctest: +SKIP
    ['unet3d', 'resnet34']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError, did_you_mean
from bench.metrics import METRICS
from bench.noise import DEFAULT_NOISE_UNITS, NOISE_UNITS
from bench.profiles import PROFILES
from bench.study_types import (  # the dataclasses, importable by the loop without this YAML reader
    ARM_KEYS,
    DATASET_KEYS,
    PRUNERS,
    STUDY_KEYS,
    TUNE_KEYS,
    TUNED,
    Arm,
    DatasetSpec,
    Study,
    Training,
    TuneSpec,
)

__all__ = ["Arm", "DatasetSpec", "Training", "TuneSpec", "Study", "load_study", "study_paths", "studies_dir", "read_yaml",
           "PRUNERS", "TUNED"]


def studies_dir() -> Path:
    """``studies/`` of the current directory when present, else the one next to the installed package."""
    local = Path.cwd() / "studies"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "studies"


def study_paths(directory: Path | None = None) -> dict[str, Path]:
    """Study name → file, skipping ``_base*`` files."""
    directory = directory or studies_dir()
    return {p.stem: p for p in sorted(directory.glob("*.yaml")) if not p.stem.startswith("_")}


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if key != "arms" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        chain = " → ".join(str(p.name) for p in (*seen, path))
        raise ConfigError(f"{path}: include cycle: {chain}")
    data = read_yaml(path)
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise ConfigError(f"{path}: include: expected a file name, got {include!r}")
    base_path = (path.parent / include).resolve()
    if not base_path.exists():
        raise ConfigError(f"{path}: include: file '{include}' not found next to it")
    return _merge(_resolve_includes(base_path, (*seen, path)), data)


class _Reader:
    """Typed access to a YAML mapping with errors naming the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def check_keys(self, data: Mapping[str, Any], allowed, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise self.fail(prefix.rstrip(".") or "(top)", f"expected a mapping, got {data!r}")
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}",
                    f"unknown key{did_you_mean(str(key), allowed)}; expected one of {', '.join(sorted(allowed))}",
                )

    def typed(self, key: str, value: Any, kind: type, *, minimum: float | None = None) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"expected a value >= {minimum}, got {value!r}")
        return value

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return dict(value)


def _training(r: _Reader, data: Any) -> Training:
    data = r.mapping("training", data)
    allowed = Training.__dataclass_fields__
    r.check_keys(data, allowed, "training.")
    values = {}
    for key, value in data.items():
        kind = type(getattr(Training, key))
        values[key] = r.typed(f"training.{key}", value, kind, minimum=0 if kind in (int, float) else None)
    training = Training(**values)
    if training.optimizer not in ("adam", "adamw", "sgd"):
        raise r.fail("training.optimizer", f"expected one of adam, adamw, sgd, got '{training.optimizer}'")
    for key in ("flip_prob", "rotate_prob", "plateau_factor"):
        if not 0 <= getattr(training, key) <= 1:
            raise r.fail(f"training.{key}", f"expected a value in [0, 1], got {getattr(training, key)}")
    if training.validate == 1:
        raise r.fail("training.validate", "expected 0 (no validation split) or a number of inner folds k >= 2 "
                                          "(one of them, 1/k of the training fold's patients, is the validation split)")
    return training


def _arms(r: _Reader, data: Any, methods) -> tuple[Arm, ...]:
    if not isinstance(data, Mapping) or not data:
        raise r.fail("arms", "expected a non-empty mapping of arm name → {method, model_args, weights, label}")
    arms = []
    for name, spec in data.items():
        if isinstance(spec, str):
            spec = {"method": spec}
        prefix = f"arms.{name}."
        r.check_keys(spec if isinstance(spec, Mapping) else {}, ARM_KEYS, prefix)
        if not isinstance(spec, Mapping) or "method" not in spec:
            raise r.fail(f"arms.{name}", "expected a mapping with a 'method' key")
        method = spec["method"]
        if methods is not None and method not in methods:
            raise r.fail(
                f"{prefix}method",
                f"unknown method '{method}'{did_you_mean(method, methods)}; available: {', '.join(methods.names())}",
            )
        tuned = spec.get("weights") == TUNED
        if isinstance(spec.get("weights"), str) and not tuned:
            raise r.fail(f"{prefix}weights", f"expected a mapping of loss weights or '{TUNED}', got {spec['weights']!r}"
                         f"{did_you_mean(spec['weights'], (TUNED,))}")
        weights = {} if tuned else r.mapping(f"{prefix}weights", spec.get("weights"))
        for key, value in weights.items():
            r.typed(f"{prefix}weights.{key}", value, float, minimum=0)
        if methods is not None and weights:
            try:
                methods.get(method).make_loss(weights)
            except ConfigError as exc:
                raise r.fail(f"{prefix}weights", str(exc)) from None
        arms.append(
            Arm(
                name=str(name),
                method=method,
                label=str(spec.get("label", name)),
                model_args=r.mapping(f"{prefix}model_args", spec.get("model_args")),
                weights={k: float(v) for k, v in weights.items()},
                tuned=tuned,
                seed_offset=r.typed(f"{prefix}seed_offset", spec.get("seed_offset", 0), int, minimum=0),
            )
        )
    return tuple(arms)


def _float_list(r: _Reader, key: str, value: Any, *, minimum: float) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise r.fail(key, f"expected a non-empty list of numbers, got {value!r}")
    return tuple(float(r.typed(f"{key}[{i}]", v, float, minimum=minimum)) for i, v in enumerate(value))


def _tune(r: _Reader, data: Any, arms: tuple[Arm, ...], methods) -> TuneSpec | None:
    tuned = [a.name for a in arms if a.tuned]
    if data is None:
        if tuned:
            raise r.fail(f"arms.{tuned[0]}.weights", "'tuned' needs a `tune:` section naming this arm (see `bench tune --help`)")
        return None
    data = r.mapping("tune", data)
    r.check_keys(data, TUNE_KEYS, "tune.")
    names = [a.name for a in arms]
    arm_name = str(data.get("arm", tuned[0] if len(tuned) == 1 else ""))
    if arm_name not in names:
        raise r.fail("tune.arm", f"expected the name of the arm to tune{did_you_mean(arm_name, names)}; arms: {', '.join(names)}")
    arm = next(a for a in arms if a.name == arm_name)
    if not arm.tuned:
        raise r.fail(f"arms.{arm_name}.weights", "the tuned arm must say `weights: tuned` (it trains with the search's best weights)")
    if tuned != [arm_name]:
        raise r.fail("tune.arm", f"one search per study: only arm '{arm_name}' can say `weights: tuned`, not {tuned}")
    method = methods.get(arm.method) if methods is not None else None
    space = data.get("weights")
    if space is None:
        if method is None:
            space = {}
        elif not method.search_space:
            raise r.fail("tune.weights", f"method '{arm.method}' registers no search space; name the weights and their ranges")
        else:
            space = {k: list(v) for k, v in method.search_space.items()}
    space = r.mapping("tune.weights", space)
    if not space and method is not None:
        raise r.fail("tune.weights", "expected at least one weight to search")
    log = r.typed("tune.log", data.get("log", True), bool)
    weights: dict[str, tuple[float, float]] = {}
    for key, bounds in space.items():
        if method is not None and key not in method.weights:
            raise r.fail(f"tune.weights.{key}", f"method '{arm.method}' has no loss weight '{key}'"
                         f"{did_you_mean(str(key), method.weights)}; its weights are {sorted(method.weights)}")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise r.fail(f"tune.weights.{key}", f"expected [low, high], got {bounds!r}")
        low, high = (r.typed(f"tune.weights.{key}[{i}]", v, float, minimum=0.0) for i, v in enumerate(bounds))
        if not low < high or (log and low <= 0):
            raise r.fail(f"tune.weights.{key}", f"expected 0 {'<' if log else '<='} low < high, got [{low}, {high}]")
        weights[str(key)] = (float(low), float(high))
    objective = data.get("objective", ["dsc", "auc"])
    if isinstance(objective, str):
        objective = [objective]
    if not isinstance(objective, list) or not objective:
        raise r.fail("tune.objective", f"expected a non-empty list of metrics, got {objective!r}")
    for i, m in enumerate(objective):
        if m not in METRICS:
            raise r.fail(f"tune.objective[{i}]",
                         f"unknown metric '{m}'{did_you_mean(str(m), METRICS)}; expected one of {', '.join(METRICS)}")
    if len({METRICS[m].direction for m in objective}) > 1:
        raise r.fail("tune.objective", f"the metrics {objective} mix higher- and lower-is-better; their mean means nothing")
    if method is not None:
        kind = method.task_kind(arm.model_args)
        wrong = [m for m in objective if kind != "joint" and METRICS[m].task != kind]
        if wrong:
            raise r.fail("tune.objective", f"arm '{arm_name}' ({arm.method}) is a {kind} method; it has no {', '.join(wrong)}")
    pruner = str(data.get("pruner", "median"))
    if pruner not in PRUNERS:
        raise r.fail("tune.pruner", f"expected one of {', '.join(PRUNERS)}, got '{pruner}'{did_you_mean(pruner, PRUNERS)}")
    return TuneSpec(
        arm=arm_name, weights=weights, log=log, objective=tuple(str(m) for m in objective), pruner=pruner,
        trials=r.typed("tune.trials", data.get("trials", 20), int, minimum=1),
        inner_folds=r.typed("tune.inner_folds", data.get("inner_folds", 3), int, minimum=2),
        sampler_seed=r.typed("tune.sampler_seed", data.get("sampler_seed", 0), int, minimum=0),
        startup_trials=r.typed("tune.startup_trials", data.get("startup_trials", 5), int, minimum=0),
        warmup_epochs=r.typed("tune.warmup_epochs", data.get("warmup_epochs", 1), int, minimum=0),
        enqueue_defaults=r.typed("tune.enqueue_defaults", data.get("enqueue_defaults", True), bool),
    )


def parse_study(path: Path, data: dict[str, Any], methods=None) -> Study:
    """Validate a merged study mapping. ``methods`` (a registry) enables the method-name checks."""
    r = _Reader(path)
    r.check_keys(data, STUDY_KEYS)
    for key in ("title", "arms"):
        if key not in data:
            raise r.fail(key, f"missing; a study needs {STUDY_KEYS[key]}")
    dataset = r.mapping("dataset", data.get("dataset"))
    r.check_keys(dataset, DATASET_KEYS, "dataset.")
    profile = str(data.get("profile", "cpu"))
    if profile not in PROFILES:
        raise r.fail("profile", f"unknown profile '{profile}'{did_you_mean(profile, PROFILES)}; expected one of {', '.join(PROFILES)}")
    metrics = data.get("metrics", ["dsc", "ppv", "tpr", "vd", "acc", "sn", "sp", "auc"])
    if not isinstance(metrics, list) or not metrics:
        raise r.fail("metrics", f"expected a non-empty list, got {metrics!r}")
    for i, m in enumerate(metrics):
        if m not in METRICS:
            raise r.fail(f"metrics[{i}]", f"unknown metric '{m}'{did_you_mean(str(m), METRICS)}; expected one of {', '.join(METRICS)}")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise r.fail("seeds", f"expected a non-empty list of integers, got {seeds!r}")
    seeds = tuple(r.typed(f"seeds[{i}]", s, int, minimum=0) for i, s in enumerate(seeds))
    if len(set(seeds)) != len(seeds):
        raise r.fail("seeds", f"seeds repeat: {list(seeds)}")
    noise = _float_list(r, "noise", data.get("noise", [0.0]), minimum=0.0)
    if 0.0 not in noise:
        raise r.fail("noise", f"the grid must contain 0.0 (the clean evaluation), got {list(noise)}")
    noise_units = str(data.get("noise_units", DEFAULT_NOISE_UNITS))
    if noise_units not in NOISE_UNITS:
        raise r.fail("noise_units", f"expected one of {', '.join(NOISE_UNITS)}, got '{noise_units}'"
                     f"{did_you_mean(noise_units, NOISE_UNITS)}")
    arms = _arms(r, data["arms"], methods)
    names = [a.name for a in arms]
    reference = str(data.get("reference", names[-1]))
    if reference not in names:
        raise r.fail("reference", f"no arm named '{reference}'{did_you_mean(reference, names)}; arms: {', '.join(names)}")
    correction = str(data.get("correction", "holm"))
    if correction not in ("holm", "fdr_bh"):
        raise r.fail("correction", f"expected holm or fdr_bh, got '{correction}'{did_you_mean(correction, ('holm', 'fdr_bh'))}")
    alpha = r.typed("alpha", data.get("alpha", 0.05), float, minimum=0.0)
    analysis_unit = str(data.get("analysis_unit", "patient"))
    if analysis_unit not in ("patient", "scan"):
        raise r.fail("analysis_unit", f"expected patient or scan, got '{analysis_unit}'"
                     f"{did_you_mean(analysis_unit, ('patient', 'scan'))}")
    if not 0 < alpha < 1:
        raise r.fail("alpha", f"expected a value in (0, 1), got {alpha}")
    criteria = r.mapping("pass_criteria", data.get("pass_criteria"))
    for m, value in criteria.items():
        if m not in METRICS:
            raise r.fail(f"pass_criteria.{m}", f"unknown metric '{m}'{did_you_mean(str(m), METRICS)}; expected one of {', '.join(METRICS)}")
        criteria[m] = r.typed(f"pass_criteria.{m}", value, float)
    study = Study(
        name=path.stem,
        path=path,
        title=str(data["title"]),
        reproduces=str(data.get("reproduces", "")),
        description=str(data.get("description", "")),
        dataset=DatasetSpec(name=str(dataset.get("name", "synthetic")), options=r.mapping("dataset.options", dataset.get("options"))),
        folds=r.typed("folds", data.get("folds", 5), int, minimum=2),
        repeats=r.typed("repeats", data.get("repeats", 1), int, minimum=1),
        analysis_unit=analysis_unit,
        split_seed=r.typed("split_seed", data.get("split_seed", 0), int, minimum=0),
        seeds=seeds,
        profile=profile,
        overrides=r.mapping("overrides", data.get("overrides")),
        training=_training(r, data.get("training")),
        noise=tuple(sorted(set(noise))),
        noise_units=noise_units,
        metrics=tuple(metrics),
        reference=reference,
        arms=arms,
        correction=correction,
        alpha=alpha,
        tune=_tune(r, data.get("tune"), arms, methods),
        pass_criteria=dict(criteria),
    )
    study.resolve_profile()  # validates overrides now, not at run time
    return study


def load_study(name_or_path: str, *, directory: Path | None = None, check_methods: bool = True) -> Study:
    """Load a study by name (``studies/<name>.yaml``) or by path, with includes and validation."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
        if not path.exists():
            raise ConfigError(f"study file '{path}' not found")
    else:
        paths = study_paths(directory)
        if name_or_path not in paths:
            raise ConfigError(
                f"unknown study '{name_or_path}'{did_you_mean(name_or_path, paths)}; "
                f"available: {', '.join(paths) or '(none in ' + str(directory or studies_dir()) + ')'}"
            )
        path = paths[name_or_path]
    methods = None
    if check_methods:
        from bench.registry import METHODS, load_plugins

        load_plugins()
        methods = METHODS
    return parse_study(path, _resolve_includes(path.resolve()), methods)
