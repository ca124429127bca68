"""Named experiments: a config class, a run function and named profiles (``quick``, ``paper``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advlab.experiments.config import ExperimentConfig

if TYPE_CHECKING:
    from advlab.experiments.runner import RunContext

RunFn = Callable[[Any, "RunContext"], dict[str, Any]]
# report hooks, pure functions of a run's results.json and config.json "config" part
TablesFn = Callable[[dict[str, Any], dict[str, Any]], list[Any]]
SampleSizeFn = Callable[[dict[str, Any], dict[str, Any], str], int | None]


@dataclass(frozen=True)
class Experiment:
    """An experiment: ``run(config, ctx) -> results`` with ``results["comparisons"]``."""

    name: str
    config_cls: type[ExperimentConfig]
    run: RunFn
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    tables: TablesFn | None = None  # the experiment's own summary tables (report.Table list)
    sample_size: SampleSizeFn | None = None  # n behind a comparison id (reps or images)


_REGISTRY: dict[str, Experiment] = {}


def register(
    name: str,
    config_cls: type[ExperimentConfig],
    profiles: dict[str, dict[str, Any]] | None = None,
    description: str = "",
    tables: TablesFn | None = None,
    sample_size: SampleSizeFn | None = None,
) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``fn`` as experiment ``name`` (``tables`` and ``sample_size``
    feed ``advlab report``)."""

    def wrap(fn: RunFn) -> RunFn:
        _REGISTRY[name] = Experiment(
            name, config_cls, fn, profiles or {}, description, tables, sample_size
        )
        return fn

    return wrap


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name`` (built-ins are imported on first use)."""
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_experiments() -> list[Experiment]:
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


ENTRY_POINT_GROUP = "advlab.experiments"


def _load_builtins() -> None:
    """Import the built-in experiments (an explicit list, by module name, so that the registry
    does not import the modules that import it) and those other packages declare under the
    ``advlab.experiments`` entry-point group."""
    from importlib import import_module
    from importlib.metadata import entry_points

    package = "advlab.experiments.builtin"
    for name in import_module(package).BUILTIN_MODULES:
        import_module(f"{package}.{name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
