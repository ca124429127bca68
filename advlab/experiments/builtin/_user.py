"""What the experiments on a user's own things share: strict config blocks, arrays read from
an ``.npz`` file (no pickle), objects imported by ``package.module:name``, and file stamps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from advlab.data import DATASETS
from advlab.data.sources import DataNotFoundError
from advlab.experiments.config import ConfigError


class Strict(BaseModel):
    """A config block: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(Strict):
    """Where a run's data comes from: ``name`` (a built-in data set) or ``path`` (an ``.npz``
    holding the arrays ``x_key`` and ``y_key``), the first ``n`` rows of it."""

    name: str | None = None
    path: str | None = None
    n: int | None = Field(None, ge=1)
    x_key: str = "x"
    y_key: str = "y"

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of name (a built-in data set) or path (.npz)")
        if self.name is not None and self.name not in DATASETS:
            raise ValueError(f"unknown data set {self.name!r}; built in: {', '.join(DATASETS)}")
        return self


def read_npz(
    path: str, x_key: str, y_key: str, y_required: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """The arrays ``x_key`` (float32) and ``y_key`` of the ``.npz`` file ``path`` (read with
    ``allow_pickle=False``); ``y`` is None when it is absent and not required.

    Errors name the file and what to change: a missing file, a file that is not an ``.npz``,
    a missing array (with the names the file holds)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data.path {path!r}: no such file")
    try:
        arrays = np.load(file, allow_pickle=False)
    except Exception as exc:  # not a zip, truncated, pickled objects: name the file
        raise ValueError(f"data.path {path!r} is not a readable .npz file: {exc}") from exc
    with arrays:
        if not hasattr(arrays, "files"):
            raise ValueError(f"data.path {path!r} holds one array, not an .npz of named arrays")
        missing = [
            k for k in (x_key, y_key) if k not in arrays.files and (y_required or k == x_key)
        ]
        if missing:
            raise ValueError(
                f"data.path {path!r} has no array {missing} (it holds {arrays.files}); set "
                "data.x_key / data.y_key"
            )
        y = np.asarray(arrays[y_key]) if y_key in arrays.files else None
        return np.asarray(arrays[x_key], dtype=np.float32), y


def import_object(path: str, key: str) -> Any:
    """The object ``package.module:name`` names; the error names the config ``key``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{key} {path!r} must be 'package.module:name'")
    try:
        return getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"{key} {path!r} cannot be imported here ({exc}); it must be importable on every "
            "machine that runs units"
        ) from exc


def file_stamp(path: str | None) -> str:
    """Size and modification time of a file ('' for none): a changed file is loaded again."""
    if path is None or not Path(path).is_file():
        return ""
    stat = Path(path).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@contextmanager
def config_errors() -> Iterator[None]:
    """Inside: a ValueError, TypeError or FileNotFoundError (a user's file, factory or argument
    that does not fit) becomes a ``ConfigError``, which the CLI prints as one line."""
    try:
        yield
    except (ConfigError, DataNotFoundError):
        raise
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
