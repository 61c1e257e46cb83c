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


def test_reward_kwargs_reach_the_reward_from_a_recipe_or_the_command_line(tmp_path):
    """`cooc_softmax`'s temperature used to be unreachable from a recipe; now each reward's own parameters are set
    per reward, and a parameter it does not have (a typo) is refused instead of vanishing into **kwargs."""
    from reaemb_trl.crrl import CRRLConfig
    from reaemb_trl.errors import InputError
    from reaemb_trl.recipe import parse_recipe
    from reaemb_trl.rewards import bind_reward, get_reward

    scores = torch.tensor([[0.9, 0.2, 0.4], [0.1, 0.3, 0.8]])
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    softmax = get_reward("cooc_softmax")
    hot = bind_reward("cooc_softmax", {"temperature": 1.0})
    assert hot.__name__ == "cooc_softmax"
    assert torch.allclose(hot(scores, weights), torch.log_softmax(scores, dim=1)[[0, 1], [0, 1]])
    assert not torch.allclose(hot(scores, weights), softmax(scores, weights))

    recipe = tmp_path / "crrl.yaml"
    recipe.write_text("rewards: [cooc_softmax]\nreward_kwargs: {cooc_softmax: {temperature: 1.0}}\n"
                      f"output_dir: {tmp_path / 'out'}\nuse_cpu: true\n")
    command_line = ["--rewards", "cooc_softmax", "--output_dir", str(tmp_path / "out"), "--use_cpu",
                    "--reward_kwargs", '{"cooc_softmax": {"temperature": 1.0}}']
    for config in (parse_recipe(CRRLConfig, ["--config", str(recipe)]), parse_recipe(CRRLConfig, command_line)):
        assert torch.allclose(config.reward("cooc_softmax")(scores, weights), hot(scores, weights))
        assert config.reward("cooc_ndcg") is get_reward("cooc_ndcg")  # no kwargs: the registered function itself

    with pytest.raises(InputError, match="'cooc_softmax' has no parameter 'temprature'"):
        CRRLConfig(output_dir=str(tmp_path), use_cpu=True, rewards=["cooc_softmax"],
                   reward_kwargs={"cooc_softmax": {"temprature": 0.5}})
    with pytest.raises(InputError, match="names 'cooc_mrr', which is neither in rewards"):
        CRRLConfig(output_dir=str(tmp_path), use_cpu=True, reward_kwargs={"cooc_mrr": {}})


def test_the_readme_reward_example_runs_as_written(tmp_path, monkeypatch):
    """The README's `my_rewards.py` and its recipe lines, taken from the README itself."""
    import re
    from pathlib import Path

    import yaml

    from reaemb_trl.crrl import CRRLConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    module = re.search(r"```python\n(# my_rewards\.py\n.*?)```", readme, re.S).group(1)
    recipe = re.search(r"```yaml\n(rewards: \[cooc_ndcg, my_rewards:top_k_hit\].*?)```", readme, re.S).group(1)
    (tmp_path / "my_rewards.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = CRRLConfig(output_dir=str(tmp_path / "out"), use_cpu=True, **yaml.safe_load(recipe))
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])  # the positive (column 0) ranks last of 7
    weights = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]])
    assert config.reward("my_rewards:top_k_hit")(scores, weights).item() == 0.0  # k = 5 from reward_kwargs
    scores[0, 0] = 0.65  # now 4th
    assert config.reward("my_rewards:top_k_hit")(scores, weights).item() == 1.0
    assert get_reward("my_rewards:top_k_hit")(scores, weights).item() == 0.0  # the default k = 3
