"""The training-curves PNG: one panel per title with logged keys, reference lines, nothing for an empty history."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reaemb_trl.curves import plot_log_history  # noqa: E402

HISTORY = [{"step": step, "loss": 2.0 / step} for step in range(1, 11)] + [
    {"step": 0, "eval_reward": 0.33}, {"step": 10, "eval_reward": 0.36}]


def test_panels_with_logged_keys_only(tmp_path, monkeypatch):
    drawn = []
    original = plt.subplots
    monkeypatch.setattr(plt, "subplots", lambda *a, **k: drawn.append(a) or original(*a, **k))
    path = tmp_path / "curves.png"
    panels = {"loss": ["loss"], "reward": ["eval_reward", "never_logged"], "empty": ["never_logged"]}
    assert plot_log_history(HISTORY, panels, path, {"reward": {"random ranking": 0.30}})
    assert drawn == [(1, 2)]  # the panel with no logged key is dropped
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_nothing_logged_writes_nothing(tmp_path):
    assert not plot_log_history(HISTORY, {"x": ["not_there"]}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
