"""Padding and windowing of item sequences, shared by the trainer (evaluation batches) and the models (training
rows)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pad_right(rows: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's last `width` entries, left-aligned and zero-padded on the right; also return lengths."""
    lengths = np.array([min(len(r), width) for r in rows], dtype=np.int64)
    padded = np.zeros((len(rows), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
    for i, (row, n) in enumerate(zip(rows, lengths)):
        padded[i, :n] = row[len(row) - n:]
    return padded, lengths


def end_aligned_windows(seq: np.ndarray, width: int, step: int) -> list[np.ndarray]:
    """Windows of at most `width` items ending at len(seq), len(seq) - step, ...

    With step = width - 1 neighbouring windows share one item, so each item after the first is a next-item
    target in exactly one window; with step = width they tile the sequence.
    """
    return [seq[max(0, end - width): end] for end in range(len(seq), width - step, -step)]
