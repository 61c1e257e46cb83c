"""The gradient benchmark on a tiny decoder: one learning-rate-0 CRRL step per G x noise draw (plain and mirrored),
each update's cosine to the exact ascent direction of the mean noise-free training reward."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import prepared_sample_subset

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import save_tiny_decoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_crrl_gradient  # noqa: E402


def test_updates_are_measured_against_the_exact_ascent(tmp_path, capsys):
    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama", hidden_size=32, num_layers=2)
    embedder = LatentReasoningEmbedder.from_backbone(str(backbone), LoadingOptions(pooling="thought", max_length=48))
    embedder.save_pretrained(tmp_path / "lrcl")
    parameters = sum(p.numel() for p in embedder.thought_module.parameters())
    data = prepared_sample_subset(tmp_path, 120)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"backbone": str(backbone), "seed": 3,
                                      "crrl": {"rewards": ["cooc_softmax"], "sigma": 0.05, "eval_items": 16,
                                               "report_to": "none", "scale_rewards": "none"}}))
    result = bench_crrl_gradient.main(["--json", "--recipe", str(recipe), "--lrcl", str(tmp_path / "lrcl"),
                                       "--data", str(data), "--items", "4", "--generations", "4", "64",
                                       "--draws", "2", "--antithetic", "--output", str(tmp_path / "scratch")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["parameters"] == parameters and result["random_direction_cosine"] == pytest.approx(parameters ** -0.5)
    runs = {(row["generations"], row["antithetic"], row["draw"]): row["cosine_to_exact_ascent"]
            for row in result["updates"]}
    assert set(runs) == {(g, mirrored, draw) for g in (4, 64) for mirrored in (False, True) for draw in (0, 1)}
    assert set(result["draw_agreement"]) == {"4", "4 antithetic", "64", "64 antithetic"}
    assert all(-1 <= value <= 1 for value in runs.values())
    assert runs[4, False, 0] != runs[4, True, 0]  # the same seed, other (mirrored) samples
    # 64 samples per item estimate the gradient well enough to point uphill, mirrored or not
    assert min(runs[64, mirrored, draw] for mirrored in (False, True) for draw in (0, 1)) > 0.3, runs
