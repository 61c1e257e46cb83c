"""Training curves of a run as one PNG, read from a Trainer's `log_history` (what `trainer_state.json` holds)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence


def plot_log_history(log_history: Sequence[Mapping], panels: Mapping[str, Sequence[str]],
                     path: str | os.PathLike,
                     reference_lines: Mapping[str, Mapping[str, float]] | None = None) -> bool:
    """One panel per title in `panels`, each plotting its logged keys against the step (keys never logged are left
    out; a panel with none is dropped). `reference_lines` {panel title: {label: value}} adds dashed horizontal lines,
    such as a reward's random-ranking floor. Returns False (and writes nothing) when no key was logged at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {key: [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
              for keys in panels.values() for key in keys}
    shown = {title: [key for key in keys if series[key]] for title, keys in panels.items()}
    shown = {title: keys for title, keys in shown.items() if keys}
    if not shown:
        return False
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], shown.items()):
        for key in keys:
            steps, values = zip(*series[key])
            ax.plot(steps, values, "o-" if len(steps) < 12 else "-", label=key, linewidth=1, markersize=3)
        for label, value in (reference_lines or {}).get(title, {}).items():
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
