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


def _finish_grid(fig: Any, axes: Any, n_used: int, suptitle: str, path: str | Path) -> list[Path]:
    """Blank the unused axes of a panel grid, add the title, lay out and save."""
    for ax in list(axes.flat)[n_used:]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_figure(fig, path)


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


def plot_training_curves(
    panels: list[dict[str, Any]], n_cols: int, path: str | Path, suptitle: str = ""
) -> list[Path]:
    """Omari et al. Fig. 2: clean and adversarial accuracy vs training eps, mean with bands.

    Each panel: ``title``, ``eps`` (x), ``clean``/``adv`` dicts with ``mean``, ``low``,
    ``high`` lists, and optional ``baseline`` (plain k-means ``clean``/``adv`` means).
    """
    n_rows = max(1, -(-len(panels) // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for key, label, color in (("clean", "ClnAcc", "C0"), ("adv", "AdvAcc", "C3")):
            series = panel[key]
            ax.plot(panel["eps"], series["mean"], color=color, label=label)
            ax.fill_between(
                panel["eps"], series["low"], series["high"], color=color, alpha=0.25, linewidth=0
            )
            if "baseline" in panel:
                ax.axhline(panel["baseline"][key], color=color, linestyle=":", linewidth=1)
        ax.set_title(panel["title"])
        ax.set_xlabel("training epsilon")
        ax.set_ylabel("clustering accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return _finish_grid(fig, axes, len(panels), suptitle, path)


def plot_robustness_curves(
    robustness: dict[str, dict[str, Any]], path: str | Path, suptitle: str = ""
) -> list[Path]:
    """Robust accuracy against eps, one panel per (dataset, model): the certified lower bound
    and the exact and PGD attacks' upper bounds (the truth lies between certified and exact).

    ``robustness``: dataset -> model -> {``eps``, ``curve``: {``certified``, ``exact``,
    ``pgd``}: lists of accuracies (%)}."""
    panels = [(d, m, p) for d, models in robustness.items() for m, p in models.items()]
    n_cols = min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False)
    styles = (("certified", "certified (lower bound)", "C2", "-"),
              ("exact", "exact attack", "C3", "-"), ("pgd", "PGD", "C1", "--"))  # fmt: skip
    for ax, (dataset, model, prof) in zip(axes.flat, panels, strict=False):
        for key, label, color, line in styles:
            ax.plot(prof["eps"], prof["curve"][key], line, color=color, label=label, marker=".")
        ax.fill_between(prof["eps"], prof["curve"]["certified"], prof["curve"]["exact"],
                        color="C3", alpha=0.12, linewidth=0)  # fmt: skip
        ax.set_title(f"{model} ({dataset})")
        ax.set_xlabel("L-inf eps (pixels)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    return _finish_grid(fig, axes, len(panels), suptitle, path)


def plot_eta_bars(
    groups: dict[str, dict[str, Any]], path: str | Path, suptitle: str = ""
) -> list[Path]:
    """Omari et al. Fig. 3: clean and adversarial accuracy per eta, bars with error bars.

    ``groups``: dataset -> {``etas``: labels, ``clean``/``adv``: {``mean``, ``err``}}."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, (name, g) in zip(axes.flat, groups.items(), strict=True):
        pos = list(range(len(g["etas"])))
        width = 0.38
        for shift, key, label, color in (
            (-width / 2, "clean", "ClnAcc", "C0"),
            (width / 2, "adv", "AdvAcc", "C3"),
        ):
            ax.bar([p + shift for p in pos], g[key]["mean"], width, yerr=g[key]["err"], capsize=3,
                   color=color, alpha=0.8, label=label)  # fmt: skip
        ax.set_xticks(pos, g["etas"])
        ax.set_xlabel("proportion eta")
        ax.set_ylabel("clustering accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower left")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pca_panels(
    panels: list[dict[str, Any]], path: str | Path, suptitle: str = ""
) -> list[Path]:
    """2-D PCA scatter plots: each panel ``title``, ``xy`` (n, 2), ``labels`` (n,) cluster ids,
    ``injected`` (n,) bool (drawn as black crosses) and ``centers`` (k, 2)."""
    n_cols = min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 3.3 * n_rows), squeeze=False)
    for ax, p in zip(axes.flat, panels, strict=False):
        orig = ~p["injected"]
        ax.scatter(
            p["xy"][orig, 0], p["xy"][orig, 1], c=p["labels"][orig], cmap="tab10", s=9, alpha=0.7
        )
        if p["injected"].any():
            ax.scatter(
                p["xy"][~orig, 0], p["xy"][~orig, 1], marker="x", c="black", s=16, label="injected"
            )
            ax.legend(loc="best", fontsize=7)
        ax.scatter(
            p["centers"][:, 0], p["centers"][:, 1], marker="*", c="red", s=140, edgecolors="white"
        )
        ax.set_title(p["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish_grid(fig, axes, len(panels), suptitle, path)


def plot_sweep(
    curves: dict[str, dict[str, Any]], path: str | Path, xlabel: str, ylabel: str, title: str
) -> list[Path]:
    """Lines with confidence bands: name -> {``x``, ``mean``, ``ci``, optional ``mark``}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, c) in enumerate(curves.items()):
        mean = [float(v) for v in c["mean"]]
        ci = [float(v) for v in c["ci"]]
        ax.plot(c["x"], mean, "o-", color=f"C{i}", label=name)
        ax.fill_between(c["x"], [m - h for m, h in zip(mean, ci, strict=True)],
                        [m + h for m, h in zip(mean, ci, strict=True)], color=f"C{i}", alpha=0.2)  # fmt: skip
        if c.get("mark") is not None:
            ax.axvline(c["mark"], color=f"C{i}", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_heatmap(
    matrix: Any, rows: list[str], cols: list[str], path: str | Path, title: str, fmt: str = "{:.1f}"
) -> list[Path]:
    """Annotated heat map (rows x cols), diverging colours centred on 0."""
    import numpy as np

    values = np.asarray(matrix, dtype=float)
    bound = float(np.nanmax(np.abs(values))) or 1.0
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.5 * len(rows) + 1.8))
    im = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rank_pmfs(
    panels: list[dict[str, Any]], path: str | Path, suptitle: str = ""
) -> list[Path]:
    """Mygdalis et al. Fig. 4: per panel (``title``, ``pmfs``: attack -> p(1..C)) grouped bars of
    P(r(j) = y), the probability that the true label sits at rank position j."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False)
    for ax, p in zip(axes.flat, panels, strict=True):
        names = list(p["pmfs"])
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            pmf = p["pmfs"][name]
            pos = [j + 1 + (i - (len(names) - 1) / 2) * width for j in range(len(pmf))]
            ax.bar(pos, pmf, width, color=f"C{i}", label=name)
        ax.set_xticks(range(1, len(p["pmfs"][names[0]]) + 1) if names else [])
        ax.set_xlabel("rank position j")
        ax.set_ylabel("P(r(j) = y)")
        ax.set_ylim(0, 1)
        ax.set_title(p["title"])
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    return _finish_grid(fig, axes, len(panels), suptitle, path)


def plot_adversarial_examples(
    rows: dict[str, Any],
    path: str | Path,
    suptitle: str = "",
    bounds: tuple[float, float] = (0.0, 1.0),
    captions: dict[str, list[str]] | None = None,
) -> list[Path]:
    """A grid of images: one row per name in ``rows`` (arrays (n, C, H, W) with C = 1, grey,
    or C = 3, colour, inside ``bounds``), ``captions`` (name -> one string per image) under
    them."""
    lo, hi = bounds
    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.2 * n_cols + 1, 1.25 * len(rows)),
                             squeeze=False)  # fmt: skip
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            image = (images[c] - lo) / (hi - lo)
            if image.shape[0] == 3:
                ax.imshow(image.transpose(1, 2, 0).clip(0, 1))
            else:
                ax.imshow(image.reshape(image.shape[-2:]), cmap="gray", vmin=0, vmax=1)
            if captions and name in captions:
                ax.set_xlabel(captions[name][c], fontsize=7, labelpad=1)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_value_grids(
    panels: list[dict[str, Any]], path: str | Path, ylabel: str, xlabel: str, suptitle: str = "",
    vmin: float | None = None, vmax: float | None = None,
) -> list[Path]:  # fmt: skip
    """Annotated heat maps side by side, one per panel (``title``, ``matrix``, ``rows``,
    ``cols``), on one sequential colour scale [vmin, vmax]."""
    import numpy as np

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    im = None
    for ax, p in zip(axes.flat, panels, strict=True):
        values = np.asarray(p["matrix"], dtype=float)
        im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(p["cols"])), p["cols"])
        ax.set_yticks(range(len(p["rows"])), p["rows"])
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] < ((vmin or 0) + (vmax or 1)) / 2 else "black")  # fmt: skip
        ax.set_title(p["title"])
        ax.set_xlabel(xlabel)
    axes.flat[0].set_ylabel(ylabel)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat))
    if suptitle:
        fig.suptitle(suptitle, y=1.02)
    return save_figure(fig, path)


# curve key -> its label in ``plot_attack_curves`` (and in the tables beside the figure)
CERTIFIED_LABELS = {
    "certified": "certified (IBP), lower bound",
    "certified_linear": "certified (linear bounds), lower bound",
}


def plot_attack_curves(
    curve: dict[str, Any],
    norm: str,
    path: str | Path,
    title: str,
    certified_label: str = CERTIFIED_LABELS["certified"],
    units: str = "input units",
) -> list[Path]:
    """Robust accuracy against the budget in one norm (``units``: what eps counts, for the
    axis label): one line per attack (a budgeted attack
    at its budgets, a minimisation attack read off its distances) and the worst case over all
    of them (each an upper bound on the true robust accuracy), and where given the certified
    accuracy (a lower bound).

    ``curve``: {``eps``: budgets of the worst case, ``worst_case``: accuracies (%),
    ``attacks``: name -> {``eps``, ``accuracy``, and for a minimisation attack ``dense``: the
    same at many budgets}, optionally ``certified``, ``certified_linear`` (linear bounds) and
    ``verified`` (proved by mixed-integer programming): {``eps``, ``accuracy``}}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, points) in enumerate(curve["attacks"].items()):
        if "dense" in points:  # a minimisation attack: its whole curve, the grid marked
            ax.plot(points["dense"]["eps"], points["dense"]["accuracy"], "-", color=f"C{i}")
            ax.plot(points["eps"], points["accuracy"], "o", color=f"C{i}", label=name, markersize=4)
        else:
            ax.plot(
                points["eps"], points["accuracy"], "o--", color=f"C{i}", label=name, markersize=4
            )
    ax.plot(curve["eps"], curve["worst_case"], "s:", color="black", label="worst case", linewidth=2)
    if "certified" in curve:
        ax.plot(curve["certified"]["eps"], curve["certified"]["accuracy"], "^-", color="0.4",
                label=certified_label, linewidth=2)  # fmt: skip
    if "certified_linear" in curve:
        ax.plot(curve["certified_linear"]["eps"], curve["certified_linear"]["accuracy"], "v-",
                color="0.65", label=CERTIFIED_LABELS["certified_linear"], linewidth=2)  # fmt: skip
    if "verified" in curve:
        ax.plot(curve["verified"]["eps"], curve["verified"]["accuracy"], "D-", color="darkred",
                label="verified (MILP), exact but for unknowns", linewidth=2)  # fmt: skip
    ax.set_xlabel(f"{norm} budget eps ({units})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
