"""The one aggregator: tidy rows -> comparisons (mean and t interval per id, or one value)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from advlab.experiments.aggregate import (
    aggregate,
    ci_key,
    curve,
    mean_and_half_width,
    tidy_row,
)


def test_rows_of_one_id_become_their_mean_and_t_half_width():
    values = [40.0, 44.0, 47.0]
    rows = [tidy_row("fig2a.adv.last", v, paper=17.0) for v in values]
    rows += [tidy_row("fig2a.clean.last", v, n_injected=5) for v in (70.0, 72.0, 71.0)]
    first, second = aggregate(rows, 0.99)
    half = stats.t.ppf(0.995, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert first == {"id": "fig2a.adv.last", "ours": pytest.approx(131 / 3), "paper": 17.0,
                     "unit": "%", "ci99": pytest.approx(half)}  # fmt: skip
    assert list(first) == ["id", "ours", "paper", "unit", "ci99"]  # results.json's key order
    assert second["ours"] == pytest.approx(71.0) and second["n_injected"] == 5
    assert second["paper"] is None and "ci99" in second


def test_ids_keep_the_order_they_first_appear_in():
    rows = [tidy_row(cid, 1.0) for cid in ("b", "a", "b", "c", "a")]
    assert [c["id"] for c in aggregate(rows, 0.95)] == ["b", "a", "c"]


def test_without_a_level_each_id_is_one_value_passed_through():
    rows = [tidy_row("table2.fc1.undefended.asr.lbfgs", 94.4444, "%", 100.0, ci95=1.5)]
    assert aggregate(rows) == [{"id": "table2.fc1.undefended.asr.lbfgs", "ours": 94.4444,
                                "paper": 100.0, "unit": "%", "ci95": 1.5}]  # fmt: skip
    with pytest.raises(ValueError, match="'x' has 2 rows; without a confidence level"):
        aggregate([tidy_row("x", 1.0), tidy_row("x", 2.0)])


def test_nan_seeds_are_dropped_only_when_asked_and_too_few_values_give_nan():
    assert math.isnan(mean_and_half_width([1.0, float("nan"), 3.0], 0.95)[0])
    mean, half = mean_and_half_width([1.0, float("nan"), 3.0], 0.95, drop_nan=True)
    assert mean == 2.0 and half == pytest.approx(
        stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2)
    )
    assert all(map(math.isnan, mean_and_half_width([1.0, np.nan], 0.95, True, min_values=2)))
    assert mean_and_half_width([5.0], 0.99) == (5.0, 0.0)  # one repetition: no spread


def test_curve_is_the_per_step_mean_and_half_width():
    table = [[1.0, 10.0], [3.0, 14.0]]
    c = curve(table, 0.95)
    assert c["mean"] == [2.0, 12.0] and ci_key(0.95) == "ci95" and ci_key(0.99) == "ci99"
    assert c["ci95"][1] == pytest.approx(stats.t.ppf(0.975, 1) * np.std([10, 14], ddof=1) / 2**0.5)
