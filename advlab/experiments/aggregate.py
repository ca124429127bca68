"""One aggregator for every experiment: tidy rows in, comparisons out.

A *tidy row* is one measured value of one comparison id::

    {"id": "fig2a.adv.last", "value": 41.2, "unit": "%", "paper": 17.0, **keys}

one row per repetition (a seed, a repetition of Algorithm 1), or a single row when the value is
already a statistic over images (a success rate over n attacked images). The paper value comes
from ``papers/<experiment>.yaml`` (``reporting.paper_data``), never from code. ``aggregate``
groups the rows by id, in the order the ids first appear, and states each group as one
comparison of ``results.json``:

- ``level`` given (the experiment's confidence level: 0.99 for Omari as the paper, 0.95 for
  Poison Cluster's seeds): ``ours`` is the mean over the rows and ``ci<level>`` the half-width of
  the Student-t interval, ``t_{(1+level)/2, n-1} * s / sqrt(n)`` (``advlab.metrics.mean_ci``);
- ``level`` None: exactly one row, passed through. A rate over n images is one such row; its
  Wilson interval is drawn in the report from the experiment's ``sample_size`` (a t interval
  over 18 images' 0/1 outcomes would be meaningless).

Any other key of a group's first row (``n_injected``, ``reversed``, a precomputed ``ci95``) is
carried into the comparison. ``curve`` does the same for a table of repetitions x steps (the
figures' curves). The experiments build rows; only this module turns them into numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from advlab.metrics import mean_ci

ROW_KEYS = ("id", "value", "unit", "paper")


def tidy_row(
    cid: str, value: float, unit: str = "%", paper: float | None = None, **keys: Any
) -> dict:
    """One tidy row: the value of comparison ``cid`` in one repetition (or the single value).

    Parameters
    ----------
    cid : str
        The comparison id.
    value : float
        What was measured.
    unit : str, default="%"
        Its unit.
    paper : float or None, default=None
        The paper's value for this id (from the paper's data file), None where it has none.
    **keys
        Anything else the comparison should carry (the first row's keys are kept).

    Returns
    -------
    dict
    """
    return {"id": cid, "value": value, "unit": unit, "paper": paper, **keys}


def ci_key(level: float) -> str:
    """The key a half-width at ``level`` is stored under: ``ci99`` for 0.99, ``ci95`` for 0.95.

    Parameters
    ----------
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    str
    """
    return f"ci{round(100 * level):d}"


def mean_and_half_width(
    values: Iterable[float], level: float, drop_nan: bool = False, min_values: int = 1
) -> tuple[float, float]:
    """Mean and Student-t half-width at ``level`` of ``values`` (``advlab.metrics.mean_ci``).

    Parameters
    ----------
    values : iterable of float
        One value per repetition.
    level : float
        Confidence level in (0, 1).
    drop_nan : bool, default=False
        Leave NaN values out (a metric undefined for some seeds); otherwise a NaN makes the
        mean NaN.
    min_values : int, default=1
        Fewer values than this (after dropping NaN) give (NaN, NaN).

    Returns
    -------
    (float, float)
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if drop_nan:
        arr = arr[~np.isnan(arr)]
    if len(arr) < max(1, min_values):
        return float("nan"), float("nan")
    mean, half = mean_ci(arr, level)
    return float(mean), float(half)


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    level: float | None = None,
    drop_nan: bool = False,
    min_values: int = 1,
) -> list[dict[str, Any]]:
    """Comparisons from tidy rows: one per id, in first-seen order (see the module docstring).

    Parameters
    ----------
    rows : iterable of dict
        Tidy rows (``tidy_row``).
    level : float or None, default=None
        Confidence level of the mean's t interval; None: one row per id, passed through.
    drop_nan : bool, default=False
        Leave NaN values out of the mean.
    min_values : int, default=1
        Fewer values than this give NaN.

    Returns
    -------
    list of dict
        ``{"id", "ours", "paper", "unit", ["ci<level>"], **the first row's other keys}``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["id"], []).append(r)
    out = []
    for cid, group in groups.items():
        first = group[0]
        extra = {k: v for k, v in first.items() if k not in ROW_KEYS}
        entry = {"id": cid, "paper": first.get("paper"), "unit": first.get("unit", "%")}
        if level is None:
            if len(group) != 1:
                raise ValueError(
                    f"comparison {cid!r} has {len(group)} rows; without a confidence level "
                    "there must be exactly one"
                )
            out.append({"id": cid, "ours": first["value"], **entry, **extra})
            continue
        mean, half = mean_and_half_width((r["value"] for r in group), level, drop_nan, min_values)
        out.append({"id": cid, "ours": mean, **entry, ci_key(level): half, **extra})
    return out


def curve(table: Any, level: float) -> dict[str, list[float]]:
    """Mean and t half-width at ``level`` per column of ``table``: a figure's curve.

    Parameters
    ----------
    table : array-like
        Repetitions x steps.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    dict
        ``{"mean": [...], "ci<level>": [...]}``, one value per step.
    """
    mean, half = mean_ci(table, level)
    return {"mean": mean.tolist(), ci_key(level): half.tolist()}
