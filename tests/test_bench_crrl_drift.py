import json
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_crrl_drift  # noqa: E402


def write(folder: Path, weights: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"q_proj.weight": weights[:2].astype(np.float32), "v_proj.weight": weights[2:].astype(np.float32)},
              str(folder / bench_crrl_drift.WEIGHTS))


def test_drift_measures_moves_and_their_cosine_to_the_supervised_move(tmp_path, capsys):
    start = np.array([3.0, 4.0, 0.0, 0.0])
    write(tmp_path / "lrcl", start)
    write(tmp_path / "cooc_sft", start + [1.0, 0.0, 0.0, 0.0])
    write(tmp_path / "crrl" / "checkpoint-10", start + [0.0, 2.0, 0.0, 0.0])  # orthogonal to the SFT move
    write(tmp_path / "crrl" / "checkpoint-2", start + [1.0, 1.0, 0.0, 0.0])
    write(tmp_path / "crrl", start + [-2.0, 0.0, 0.0, 0.0])                   # opposite to it
    write(tmp_path / "a", start + [0.0, 0.0, 3.0, 0.0])
    write(tmp_path / "b", start + [0.0, 0.0, 1.0, 1.0])
    result = bench_crrl_drift.main(["--run", str(tmp_path), "--json", "--others", str(tmp_path / "a"),
                                    str(tmp_path / "b")])
    assert json.loads(capsys.readouterr().out) == result
    assert result["start_norm"] == pytest.approx(5.0) and result["cooc_sft_move"] == pytest.approx(1.0)
    assert result["crrl_move"] == pytest.approx(2.0) and result["crrl_cosine_to_cooc_sft"] == pytest.approx(-1.0)
    assert [row["step"] for row in result["crrl_checkpoints"]] == [2, 10]   # numeric order, not text order
    assert result["crrl_checkpoints"][0]["cosine_to_cooc_sft"] == pytest.approx(2 ** -0.5)
    assert result["crrl_checkpoints"][1] == {"step": 10, "move": pytest.approx(2.0), "cosine_to_cooc_sft": 0.0}
    assert [row["move"] for row in result["others"]] == [pytest.approx(3.0), pytest.approx(2 ** 0.5)]
    assert [row["cosine_to_cooc_sft"] for row in result["others"]] == [0.0, 0.0]
    assert result["pairwise_cosines"] == [{"a": str(tmp_path / "a"), "b": str(tmp_path / "b"),
                                           "cosine": pytest.approx(2 ** -0.5)}]
