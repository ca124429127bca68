"""Plain-text tables of ``results.json`` comparisons (ours vs paper)."""

from __future__ import annotations

from typing import Any


def format_comparisons(comparisons: list[dict[str, Any]]) -> str:
    """A fixed-width table: id | ours | paper | difference | unit."""
    header = ("id", "ours", "paper", "ours-paper", "unit")
    rows = [header]
    for c in comparisons:
        paper = c["paper"]
        diff = "" if paper is None else f"{c['ours'] - paper:+.2f}"
        rows.append(
            (
                str(c["id"]),
                f"{c['ours']:.2f}",
                "-" if paper is None else f"{paper:.2f}",
                diff,
                c["unit"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
