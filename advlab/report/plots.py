"""Figures, saved as PNG and SVG (matplotlib, non-interactive backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from advlab.utils.io import atomic_write_bytes


def save_figure(fig: Any, path: str | Path) -> list[Path]:
    """Save ``fig`` as ``path``.png and ``path``.svg atomically; returns both paths."""
    import io

    base = Path(path).with_suffix("")
    written = []
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight")
        written.append(atomic_write_bytes(base.with_suffix(f".{fmt}"), buffer.getvalue()))
    plt.close(fig)
    return written


def plot_elbow(
    ks: list[int], inertias: list[float], knee: int | None, title: str, path: str | Path
) -> list[Path]:
    """Inertia against k with the knee marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, inertias, "o-", color="C0", label="inertia")
    if knee is not None:
        ax.axvline(knee, color="C3", linestyle="--", label=f"knee k = {knee}")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("inertia (sum of squared distances)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
