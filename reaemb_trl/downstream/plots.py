"""PNG figures for `compare`: NDCG@10 by item group, and a 2-D PCA of each embedding table."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

BAR_GROUPS = ("overall", "tail_items", "popular_items")


def plot_ndcg_by_group(summary: dict, path: str | os.PathLike, metric: str = "NDCG@10",
                       groups: Sequence[str] = BAR_GROUPS) -> None:
    """One panel per (protocol, recommender); per run, bars of `metric` (mean, std) for each of `groups`
    (default overall / tail / popular)."""
    panels = sorted({(row["protocol"], row["recommender"]) for row in summary.values()})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    width = 0.8 / len(groups)
    for ax, (protocol, recommender) in zip(axes[0], panels):
        rows = [row for row in summary.values() if row["protocol"] == protocol and row["recommender"] == recommender]
        x = np.arange(len(rows))
        for i, group in enumerate(groups):
            means = [row["metrics"][group][metric]["mean"] or 0.0 for row in rows]
            stds = [row["metrics"][group][metric]["std"] or 0.0 for row in rows]
            ax.bar(x + (i - (len(groups) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                   label=group.replace("_", " "))
        ax.set_xticks(x, [row["run"] for row in rows], rotation=20, ha="right")
        ax.set_title(f"{recommender} · {protocol}")
        ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # explicit: an atomic write's temporary name has no .png suffix
    plt.close(fig)


def plot_projection(table: np.ndarray, popularity: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """PCA of the item rows (padding row left out), coloured by training popularity on a log scale."""
    points = PCA(n_components=2, random_state=0).fit_transform(table[1:])
    counts = popularity[1:] + 1  # +1 keeps never-seen items on the log scale
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    order = np.argsort(counts)  # popular items drawn last, on top
    dots = ax.scatter(points[order, 0], points[order, 1], c=counts[order], s=6, cmap="viridis",
                      norm=LogNorm(vmin=1, vmax=max(int(counts.max()), 2)))
    fig.colorbar(dots, ax=ax, label="training interactions + 1")
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
