"""What the experiments on a user's own things share: strict config blocks, their data (a
built-in set, or arrays read from an ``.npz`` file without pickle, checked in one place),
objects imported by ``package.module:name``, file stamps and one-line config errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from advlab.data import DATASETS, load_dataset
from advlab.data.sources import DataNotFoundError
from advlab.experiments.config import ConfigError
from advlab.experiments.runner import RunContext
from advlab.utils.validation import check_class_labels


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


def open_bounds(value: Any) -> Any:
    """A config's ``bounds`` with ``null`` read as an open side: [null, null] is (-inf, inf),
    the bounds of tabular features (``config.json`` writes infinite bounds as null, JSON having
    no infinity); anything else is left to the field's own validation.

    Parameters
    ----------
    value : Any
        The value given for ``bounds``.

    Returns
    -------
    Any
        ``value`` with None replaced by -inf (first) or inf (second).
    """
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
        return (-math.inf if low is None else low, math.inf if high is None else high)
    return value


def read_npz(
    path: str, x_key: str, y_key: str, y_required: bool = True, key: str = "data"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The arrays ``x_key`` (float32) and ``y_key`` of the ``.npz`` file ``path`` (read with
    ``allow_pickle=False``); ``y`` is None when it is absent and not required.

    Errors name the file and what to change: a missing file, a file that is not an ``.npz``,
    a missing array (with the names the file holds), under the config block ``key``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{key}.path {path!r}: no such file")
    try:
        arrays = np.load(file, allow_pickle=False)
    except Exception as exc:  # not a zip, truncated, pickled objects: name the file
        raise ValueError(f"{key}.path {path!r} is not a readable .npz file: {exc}") from exc
    with arrays:
        if not hasattr(arrays, "files"):
            raise ValueError(f"{key}.path {path!r} holds one array, not an .npz of named arrays")
        missing = [
            k for k in (x_key, y_key) if k not in arrays.files and (y_required or k == x_key)
        ]
        if missing:
            raise ValueError(
                f"{key}.path {path!r} has no array {missing} (it holds {arrays.files}); set "
                f"{key}.x_key / {key}.y_key"
            )
        y = np.asarray(arrays[y_key]) if y_key in arrays.files else None
        return np.asarray(arrays[x_key], dtype=np.float32), y


def load_source(
    spec: DataSource,
    split: str,
    y_required: bool = True,
    non_negative: bool = False,
    key: str = "data",
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs, labels, name) of ``spec``: a built-in set's ``split`` (its images, else its
    rows), or the ``.npz`` arrays (finite, at least one; integer labels, None when absent and
    not required), cut to the first ``spec.n``.

    Parameters
    ----------
    spec : DataSource
        Where the data comes from.
    split : str
        The split of a built-in set.
    y_required : bool, default=True
        Whether the ``.npz`` file must hold labels.
    non_negative : bool, default=False
        Refuse labels below 0 (a classifier's classes; poisoning marks "no label" with -1).
    key : str, default="data"
        The config block ``spec`` is, named in errors (``train.path``, ``test.n``).

    Returns
    -------
    tuple
        The inputs (N, ...) as read, their int64 labels or None, and a name for the data.
    """
    y: np.ndarray | None
    if spec.name is not None:
        ds = load_dataset(spec.name, split)
        x = ds.images if ds.images is not None else ds.data
        y, name = ds.labels, spec.name
    else:
        assert spec.path is not None
        x, y = read_npz(spec.path, spec.x_key, spec.y_key, y_required, key)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"{key}.path: {spec.x_key} must have shape (N, ...), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{key}.path: {spec.x_key} contains NaN or infinite values")
        if y is not None:
            y = check_class_labels(y, len(x), f"{key}.path: {spec.y_key}", non_negative)
        name = Path(spec.path).name
    if spec.n is not None:
        if spec.n > len(x):
            raise ValueError(f"{key}.n = {spec.n} exceeds the {len(x)} rows of {name}")
        x, y = x[: spec.n], None if y is None else y[: spec.n]
    return x, y, name


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


def refuse_changed_files(ctx: RunContext, current: dict[str, str]) -> None:
    """Store ``current`` (what -> SHA-256 of the user's files: data, weights) as the run's
    first unit; a resumed run whose files changed since is refused, naming what changed, so
    that units computed on the old files are never mixed with new ones."""
    started = ctx.unit("fingerprint", lambda: current)
    changed = [k.removesuffix("_sha256") for k in current if started.get(k) != current[k]]
    if changed:
        raise ConfigError(
            f"the {' and '.join(changed)} changed since this run directory was started; its "
            "finished units were computed on the old files: use another --out"
        )
