import shutil

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from reaemb_trl.crrl.reward_model import CooccurrenceRewardModel
from reaemb_trl.errors import InputError
from reaemb_trl.rewards import get_reward

# Items 1..8: 1-2 (3 times), 1-3 (once), 2-3 (twice), 4-5 (once); 6, 7, 8 co-occur with nothing.
PAIRS = {(1, 2): 3, (1, 3): 1, (2, 3): 2, (4, 5): 1}
TEXTS = [""] + [f"item {i}" for i in range(1, 9)]


def cooccurrence():
    rows, cols, data = [], [], []
    for (a, b), count in PAIRS.items():
        rows += [a, b]
        cols += [b, a]
        data += [count, count]
    return sp.csr_matrix((data, (rows, cols)), shape=(9, 9))


class TableEncoder:
    """Embeds "item i" as row i of a fixed table and records which items each call embedded."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def __call__(self, texts):
        ids = [int(text.split()[1]) for text in texts]
        self.calls.append(sorted(ids))
        return self.table[ids]


def test_positive_weights_and_cosine_scores_are_exact():
    model = CooccurrenceRewardModel(cooccurrence(), num_positives=2, num_candidates=4, item_texts=TEXTS, seed=3)
    table = torch.randn(9, 5, generator=torch.Generator().manual_seed(0))
    embeddings = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    scored = model.score(torch.tensor([1, 4]), embeddings, TableEncoder(table))

    ids = scored.candidate_ids
    assert ids[0, :2].tolist() == [2, 3] and ids[1, 0].item() == 5
    torch.testing.assert_close(scored.positive_weights, torch.tensor([[0.75, 0.25, 0, 0], [1.0, 0, 0, 0]]))
    expected = torch.nn.functional.cosine_similarity(embeddings[:, None, :], table[ids], dim=-1)
    torch.testing.assert_close(scored.scores, expected)
    assert scored.has_positive.tolist() == [True, True]

    dot = CooccurrenceRewardModel(cooccurrence(), num_positives=2, num_candidates=4, item_texts=TEXTS, seed=3,
                                  similarity="dot")
    scored_dot = dot.score(torch.tensor([1, 4]), embeddings, TableEncoder(table))
    torch.testing.assert_close(scored_dot.scores, torch.einsum("nd,nkd->nk", embeddings, table[ids]))


def test_items_without_cooccurring_item_are_flagged_not_fatal():
    model = CooccurrenceRewardModel(cooccurrence(), num_candidates=3, item_texts=TEXTS)
    assert model.items_with_positives().tolist() == [1, 2, 3, 4, 5]
    scored = model.score(torch.tensor([6, 1]), torch.randn(2, 4), TableEncoder(torch.randn(9, 4)))
    assert scored.has_positive.tolist() == [False, True]
    assert scored.positive_weights[0].sum().item() == 0.0
    train, heldout = model.split_items(2, seed=0)
    assert len(heldout) == 2 and sorted(np.concatenate([train, heldout]).tolist()) == [1, 2, 3, 4, 5]


def test_negatives_are_redrawn_each_epoch_and_never_cooccur():
    model = CooccurrenceRewardModel(cooccurrence(), num_candidates=4, item_texts=TEXTS, seed=0)
    first, second = model.candidates(0).item_ids.copy(), model.candidates(1).item_ids.copy()
    assert not np.array_equal(first[1:, 1:], second[1:, 1:])
    dense = cooccurrence().toarray()
    for row in range(1, 9):
        negatives = first[row, model.candidates(0).num_positives[row]:]
        assert all(dense[row, n] == 0 and n != row for n in negatives)


def test_candidate_cache_refreshes_on_schedule():
    table = torch.randn(9, 4)
    every_step = CooccurrenceRewardModel(cooccurrence(), num_candidates=3, item_texts=TEXTS, refresh_every=1)
    encoder = TableEncoder(table)
    for step in range(3):
        every_step.score(torch.tensor([1]), torch.randn(1, 4), encoder, step=step)
    assert len(encoder.calls) == 3  # refresh_every=1 re-embeds the candidates at every step

    scheduled = CooccurrenceRewardModel(cooccurrence(), num_candidates=3, item_texts=TEXTS, refresh_every=3)
    encoder = TableEncoder(table)
    for step in range(4):
        scheduled.score(torch.tensor([1]), torch.randn(1, 4), encoder, step=step)
    candidates = sorted(scheduled.candidates(0).item_ids[1].tolist())
    assert encoder.calls == [candidates, candidates]  # steps 0 and 3 only

    # A stale cache scores against old embeddings; a refresh picks up the new ones.
    encoder.table = -table
    stale = scheduled.score(torch.tensor([1]), table[1:2], encoder, step=4)
    fresh = scheduled.score(torch.tensor([1]), table[1:2], encoder, step=6)
    torch.testing.assert_close(fresh.scores, -stale.scores)


def test_evaluate_is_mean_reward_of_fresh_noise_free_embeddings():
    table = torch.randn(9, 6, generator=torch.Generator().manual_seed(2))
    model = CooccurrenceRewardModel(cooccurrence(), num_candidates=3, item_texts=TEXTS, seed=1)
    ndcg = get_reward("cooc_ndcg")
    value = model.evaluate([1, 2, 6], TableEncoder(table), ndcg)
    scored = model.score(torch.tensor([1, 2]), table[[1, 2]], TableEncoder(table))
    assert value == pytest.approx(ndcg(scored.scores, scored.positive_weights).mean().item())  # item 6 skipped
    # Every item's own positive embedded as the item itself: rank 0 everywhere.
    perfect = table.clone()
    perfect[2] = perfect[1]
    perfect[3] = perfect[1]
    assert model.evaluate([1], TableEncoder(perfect), ndcg) == pytest.approx(0.5)


def test_prepared_dataset_source(prepared_sample, tmp_path):
    model = CooccurrenceRewardModel(prepared_sample, num_candidates=10)
    assert model.item_texts[1] and model.num_items == len(model.item_texts) - 1
    assert 0 < len(model.items_with_positives()) <= model.num_items

    copy = tmp_path / "no_cooc"
    shutil.copytree(prepared_sample, copy)
    (copy / "cooccurrence.npz").unlink()
    with pytest.raises(InputError, match="cooccurrence.npz"):
        CooccurrenceRewardModel(copy)


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="similarity"):
        CooccurrenceRewardModel(cooccurrence(), similarity="l2", item_texts=TEXTS)
    with pytest.raises(InputError, match="num_positives"):
        CooccurrenceRewardModel(cooccurrence(), num_positives=3, num_candidates=3, item_texts=TEXTS)
    with pytest.raises(InputError, match="refresh_every"):
        CooccurrenceRewardModel(cooccurrence(), refresh_every=0, item_texts=TEXTS)


def test_hard_negatives_are_the_closest_never_cooccurring_items_of_the_current_table():
    # Item 4's table row sits next to items 7 and 8 and far from 6; 4 co-occurs with 5 only.
    table = torch.zeros(9, 3)
    table[1:] = torch.tensor([[0, 0, 1.0]] * 8)
    table[4], table[5] = torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0])
    table[7], table[8], table[6] = torch.tensor([1.0, 0.1, 0]), torch.tensor([1.0, 0.2, 0]), torch.tensor([-1.0, 0, 0])
    model = CooccurrenceRewardModel(cooccurrence(), num_candidates=4, item_texts=TEXTS, seed=0,
                                    num_hard_negatives=2)
    encoder = TableEncoder(table)
    scored = model.score(torch.tensor([4, 4, 1]), torch.randn(3, 3), encoder, step=0)
    ids = scored.candidate_ids
    assert ids[0].tolist() == ids[1].tolist() and ids[0, 0] == 5
    random_negative = ids[0, 1].item()  # the kept random slot; hard ones are the closest of the rest
    closest = [i for i in (7, 8, 1, 2, 3) if i != random_negative][:2]  # 1, 2, 3 are orthogonal, 6 opposite
    assert ids[0, 2:].tolist() == closest
    assert len(set(ids[0].tolist())) == 4 and 4 not in ids[0].tolist()
    dense = cooccurrence().toarray()
    assert all(dense[1, n] == 0 and n != 1 for n in ids[2, 1:].tolist()) and len(set(ids[2].tolist())) == 4
    assert encoder.calls[0] == list(range(1, 9))  # the whole table is embedded once, then cached

    # The table moves: after a refresh the hard negatives follow the current model.
    moved = table.clone()
    moved[7], moved[6] = torch.tensor([-1.0, 0, 0]), torch.tensor([1.0, 0.05, 0])
    ids = model.score(torch.tensor([4]), torch.randn(1, 3), TableEncoder(moved), step=1).candidate_ids
    assert ids[0, 2:].tolist() == [i for i in (6, 8, 1, 2, 3) if i != random_negative][:2]
    with pytest.raises(InputError, match="num_hard_negatives must be in 0..3"):
        CooccurrenceRewardModel(cooccurrence(), num_candidates=4, item_texts=TEXTS, num_hard_negatives=4)


def test_reward_bounds_are_the_random_floor_and_the_perfect_ranking():
    model = CooccurrenceRewardModel(cooccurrence(), num_candidates=4, item_texts=TEXTS, seed=0)
    floor, ceiling = model.reward_bounds([1, 2, 3, 4, 5, 6], get_reward("cooc_ndcg"), draws=2000)
    expected_floor = np.mean([1 / (1 + np.log2(rank + 2)) for rank in range(4)])
    assert floor == pytest.approx(expected_floor, abs=0.01) and ceiling == pytest.approx(0.5)
    soft_floor, soft_ceiling = model.reward_bounds([1, 2], get_reward("cooc_softmax"))
    assert soft_floor < soft_ceiling <= 0  # log-softmax: 0 only with an infinite margin


def test_recipe_keys_choose_the_positive_rule_and_the_hard_negatives(prepared_sample, tmp_path):
    from reaemb_trl.crrl import CRRLConfig
    from reaemb_trl.crrl.run import build_reward_model
    from reaemb_trl.recipe import parse_recipe

    recipe = tmp_path / "crrl.yaml"
    recipe.write_text(f"dataset_dir: {prepared_sample}\noutput_dir: {tmp_path / 'out'}\npositive_rule: pmi\n"
                      "num_hard_negatives: 4\nnum_positives: 2\nuse_cpu: true\n")
    args = parse_recipe(CRRLConfig, ["--config", str(recipe)], prog="reaemb-trl crrl")
    model = build_reward_model(args)
    assert (model.positive_rule, model.num_hard_negatives, model.num_positives) == ("pmi", 4, 2)
    # PMI's default minimum count of 2: only items with a pair seen twice have a positive (1,853 of 2,420).
    assert len(model.items_with_positives()) == 1853
    for key, value, message in (("positive_rule", "jaccard", "positive_rule='jaccard' is not one of"),
                                ("num_hard_negatives", "9", "num_hard_negatives must be in 0..8"),
                                ("positive_min_count", "0", "positive_min_count must be >= 1")):
        with pytest.raises(InputError, match=message):
            parse_recipe(CRRLConfig, ["--config", str(recipe), f"--{key}", value], prog="reaemb-trl crrl")
