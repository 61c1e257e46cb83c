"""Recommender training on hand-built sequences: leakage, checkpoint selection, item tables, every recommender."""

import numpy as np
import pytest
import torch

from reaemb_trl.downstream import RECOMMENDERS, DownstreamConfig, DownstreamTrainer
from reaemb_trl.downstream.models import build_model

NUM_COMMON = 30
# every registered recommender that trains on an item table (pop reads none and trains nothing)
TABLE_RECOMMENDERS = [name for name, entry in RECOMMENDERS.items() if entry.uses_table]


def cyclic_dataset(num_users=100, seed=0):
    """Users walk the cycle 1 -> 2 -> ... -> 30 -> 1; each user's last (test) item is unique to that user.

    A trainer that leaked test items into training would have to put them in its training arrays, and the
    validation item (the next step of the walk) is learnable, so validation has a signal to pick a checkpoint.
    """
    rng = np.random.default_rng(seed)
    sequences = []
    for user in range(num_users):
        start, length = rng.integers(0, NUM_COMMON), rng.integers(8, 20)
        walk = (start + np.arange(length)) % NUM_COMMON + 1
        sequences.append(np.append(walk, NUM_COMMON + 1 + user))
    return sequences, NUM_COMMON + num_users


def small_config(**overrides):
    transformer = {"num_heads": 2, "inner_size": 64}
    values = dict(hidden_size=32, max_items=16, epochs=12, patience=3, batch_size=32, dropout=0.1,
                  learning_rate=5e-3, show_progress=False, protocol="full",
                  recommender_kwargs={"sasrec": transformer, "bert4rec": transformer})
    values.update(overrides)
    return DownstreamConfig(**values)


@pytest.mark.parametrize("recommender", TABLE_RECOMMENDERS)
def test_no_test_item_reaches_the_training_arrays(recommender):
    sequences, num_items = cyclic_dataset()
    trainer = DownstreamTrainer(small_config(recommender=recommender), sequences, num_items)
    seen = set(trainer.train_inputs.ravel().tolist()) | set(trainer.train_targets.ravel().tolist())
    assert not seen & {int(seq[-1]) for seq in sequences}
    # Exactly the training prefixes seq[:-2] are trained, each next-item target once, even when a prefix is
    # longer than max_items (16 here, prefixes up to 18 items) and gets cut into windows.
    if recommender == "bert4rec":
        trained, expected = trainer.train_targets, [seq[:-2] for seq in sequences]
    else:
        trained, expected = trainer.train_targets, [seq[1:-2] for seq in sequences]
    assert sorted(trained[trained != 0].tolist()) == sorted(np.concatenate(expected).tolist())


def test_validation_picks_the_checkpoint_and_test_items_stay_unseen():
    sequences, num_items = cyclic_dataset()
    trainer = DownstreamTrainer(small_config(recommender="sasrec", epochs=8, patience=2), sequences, num_items)
    result = trainer.fit()
    scores = [h["valid_NDCG@10"] for h in result.history]
    assert result.epochs_run == len(scores) and 1 <= len(scores) <= 8
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert result.best_valid_score == pytest.approx(max(scores))
    if result.epochs_run < 8:
        assert result.epochs_run == result.best_epoch + 2  # stopped after `patience` epochs without progress
    # The model was restored to the best checkpoint before the test read.
    assert float(trainer.rank_metrics("valid")["NDCG@10"].mean()) == pytest.approx(result.best_valid_score)
    assert result.valid["overall"]["NDCG@10"] == pytest.approx(result.best_valid_score)
    # Test items were never trained: a model that had seen them would put them first.
    assert result.test["overall"]["HR@10"] < 0.1
    assert result.group_sizes["overall"] == len(sequences)


def test_one_training_reports_both_protocols_at_the_checkpoint_the_first_one_picks():
    sequences, num_items = cyclic_dataset()
    # Each user meets up to 31 of the 130 items, so 20 sampled negatives always exist.
    config = small_config(recommender="sasrec", epochs=6, patience=2, protocol="sampled", num_negatives=20)
    both = DownstreamTrainer(config, sequences, num_items, protocols=["sampled", "full"]).fit()
    sampled_only = DownstreamTrainer(config, sequences, num_items).fit()
    assert both.protocol == "sampled" and list(both.by_protocol) == ["sampled", "full"]
    assert list(sampled_only.by_protocol) == ["sampled"] and sampled_only.epochs_run >= 2
    # The very same training run (CPU is deterministic): losses, validation scores, best epoch, test metrics.
    assert both.history == sampled_only.history
    assert (both.epochs_run, both.best_epoch, both.best_valid_score) == (
        sampled_only.epochs_run, sampled_only.best_epoch, sampled_only.best_valid_score)
    assert both.by_protocol["sampled"] == {"test": sampled_only.test, "valid": sampled_only.valid}
    assert both.test == sampled_only.test
    # The full ranking's candidates contain the sampled ones, so at one checkpoint it can only rank lower.
    for group in ("overall", "tail_items", "short_users"):
        for metric in ("HR@10", "NDCG@10"):
            full, sampled = both.by_protocol["full"]["test"][group][metric], both.test[group][metric]
            assert (full is None) == (sampled is None)
            assert full is None or full <= sampled
    assert both.by_protocol["full"]["test"] != both.test

    # Listed the other way round, `full` picks the checkpoint: the full metrics are those of a full-only run.
    full_first = DownstreamTrainer(small_config(recommender="sasrec", epochs=6, patience=2, protocol="full",
                                                num_negatives=20), sequences, num_items, protocols=["sampled"]).fit()
    full_only = DownstreamTrainer(small_config(recommender="sasrec", epochs=6, patience=2, protocol="full",
                                               num_negatives=20), sequences, num_items).fit()
    assert list(full_first.by_protocol) == ["full", "sampled"]
    assert full_first.history == full_only.history and full_first.test == full_only.test
    with pytest.raises(ValueError, match="not prepared"):
        DownstreamTrainer(config, sequences, num_items).rank_metrics("test", "full")


def test_popularity_baseline_cannot_rank_unseen_test_items():
    sequences, num_items = cyclic_dataset()
    result = DownstreamTrainer(small_config(recommender="pop"), sequences, num_items).fit()
    assert result.epochs_run == 0
    # Every test item has training count 0, tied with all other unseen items: the expected hit rate is tiny.
    assert result.test["overall"]["HR@10"] < 0.15
    assert result.test["tail_items"]["HR@10"] == pytest.approx(result.test["overall"]["HR@10"])
    assert result.test["popular_items"]["HR@10"] is None


def test_frozen_table_stays_fixed_and_trainable_table_learns():
    sequences, num_items = cyclic_dataset(num_users=60)
    table = np.random.default_rng(0).normal(size=(num_items + 1, 24)).astype(np.float32)
    table[0] = 0
    frozen = DownstreamTrainer(small_config(recommender="sasrec", epochs=2), sequences, num_items, embeddings=table)
    adapter_before = frozen.model.item_table.adapter[0].weight.detach().clone()
    frozen.fit()
    assert torch.equal(frozen.model.item_table.table, torch.from_numpy(table))
    assert "table" not in dict(frozen.model.named_parameters())
    assert not torch.equal(frozen.model.item_table.adapter[0].weight, adapter_before)
    assert [layer.out_features for layer in frozen.model.item_table.adapter] == [12, 32]  # 24 -> 12 -> hidden

    trainable = DownstreamTrainer(small_config(recommender="sasrec", epochs=2, trainable_table=True), sequences,
                                  num_items, embeddings=table)
    trainable.fit()
    assert not torch.equal(trainable.model.item_table.table.detach(), torch.from_numpy(table))


@pytest.mark.parametrize("recommender", TABLE_RECOMMENDERS)
def test_padding_never_changes_a_users_scores(recommender):
    table = np.random.default_rng(1).normal(size=(41, 8)).astype(np.float32)
    for embeddings in (None, table):
        torch.manual_seed(0)
        config = DownstreamConfig(recommender=recommender, hidden_size=16, max_items=10, dropout=0.0,
                                  recommender_kwargs={"sasrec": {"inner_size": 32}, "bert4rec": {"inner_size": 32}})
        model = build_model(config, 40, np.zeros(41), embeddings).eval()
        short = torch.tensor([[3, 7, 9]])
        padded = torch.tensor([[3, 7, 9, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
        with torch.no_grad():
            alone = model.score_all(short, torch.tensor([3]))
            batched = model.score_all(padded, torch.tensor([3, 6]))
        torch.testing.assert_close(alone[0], batched[0], rtol=1e-5, atol=1e-5)
