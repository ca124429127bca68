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
# advlab plan: config -> {"units": {group: count}, "attacks": [{"what", "model", "shape",
# "images", "steps", "units"}]}, counted from the config without running anything heavy
PlanFn = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    """An experiment: ``run(config, ctx) -> results`` with ``results["comparisons"]``.

    Attributes
    ----------
    name : str
        The name advlab run and reproduce take.
    config_cls : type
        Its ExperimentConfig subclass.
    run : callable
        run(config, ctx) -> results, with results['comparisons'].
    profiles : dict of str to dict
        Named configs (quick, paper, ...).
    description : str
        One line for advlab list.
    tables : callable or None
        tables(results, config) -> list of report Tables, the experiment's own summary tables.
    sample_size : callable or None
        sample_size(results, config, id) -> the n behind a comparison (repetitions or images), or
        None.
    plan : callable or None
        plan(config) -> the units and the attack work of a run, for advlab plan.
    """

    name: str
    config_cls: type[ExperimentConfig]
    run: RunFn
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    tables: TablesFn | None = None  # the experiment's own summary tables (report.Table list)
    sample_size: SampleSizeFn | None = None  # n behind a comparison id (reps or images)
    plan: PlanFn | None = None  # units and attack work of a config, for advlab plan


_REGISTRY: dict[str, Experiment] = {}


def register(
    name: str,
    config_cls: type[ExperimentConfig],
    profiles: dict[str, dict[str, Any]] | None = None,
    description: str = "",
    tables: TablesFn | None = None,
    sample_size: SampleSizeFn | None = None,
    plan: PlanFn | None = None,
) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``fn`` as experiment ``name`` (``tables`` and ``sample_size``
    feed ``advlab report``).

    Parameters
    ----------
    name : str
        The experiment's name.
    config_cls : type
        Its ExperimentConfig subclass.
    profiles : dict or None, default=None
        Named configs; None: the YAML files ``advlab/experiments/profiles/<name>/*.yaml``.
    description : str, default=''
        One line for advlab list.
    tables : callable or None, default=None
        Summary tables for advlab report (see Experiment).
    sample_size : callable or None, default=None
        Sample sizes for advlab report (see Experiment).
    plan : callable or None, default=None
        Units and attack work of a config for advlab plan (see Experiment).

    Returns
    -------
    callable
        A decorator registering the run function and returning it unchanged.
    """

    def wrap(fn: RunFn) -> RunFn:
        found = profiles if profiles is not None else load_profiles(name)
        _REGISTRY[name] = Experiment(
            name, config_cls, fn, found, description, tables, sample_size, plan
        )
        return fn

    return wrap


def load_profiles(name: str) -> dict[str, dict[str, Any]]:
    """The profiles of the built-in experiment ``name``: one YAML file per profile in
    ``advlab/experiments/profiles/<name>/`` (``experiment: NAME`` and the keys it sets, the
    format ``advlab run`` reads), keyed by file name.

    Parameters
    ----------
    name : str
        The experiment's name.

    Returns
    -------
    dict of str to dict
        Profile name -> the keys it sets (empty when the folder does not exist).
    """
    from importlib.resources import files

    import yaml

    folder = files("advlab.experiments") / "profiles" / name
    if not folder.is_dir():
        return {}
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        raw = yaml.safe_load(entry.read_text()) or {}
        if raw.pop("experiment", None) != name:
            raise ValueError(f"profiles/{name}/{entry.name}: 'experiment' must be {name!r}")
        found[entry.name.removesuffix(".yaml")] = raw
    return found


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name`` (built-ins are imported on first use).

    Parameters
    ----------
    name : str
        A registered experiment (built-ins and entry points).

    Returns
    -------
    Experiment
        The experiment; KeyError lists the known names.
    """
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
