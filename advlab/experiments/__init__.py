"""Experiments: validated configs, the resumable runner, its executors (serial, local processes,
Dask), the artefact cache, the registry."""

from advlab.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    read_config_file,
    validate_config,
)
from advlab.experiments.executors import (
    DaskExecutor,
    Executor,
    ExecutorError,
    LocalExecutor,
    SerialExecutor,
    make_executor,
)
from advlab.experiments.registry import Experiment, get_experiment, list_experiments, register
from advlab.experiments.runner import RunContext, RunDirError, run_experiment
from advlab.utils.cache import Cache

__all__ = [
    "Cache",
    "ConfigError",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "Experiment",
    "ExperimentConfig",
    "LocalExecutor",
    "RunContext",
    "RunDirError",
    "SerialExecutor",
    "apply_overrides",
    "get_experiment",
    "list_experiments",
    "make_executor",
    "read_config_file",
    "register",
    "run_experiment",
    "validate_config",
]
