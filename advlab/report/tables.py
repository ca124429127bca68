"""Tables of a report: a small data type and its plain-text and Markdown renderings."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advlab.report.comparisons import ComparisonRow, comparison_rows


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells; ``align`` is "l" or "r" per column.

    Attributes
    ----------
    title : str
        Shown above the table; '' for none.
    columns : sequence of str
        Column headers.
    rows : sequence of sequence of str
        Formatted cells, as many per row as columns.
    align : sequence of str
        'l' or 'r' per column; empty: first left, others right.
    note : str
        Shown under the table.
    """

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: Sequence[str] = field(default=())
    note: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: a row has {len(row)} cells for "
                    f"{len(self.columns)} columns: {row!r}"
                )

    def alignment(self) -> list[str]:
        return list(self.align) or ["l"] + ["r"] * (len(self.columns) - 1)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals, "-" for None.

    Parameters
    ----------
    value : float or None
        A number.
    digits : int, default=2
        Decimals.

    Returns
    -------
    str
        The number, or '-'.
    """
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_table(rows: Sequence[ComparisonRow], title: str = "comparisons") -> Table:
    """id | paper | ours | interval | n | verdict, one line per comparison.

    Parameters
    ----------
    rows : sequence of ComparisonRow
        Rows to show.
    title : str, default='comparisons'
        The table's title.

    Returns
    -------
    Table
        id, paper, ours, interval, n, unit, verdict.
    """
    body = [
        [
            f"`{r.id}`",
            fmt(r.paper),
            fmt(r.ours),
            "-" if r.lo is None else f"[{r.lo:.2f}, {r.hi:.2f}] {r.interval}",
            "-" if r.n is None else str(r.n),
            r.unit,
            r.verdict,
        ]
        for r in rows
    ]
    return Table(
        title,
        ("id", "paper", "ours", "interval", "n", "unit", "verdict"),
        body,
        align=("l", "r", "r", "l", "r", "l", "l"),
    )


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table (``|`` in cells escaped), preceded by its bold title.

    Parameters
    ----------
    table : Table
        The table.

    Returns
    -------
    str
        GitHub Markdown.
    """
    marks = {"l": "---", "r": "---:"}

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [f"**{table.title}**", "", line(table.columns)]
    lines.append("| " + " | ".join(marks[a] for a in table.alignment()) + " |")
    lines += [line(r) for r in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def format_comparisons(comparisons: list[dict[str, Any]]) -> str:
    """A fixed-width table: id | ours | paper | difference | unit | verdict.

    Parameters
    ----------
    comparisons : list of dict
        The comparisons of results.json.

    Returns
    -------
    str
        A fixed-width text table.
    """
    header = ("id", "ours", "paper", "ours-paper", "unit", "verdict")
    rows = [header]
    for r in comparison_rows(comparisons):
        diff = r.difference
        rows.append(
            (r.id, fmt(r.ours), fmt(r.paper), "" if diff is None else f"{diff:+.2f}", r.unit,
             r.verdict)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i in (0, 4, 5) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def selected_table(
    title: str, rows: Sequence[ComparisonRow], ids: Sequence[str], note: str = ""
) -> Table:
    """id | paper | ours | interval | verdict for the rows whose id matches one of ``ids``
    (fnmatch patterns), in the order of ``rows``.

    Parameters
    ----------
    title : str
        The table's title.
    rows : sequence of ComparisonRow
        Every comparison.
    ids : sequence of str
        fnmatch patterns of the ids to show.
    note : str, default=''
        Shown under the table.

    Returns
    -------
    Table
        id, paper, ours, interval, verdict.
    """
    chosen = [r for r in rows if any(fnmatch.fnmatchcase(r.id, p) for p in ids)]
    full = comparison_table(chosen, title)
    keep = [full.columns.index(c) for c in ("id", "paper", "ours", "interval", "verdict")]
    return Table(
        title,
        [full.columns[i] for i in keep],
        [[row[i] for i in keep] for row in full.rows],
        align=[full.alignment()[i] for i in keep],
        note=note,
    )
