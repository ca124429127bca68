"""What the experiments on a user's own things share: strict config blocks, their data (a
built-in set, arrays read from an ``.npz`` file without pickle, or the rows of a ``.csv`` file,
checked in one place),
objects imported by ``package.module:name``, file stamps and one-line config errors."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.base import clone

from advlab.data import DATASETS, load_dataset
from advlab.data.sources import DataNotFoundError
from advlab.experiments.config import ConfigError
from advlab.experiments.runner import RunContext
from advlab.utils.validation import (
    Bounds,
    check_bounds,
    check_class_labels,
    integral_labels,
)

FEATURE_RANGE = "feature_range"
# a config's bounds: two numbers, one side (or both) one number per feature, or "feature_range"
BoundsSpec = tuple[float | tuple[float, ...], float | tuple[float, ...]] | Literal["feature_range"]


class Strict(BaseModel):
    """A config block: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(Strict):
    """Where a run's data comes from: ``name`` (a built-in data set) or ``path`` (an ``.npz``
    holding the arrays ``x_key`` and ``y_key``, or a ``.csv`` file with a header line whose
    column ``y_key`` holds the labels and whose other columns are the features), the first
    ``n`` rows of it."""

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
    no infinity), and so is a null entry of a per-feature list; anything else is left to the
    field's own validation.

    Parameters
    ----------
    value : Any
        The value given for ``bounds``.

    Returns
    -------
    Any
        ``value`` with None replaced by -inf (lower side) or inf (upper side).
    """
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(
            [fill if v is None else v for v in side] if isinstance(side, (list, tuple))
            else (fill if side is None else side)
            for side, fill in zip(value, (-math.inf, math.inf), strict=True)
        )  # fmt: skip
    return value


def resolve_bounds(value: BoundsSpec, inputs: list[np.ndarray], name: str = "bounds") -> Bounds:
    """The box a config's ``bounds`` names, checked (``advlab.utils.validation.check_bounds``):
    two numbers as they are; a side given as a list holds one number per feature (the
    flattened shape of one input, reshaped to it); ``"feature_range"`` is each feature's
    minimum and maximum over ``inputs`` (a feature constant over them is fixed: no attack
    moves it). ``ValueError`` naming the problem.

    Parameters
    ----------
    value : (float or list, float or list) or "feature_range"
        The config's ``bounds`` (after ``open_bounds``).
    inputs : list of ndarray
        Arrays (N, ...) of the inputs the run reads (training and attacked), of one shape per
        input.
    name : str, default="bounds"
        The config key, for messages.

    Returns
    -------
    (float, float) or (torch.Tensor, torch.Tensor)
        Two numbers, or per-feature bounds of one input's shape.
    """
    shape = tuple(inputs[0].shape[1:])
    if value == FEATURE_RANGE:
        low = np.min([a.reshape(len(a), -1).min(0) for a in inputs if len(a)], axis=0)
        high = np.max([a.reshape(len(a), -1).max(0) for a in inputs if len(a)], axis=0)
        return check_bounds((low.reshape(shape), high.reshape(shape)), name)
    sides: list[float | np.ndarray] = []
    for side, given in zip(("lower", "upper"), value, strict=True):
        if not isinstance(given, (list, tuple)):
            sides.append(float(given))
            continue
        entries = np.asarray(given, dtype=np.float64)
        if entries.size != int(np.prod(shape)):
            raise ValueError(
                f"{name}: the {side} side has {entries.size} entries, but one input has "
                f"{int(np.prod(shape))} features (shape {shape}): give one number per "
                "feature, or one number for all"
            )
        sides.append(entries.reshape(shape))
    return check_bounds(tuple(sides), name)


def two_numbers(value: BoundsSpec) -> tuple[float, float] | None:
    """A config's ``bounds`` as two numbers, or None when it names per-feature bounds.

    Parameters
    ----------
    value : (float or list, float or list) or "feature_range"
        The config's ``bounds``.

    Returns
    -------
    (float, float) or None
        The two numbers.
    """
    if isinstance(value, str):
        return None
    low, high = value
    if isinstance(low, tuple) or isinstance(high, tuple):
        return None
    return float(low), float(high)


PER_FEATURE_WORDS = {  # results.json's "bounds" -> the report's words
    "feature_range": "inputs kept in each feature's range over the data",
    "per_feature": "inputs kept in per-feature bounds",
}


def bounds_record(value: BoundsSpec) -> dict[str, str]:
    """What ``results.json`` records of a config's per-feature ``bounds`` (``{"bounds":
    "feature_range"}`` or ``{"bounds": "per_feature"}``; the values are in ``config.json``),
    and nothing for two numbers, whose results read as before.

    Parameters
    ----------
    value : (float or list, float or list) or "feature_range"
        The config's ``bounds``.

    Returns
    -------
    dict
        The entry, or an empty dict.
    """
    if two_numbers(value) is not None:
        return {}
    return {"bounds": FEATURE_RANGE if value == FEATURE_RANGE else "per_feature"}


def display_range(bounds: Bounds) -> tuple[float, float]:
    """One (lower, upper) for pictures and throughput probes: the bounds themselves, or the
    smallest lower and the largest upper bound of per-feature ones.

    Parameters
    ----------
    bounds : (float, float) or (torch.Tensor, torch.Tensor)
        Checked bounds.

    Returns
    -------
    (float, float)
        The range.
    """
    low, high = bounds
    if isinstance(low, torch.Tensor) and isinstance(high, torch.Tensor):
        return float(low.min()), float(high.max())
    return float(low), float(high)


def missing_file(key: str, path: str) -> str:
    """The error for a file that is not there: ``key`` and ``path``, and for a relative path
    the directory it was looked for in (relative paths are read from the current directory,
    not from the config's).

    Parameters
    ----------
    key : str
        The config key that names the file (``data.path``, ``model.weights``).
    path : str
        The path given.

    Returns
    -------
    str
        The message.
    """
    where = "" if Path(path).is_absolute() else f" in the current directory {Path.cwd()}"
    return f"{key} {path!r}: no such file{where}"


def read_npz(
    path: str, x_key: str, y_key: str, y_required: bool = True, key: str = "data"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The arrays ``x_key`` (float32) and ``y_key`` of the ``.npz`` file ``path`` (read with
    ``allow_pickle=False``); ``y`` is None when it is absent and not required.

    Errors name the file and what to change: a missing file, a file that is not an ``.npz``,
    a missing array (with the names the file holds), under the config block ``key``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_file(f"{key}.path", path))
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


def _numbers(column: list[str]) -> np.ndarray | None:
    """The cells as float64, or None when one is not a number."""
    try:
        return np.asarray(column, dtype=np.float64)
    except ValueError:
        return None


def _finite(cell: str) -> bool:
    """Whether the cell is a finite number."""
    value = _numbers([cell])
    return value is not None and bool(np.isfinite(value).all())


def read_csv(
    path: str, y_key: str, y_required: bool = True, key: str = "data"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of the ``.csv`` file ``path``, whose first line names its columns: every
    column but ``y_key`` a numeric feature (float32 (N, D)), ``y_key`` the labels (numbers, or
    the cells as strings when one is not a number; None when the column is absent and not
    required). Blank lines are skipped.

    Errors name the file and what to change: a missing file, no header or no rows, a row of
    another length (its line), a missing label column (with the columns the file holds), a
    cell that is not a number (its column and line)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_file(f"{key}.path", path))
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:  # (-sig: Excel's BOM)
            lines = [(i, row) for i, row in enumerate(csv.reader(handle), 1) if row]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{key}.path {path!r} is not a readable .csv file: {exc}") from exc
    if len(lines) < 2:
        raise ValueError(f"{key}.path {path!r} needs a header line naming its columns and rows")
    header = [name.strip() for name in lines[0][1]]
    for number, row in lines[1:]:
        if len(row) != len(header):
            raise ValueError(f"{key}.path {path!r} line {number} has {len(row)} cells, the "
                             f"header {len(header)}")  # fmt: skip
    label = header.index(y_key) if y_key in header else None
    if label is None and y_required:
        raise ValueError(f"{key}.path {path!r} has no column {y_key!r} (its columns: "
                         f"{header}); set {key}.y_key to the labels' column")  # fmt: skip
    features = [c for c in range(len(header)) if c != label]
    if not features:
        raise ValueError(f"{key}.path {path!r} has no feature column besides {y_key!r}")
    columns = list(zip(*(row for _, row in lines[1:]), strict=True))
    x = np.empty((len(lines) - 1, len(features)), dtype=np.float32)
    for j, c in enumerate(features):
        values = _numbers([cell.strip() for cell in columns[c]])
        if values is None or not np.isfinite(values).all():
            bad = next(i for i, cell in enumerate(columns[c]) if not _finite(cell.strip()))
            cell = columns[c][bad].strip()
            words = label is None and _numbers([cell]) is None and cell
            hint = f"; if it holds the labels, set {key}.y_key" if words else ""
            raise ValueError(f"{key}.path {path!r}: column {header[c]!r}, line "
                             f"{lines[bad + 1][0]}: {cell!r} is not a finite number{hint}")  # fmt: skip
        x[:, j] = values
    if label is None:
        return x, None
    cells = [cell.strip() for cell in columns[label]]
    numbers = _numbers(cells)
    return x, np.asarray(cells) if numbers is None else numbers


def encoded_labels(y: np.ndarray) -> np.ndarray:
    """Labels that are not integers (class names) as 0 .. C - 1 in sorted order, as
    scikit-learn's ``LabelEncoder``; integer labels as they are.

    Parameters
    ----------
    y : ndarray of shape (N,)
        The labels.

    Returns
    -------
    ndarray
        ``y`` itself, or int64 codes.
    """
    if integral_labels(y):
        return y
    return np.unique(y.astype(str), return_inverse=True)[1].astype(np.int64)


def load_source(
    spec: DataSource,
    split: str,
    y_required: bool = True,
    non_negative: bool = False,
    key: str = "data",
    encode: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs, labels, name) of ``spec``: a built-in set's ``split`` (its images, else its
    rows), or the arrays of an ``.npz`` file or the rows of a ``.csv`` file (``read_csv``)
    (finite, at least one; integer labels, None when absent and not required), cut to the
    first ``spec.n``.

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
    encode : bool, default=False
        Take labels that are not integers (class names) as their codes (``encoded_labels``):
        where only which points share a label matters, not which class a model calls it.

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
        if Path(spec.path).suffix.lower() == ".csv":
            x, y = read_csv(spec.path, spec.y_key, y_required, key)
        else:
            x, y = read_npz(spec.path, spec.x_key, spec.y_key, y_required, key)
        if encode and y is not None:
            y = encoded_labels(y)
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
    except (ImportError, AttributeError) as exc:  # (a ConfigError: one line, on a worker too)
        raise ConfigError(
            f"{key} {path!r} cannot be imported here ({exc}); it must be importable on every "
            "machine that runs units"
        ) from exc


def build_seeded(
    block: str, factory: str, kwargs: dict[str, Any], seed: int, methods: tuple[str, ...],
    lacking: str,
) -> Any:  # fmt: skip
    """``factory(**kwargs)`` of the config block ``block``, unfitted, with every
    ``random_state`` among its (nested) parameters set to ``seed`` (so that every seed, and
    every worker, builds the same object); an object without the ``methods`` is refused with
    ``lacking`` (what it is not)."""
    try:
        built = import_object(factory, f"{block}.factory")(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{block}.factory {factory!r} with {block}.kwargs: {exc}") from exc
    if not all(callable(getattr(built, m, None)) for m in methods):
        raise ConfigError(
            f"{block}.factory {factory!r} gave {type(built).__name__}, which {lacking}"
        )
    params = built.get_params() if hasattr(built, "get_params") else {}
    seeds = {k: seed for k in params if k == "random_state" or k.endswith("__random_state")}
    return clone(built).set_params(**seeds) if seeds else built


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
