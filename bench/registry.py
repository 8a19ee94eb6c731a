"""Registries: one class, several instances (methods, datasets), with did-you-mean lookups.

Methods are registered by packages named in the ``bench.methods`` entry-point group of their
``pyproject.toml``; importing such a package runs its ``@register_method`` decorators.

Example:
    >>> from bench.registry import METHODS, load_plugins
    >>> load_plugins()
    >>> METHODS.get("unet3d").kind
    'seg'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, TypeVar

from bench.errors import BenchError, ConfigError, did_you_mean

__all__ = [
    "Registry",
    "MethodSpec",
    "METHODS",
    "TASK_KINDS",
    "register_method",
    "load_plugins",
    "ENTRY_POINT_GROUP",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "bench.methods"
TASK_KINDS = ("seg", "cls", "joint")
T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection whose failed lookups list what exists and the close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; "
                f"available: {', '.join(sorted(self._items)) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes:
        name: snake_case registry name used in study files.
        kind: ``seg`` | ``cls`` | ``joint``: which targets it trains on and which outputs it gives.
        builder: ``(in_channels, num_classes, spatial_size, width, **model_args) -> nn.Module``;
            the module returns a :class:`bench.outputs.ModelOutput`.
        loss: ``(**weights) -> bench.losses.MethodLoss``; its named weights are ``weights``.
        weights: default loss weights, as the method's paper gives them: the keyword defaults of ``loss``
            (:func:`loss_defaults`), so each default is written once, in the loss.
        search_space: ``weight name -> (low, high)`` for tuning (log-uniform by default).
        size_multiple: spatial sizes must be divisible by this (e.g. 16 for four stride-2 stages).
        summary: one line for ``bench ls methods``.
        kind_for: ``model_args -> kind`` for a method whose switches drop a head (the joint model's
            ``heads: seg_only``); ``None`` when ``kind`` always holds.
    """

    name: str
    kind: Literal["seg", "cls", "joint"]
    builder: Callable[..., Any]
    loss: Callable[..., Any]
    weights: Mapping[str, float] = field(default_factory=dict)
    search_space: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    size_multiple: int = 1
    summary: str = ""
    kind_for: Callable[[Mapping[str, Any]], str] | None = None

    def task_kind(self, model_args: Mapping[str, Any] | None = None) -> str:
        """The task this method trains on with ``model_args`` (``kind`` unless ``kind_for`` says otherwise)."""
        return self.kind_for(dict(model_args or {})) if self.kind_for is not None else self.kind

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"method '{self.name}': kind must be one of {TASK_KINDS}, got '{self.kind}'")
        unknown = set(self.search_space) - set(self.weights)
        if unknown:
            raise ValueError(f"method '{self.name}': search_space names unknown weights {sorted(unknown)}")

    def build(self, *, in_channels: int, num_classes: int, spatial_size: int, width: float, **model_args: Any):
        """Build the network, turning a bad keyword into a one-line error naming the method."""
        if spatial_size % self.size_multiple:
            raise ConfigError(
                f"method '{self.name}' needs a volume size divisible by {self.size_multiple}, got {spatial_size}"
            )
        try:
            return self.builder(in_channels, num_classes, spatial_size, width, **model_args)
        except TypeError as exc:
            raise ConfigError(f"method '{self.name}': bad model_args {dict(model_args)}: {exc}") from exc

    def make_loss(self, weights: Mapping[str, float] | None = None):
        """The method's loss with its default weights updated by ``weights``."""
        merged = dict(self.weights)
        for key, value in (weights or {}).items():
            if key not in merged:
                raise ConfigError(
                    f"method '{self.name}' has no loss weight '{key}'{did_you_mean(key, merged)}; "
                    f"its weights are {sorted(merged) or '(none)'}"
                )
            merged[key] = float(value)
        return self.loss(**merged)


METHODS: Registry[MethodSpec] = Registry("method")


def loss_defaults(loss: Callable[..., Any]) -> dict[str, float]:
    """The keyword defaults of a loss's constructor: its weights' default values."""
    import inspect

    return {name: float(p.default) for name, p in inspect.signature(loss).parameters.items()
            if p.default is not inspect.Parameter.empty}


def register_method(
    name: str,
    *,
    kind: Literal["seg", "cls", "joint"],
    loss: Callable[..., Any],
    weights: Mapping[str, float] | None = None,
    search_space: Mapping[str, tuple[float, float]] | None = None,
    size_multiple: int = 1,
    kind_for: Callable[[Mapping[str, Any]], str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a builder function as a method; the docstring's first line is its summary.

    ``weights`` defaults to the loss's own keyword defaults (:func:`loss_defaults`); give it only for a
    loss taking ``**weights``.
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        METHODS.register(
            name,
            MethodSpec(
                name=name,
                kind=kind,
                builder=builder,
                loss=loss,
                weights=dict(weights) if weights is not None else loss_defaults(loss),
                search_space=dict(search_space or {}),
                size_multiple=size_multiple,
                summary=summary,
                kind_for=kind_for,
            ),
        )
        return builder

    return decorate


_loaded = False


def load_plugins() -> None:
    """Import every package of the ``bench.methods`` entry-point group (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    found = entry_points(group=ENTRY_POINT_GROUP)
    if not found:
        raise BenchError(
            f"no package registers methods under the '{ENTRY_POINT_GROUP}' entry point; "
            "is the suite installed (`pip install -e .`)?"
        )
    for ep in found:
        try:
            ep.load()
        except ImportError as exc:
            raise BenchError(f"could not import method package '{ep.value}' (entry point '{ep.name}'): {exc}") from exc
    log.debug("loaded %d method packages: %s", len(found), [ep.value for ep in found])
