"""Comparison rows of a report: ours, its interval, the paper's value and the verdict.

A comparison in ``results.json`` is ``{"id", "ours", "paper", "unit"}`` plus, where the
experiment measured one, its interval: ``ci99`` / ``ci95`` (half-widths of a t interval over
repetitions) or ``n`` (the number of images behind a rate in %, whose interval is then the
Wilson score interval at 95 %, because a mean +- t interval is meaningless for a rate over a
few images).

The verdict says whether the paper's value lies inside our interval:

* ``inside``: lo <= paper <= hi;
* ``outside``: it does not;
* ``no paper value``: the paper reports none (a control or an extra measurement);
* ``no interval``: the paper has a value but ours has no interval (a single number, e.g. a
  count from one run); the difference is shown, no verdict is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest

VERDICTS = ("inside", "outside", "no paper value", "no interval")


@dataclass(frozen=True)
class ComparisonRow:
    """One comparison, with its interval ``[lo, hi]`` (None when not measured) and verdict.

    Attributes
    ----------
    id : str
        The comparison id.
    ours : float
        Our value.
    paper : float or None
        The paper's value.
    unit : str
        Unit of both values.
    lo : float or None
        Lower end of our interval.
    hi : float or None
        Upper end of our interval.
    interval : str
        How [lo, hi] was obtained, e.g. '99 % t (3 reps)', 'Wilson 95 %', or ''.
    n : int or None
        Repetitions or images behind our value.
    verdict : str
        inside, outside, no paper value or no interval.
    """

    id: str
    ours: float
    paper: float | None
    unit: str
    lo: float | None
    hi: float | None
    interval: str  # how [lo, hi] was obtained, e.g. "99 % t (3 reps)", "Wilson 95 %", ""
    n: int | None
    verdict: str

    @property
    def difference(self) -> float | None:
        """ours - paper, or None without a paper value."""
        return None if self.paper is None else self.ours - self.paper


def wilson_interval(rate_percent: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (in %) of a rate measured on ``n`` trials.

    The number of successes is ``round(rate / 100 * n)``; the interval is scipy's
    ``binomtest(k, n).proportion_ci(method="wilson")``.

    Parameters
    ----------
    rate_percent : float
        The measured rate in %, in [0, 100].
    n : int
        Number of trials (images).
    level : float, default=0.95
        Confidence level.

    Returns
    -------
    (float, float)
        The interval's ends in %.
    """
    k = round(rate_percent / 100 * n)
    if not 0 <= k <= n:
        raise ValueError(f"rate {rate_percent} % is not a rate over n = {n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return 100 * ci.low, 100 * ci.high


def comparison_row(entry: dict[str, Any], n: int | None = None) -> ComparisonRow:
    """The report row of one ``results.json`` comparison.

    ``n`` is the sample size behind it when the entry does not carry one (repetitions for a
    t interval, images for a rate).

    Parameters
    ----------
    entry : dict
        One comparison of results.json: id, ours, paper, unit, and ci99 / ci95 / n where measured
        (``n_of``: what n counts, "reps" unless given).
    n : int or None, default=None
        Sample size to use when the entry carries none.

    Returns
    -------
    ComparisonRow
        The row with its interval and verdict.
    """
    ours, paper = float(entry["ours"]), entry["paper"]
    n = entry.get("n", n)
    lo = hi = None
    interval = ""
    for key, level in (("ci99", 99), ("ci95", 95)):
        half = entry.get(key)
        if half is not None:
            lo, hi = ours - half, ours + half
            interval = f"{level} % t" + (f" ({n} {entry.get('n_of', 'reps')})" if n else "")
            break
    else:
        if n and entry["unit"] == "%" and 0 <= ours <= 100:
            lo, hi = wilson_interval(ours, int(n))
            interval = "Wilson 95 %"
    if paper is None:
        verdict = "no paper value"
    elif lo is None or hi is None:
        verdict = "no interval"
    else:
        verdict = "inside" if lo <= paper <= hi else "outside"
    return ComparisonRow(
        id=str(entry["id"]),
        ours=ours,
        paper=None if paper is None else float(paper),
        unit=str(entry["unit"]),
        lo=lo,
        hi=hi,
        interval=interval,
        n=None if n is None else int(n),
        verdict=verdict,
    )


def comparison_rows(
    comparisons: Iterable[dict[str, Any]],
    sample_size: Callable[[str], int | None] | None = None,
) -> list[ComparisonRow]:
    """Rows for every comparison; ``sample_size(id)`` supplies n where entries lack it.

    Parameters
    ----------
    comparisons : iterable of dict
        The comparisons of results.json.
    sample_size : callable or None, default=None
        sample_size(id) -> n for entries without one.

    Returns
    -------
    list of ComparisonRow
        One row per comparison.
    """
    return [
        comparison_row(c, None if sample_size is None else sample_size(str(c["id"])))
        for c in comparisons
    ]


def verdict_counts(rows: Iterable[ComparisonRow]) -> dict[str, int]:
    """How many rows have each verdict (every verdict listed, zeros included).

    Parameters
    ----------
    rows : iterable of ComparisonRow
        Rows to count.

    Returns
    -------
    dict of str to int
        Rows per verdict, every verdict listed.
    """
    counts = dict.fromkeys(VERDICTS, 0)
    for row in rows:
        counts[row.verdict] += 1
    return counts
