import math
import textwrap

import pytest
import torch

from reaemb_trl.errors import InputError
from reaemb_trl.rewards import available_rewards, get_reward, register_reward
from reaemb_trl.rewards.builtin import candidate_ranks

# One anchor, five candidates. Row 0: one positive (column 2, ranked second). Row 1: two positives, columns 0 and 3
# with count shares 0.75 / 0.25, ranked first and fourth.
SCORES = torch.tensor([[0.9, 0.1, 0.5, 0.3, -0.2], [0.8, 0.6, 0.7, 0.2, 0.1]])
WEIGHTS = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.75, 0.0, 0.0, 0.25, 0.0]])


def gain(rank):
    return 1.0 / (1.0 + math.log2(rank + 2))


def test_candidate_ranks_count_higher_scores():
    assert candidate_ranks(SCORES).tolist() == [[0, 3, 1, 2, 4], [0, 2, 1, 3, 4]]
    assert candidate_ranks(torch.tensor([[0.5, 0.5, 0.1]])).tolist() == [[0, 0, 2]]


def test_builtin_rewards_exact_values():
    ndcg = get_reward("cooc_ndcg")(SCORES, WEIGHTS)
    assert ndcg.tolist() == pytest.approx([gain(1), gain(0)])  # row 1 scores its most co-occurring positive only
    weighted = get_reward("cooc_weighted_ndcg")(SCORES, WEIGHTS)
    assert weighted.tolist() == pytest.approx([gain(1), 0.75 * gain(0) + 0.25 * gain(3)])
    mrr = get_reward("cooc_mrr")(SCORES, WEIGHTS)
    assert mrr.tolist() == pytest.approx([1 / 2, 0.75 / 1 + 0.25 / 4])
    softmax = get_reward("cooc_softmax")(SCORES, WEIGHTS, temperature=0.5)
    log_p = torch.log_softmax(SCORES / 0.5, dim=1)
    expected = [log_p[0, 2].item(), 0.75 * log_p[1, 0].item() + 0.25 * log_p[1, 3].item()]
    assert softmax.tolist() == pytest.approx(expected)
    assert gain(0) == 0.5


def test_row_without_positive_scores_zero_for_rank_rewards():
    no_positive = torch.zeros(1, 5)
    for name in ("cooc_ndcg", "cooc_weighted_ndcg", "cooc_mrr"):
        assert get_reward(name)(SCORES[:1], no_positive).item() == 0.0


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert {"cooc_ndcg", "cooc_weighted_ndcg", "cooc_mrr", "cooc_softmax"} <= set(available_rewards())
    with pytest.raises(InputError, match=r"unknown reward 'nope'.*cooc_mrr.*cooc_ndcg"):
        get_reward("nope")


def test_register_reward_adds_a_name_once():
    @register_reward("test_rewards_best_score")
    def best_score(scores, positive_weights, **kwargs):
        return scores.max(dim=1).values

    assert get_reward("test_rewards_best_score") is best_score
    assert get_reward("test_rewards_best_score")(SCORES, WEIGHTS).tolist() == pytest.approx([0.9, 0.8])
    with pytest.raises(InputError, match="already registered"):
        register_reward("test_rewards_best_score")(lambda scores, positive_weights, **kw: scores[:, 0])


def test_dotted_path_and_entry_point(tmp_path, monkeypatch):
    (tmp_path / "user_rewards_pkg.py").write_text(textwrap.dedent("""
        def first_candidate(scores, positive_weights, **kwargs):
            return scores[:, 0]
    """))
    dist = tmp_path / "user_rewards_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-rewards-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reaemb_trl.rewards]\nfirst_cand = user_rewards_pkg:first_candidate\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    by_path = get_reward("user_rewards_pkg:first_candidate")
    assert by_path(SCORES, WEIGHTS).tolist() == pytest.approx([0.9, 0.8])
    assert "first_cand" in available_rewards()
    assert get_reward("first_cand") is by_path
    with pytest.raises(InputError, match="cannot import module 'no_such_module_xyz'"):
        get_reward("no_such_module_xyz:fn")
    with pytest.raises(InputError, match="has no callable 'missing'"):
        get_reward("user_rewards_pkg:missing")
