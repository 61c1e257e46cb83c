"""The reward-signal benchmark on a small prepared subset of the bundled sample, with a tiny decoder's table."""

import json
import sys
from pathlib import Path

import numpy as np
from conftest import prepared_sample_subset

from reaemb_trl.data import PreparedDataset, sample_candidates
from reaemb_trl.data.association import POSITIVE_RULES
from reaemb_trl.testing import save_tiny_decoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_reward_signal  # noqa: E402


def test_each_rule_reports_its_statistics_and_how_the_untrained_table_ranks_its_positives(tmp_path, capsys):
    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama", hidden_size=32, num_layers=2)
    data = prepared_sample_subset(tmp_path, 60)
    result = bench_reward_signal.main(["--json", "--data", str(data), "--backbone", str(backbone), "--seeds", "2"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["cooc_ndcg_random_floor"] < 0.31 and result["cooc_ndcg_ceiling"] == 0.5
    dataset = PreparedDataset.load(data)
    for rule in POSITIVE_RULES:
        row = result["rules"][rule]
        assert row == {**row, **dataset.metadata["reward_signal"]["rules"][rule]}  # prepare's statistics, unchanged
        with_positive = int(np.count_nonzero(sample_candidates(dataset.cooccurrence, rule=rule).num_positives))
        assert row["items"] == with_positive > 0
        assert 0 <= row["positive_ranked_first"] <= 1 and len(row["cooc_ndcg_per_seed"]) == 2
        assert row["cooc_ndcg"] == np.mean(row["cooc_ndcg_per_seed"])
