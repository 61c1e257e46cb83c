"""CRRL optimises what it is given (issue 20, section 0).

A planted task on a tiny decoder: 16 items in 8 pairs, each item co-occurring with its pair partner only. Partners share
one distinctive word after two filler words that every item draws from the same four ("label toner Action", "toner
stapler Action"), so a thought that reads the distinctive word ranks every partner first: the ceiling is reachable
(a supervised loss on the same embedder reaches it in ten steps). Two checks, each also run with the advantage's sign
flipped, where it must fail, so that it can fail:

- a short CRRL run closes most of the gap between the starting noise-free reward and the reward's ceiling;
- one generation batch's update direction climbs the expected reward, measured by finite differences.
"""

import numpy as np
import pytest
import scipy.sparse
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from transformers import TrainerCallback

from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, EmbeddingGRPOTrainer, item_dataset
from reaemb_trl.crrl.policy import group_advantages
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.rewards import get_reward
from reaemb_trl.testing import build_tiny_decoder

GROUP_WORDS = ("Action", "Gel", "Golden", "Office", "Pen", "Pilot", "brand", "ink")  # one token each
FILLER_WORDS = ("paper", "stapler", "toner", "label")
ITEMS = np.arange(1, 2 * len(GROUP_WORDS) + 1)
SIGMA = 0.05  # per dimension: noise of norm 0.28 around a starting thought mean of norm 0.04, which CRRL grows
FRACTION = 2 / 3
# token_likelihood (the reference's surrogate) scores the backbone's log-probs of the fixed tokens after the thought,
# not the density of the sampled thought: its update, sum_i A_i grad_z log p(suffix | z_i), is to first order
# sigma * H * (the policy gradient), H the Hessian of that log-likelihood in the thought, so it need not climb the
# reward at all. The gradient check below shows it descending here; CRRLConfig warns when it is chosen.


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices: on a shared 2-core machine a second torch thread costs more in synchronisation than it saves
    # (8x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted_task() -> tuple[scipy.sparse.csr_matrix, list[str]]:
    """(co-occurrence matrix, item texts): items 2k+1 and 2k+2 end with GROUP_WORDS[k] and co-occur once."""
    rng = np.random.default_rng(0)
    texts = [""] + [" ".join([*rng.choice(FILLER_WORDS, 2), word]) for word in GROUP_WORDS for _ in range(2)]
    partners = ITEMS + np.where(ITEMS % 2, 1, -1)
    size = len(ITEMS) + 1
    return scipy.sparse.csr_matrix((np.ones(len(ITEMS)), (ITEMS, partners)), shape=(size, size)), texts


def make_trainer(tmp_path, callbacks=None, **overrides) -> EmbeddingGRPOTrainer:
    """A CRRL trainer on a fresh tiny embedder, every item in each generation batch (G = num_generations each)."""
    cooccurrence, texts = planted_task()
    reward_model = CooccurrenceRewardModel(cooccurrence, num_candidates=8, item_texts=texts)
    model, tokenizer = build_tiny_decoder("qwen2", hidden_size=32, seed=0)
    # `thought` pooling reads the thought's own state and the ones after it, so the thought controls the embedding.
    embedder = LatentReasoningEmbedder.from_backbone(model, LoadingOptions(pooling="thought", max_length=48),
                                                     tokenizer=tokenizer)
    settings = dict(output_dir=str(tmp_path / "crrl"), num_generations=32, sigma=SIGMA, learning_rate=3e-3,
                    lr_scheduler_type="constant", warmup_steps=0, max_steps=40, logging_steps=40, save_strategy="no",
                    report_to="none", disable_tqdm=True, use_cpu=True, seed=0)
    settings.update(overrides)
    settings["per_device_train_batch_size"] = len(ITEMS) * settings["num_generations"]
    return EmbeddingGRPOTrainer(embedder, CRRLConfig(**settings), reward_model, item_dataset(ITEMS, texts),
                                callbacks=callbacks)


def negate_advantages(monkeypatch) -> None:
    monkeypatch.setattr("reaemb_trl.crrl.crrl_trainer.group_advantages",
                        lambda *args, **kwargs: -group_advantages(*args, **kwargs))


def train_planted(tmp_path, **overrides) -> tuple[float, float, float]:
    """(start, end, ceiling) of the mean noise-free cooc_ndcg of the items over a CRRL run on cooc_ndcg."""
    trainer = make_trainer(tmp_path, **overrides)
    reward_model, ndcg = trainer.reward_model, get_reward("cooc_ndcg")
    encode = lambda texts: trainer.model.encode(texts, show_progress=False)  # noqa: E731
    _, ceiling = reward_model.reward_bounds(ITEMS, ndcg)
    start = reward_model.evaluate(ITEMS, encode, ndcg)
    trainer.train()
    return start, reward_model.evaluate(ITEMS, encode, ndcg), ceiling


@pytest.mark.parametrize(("num_iterations", "antithetic"), [(1, False), (2, False), (1, True)])
def test_crrl_closes_most_of_the_gap_to_the_ceiling(tmp_path, num_iterations, antithetic):
    """40 steps of 16 items x 32 samples must close FRACTION (2/3) of the gap from the start to the ceiling (0.5: every
    partner ranked first among 8 candidates; the random floor is 0.32 and the start 0.38).

    Why 2/3: a run that does not learn loses reward, since drifting weights erase the little structure the start
    has (the negated advantage ends at 0.31; token_likelihood, which is no policy gradient, at 0.30 / 0.43), so any
    gain shows learning; "most of
    the gap" with a margin, as tiny decoders of seeds 0-5 close 75-100% of it (this one 94% / 100% with 1 / 2
    iterations).
    """
    start, end, ceiling = train_planted(tmp_path, logprob="gaussian", num_iterations=num_iterations,
                                        antithetic=antithetic)
    assert ceiling == pytest.approx(0.5)
    assert end - start >= FRACTION * (ceiling - start), f"start {start:.3f}, end {end:.3f}, ceiling {ceiling:.3f}"


def test_with_the_advantage_negated_the_planted_reward_falls(tmp_path, monkeypatch):
    negate_advantages(monkeypatch)
    start, end, _ = train_planted(tmp_path, logprob="gaussian", num_iterations=1)
    assert end < start, f"start {start:.3f}, end {end:.3f}"


class GradientCatcher(TrainerCallback):
    """The thought module's gradient as the optimiser is about to apply it."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradient = parameters_to_vector([p.grad for p in model.thought_module.parameters()]).clone()


@pytest.mark.parametrize(("logprob", "negated", "sign", "antithetic"), [
    ("gaussian", False, 1, False), ("gaussian", True, -1, False), ("token_likelihood", False, -1, False),
    ("gaussian", False, 1, True), ("gaussian", True, -1, True)])
def test_one_update_climbs_the_expected_reward(tmp_path, monkeypatch, logprob, negated, sign, antithetic):
    """The direction CRRL moves the thought module in, minus the gradient of its loss on one generation batch (16
    items x 64 samples, smooth cooc_softmax reward), against the slope of the expected reward E_eps[R(mu + sigma eps)]
    along it, by central finite differences: the same 128 noise draws per item at both points (common random
    numbers, in antithetic pairs), the candidates held at their starting embeddings as in the step's rewards.

    scale_rewards="none" makes the update an unbiased estimate of a positive multiple of the gradient of the mean
    reward; the default per-item ("group") scaling estimates a reweighted objective's. The slope must be positive by
    more than 5 standard errors (they come from the noise draws alone: the items are fixed); with the advantage
    negated it must be negative by as much. token_likelihood's update descends (measured: -17 to -19 standard errors
    over 3 noise seeds): it is not the policy's score function.
    """
    if negated:
        negate_advantages(monkeypatch)
    catcher = GradientCatcher()
    # Learning rate 0: the step leaves the thought module where its gradient was taken.
    trainer = make_trainer(tmp_path, callbacks=[catcher], logprob=logprob, rewards=["cooc_softmax"],
                           scale_rewards="none", num_generations=64, num_iterations=1, max_steps=1, learning_rate=0.0,
                           antithetic=antithetic)
    embedder, reward_model = trainer.model, trainer.reward_model
    trainer.train()
    direction = -catcher.gradient / catcher.gradient.norm()

    texts = [reward_model.item_texts[i] for i in ITEMS]
    # The candidates' starting embeddings, as a table: a deepcopy of the embedder would not do, since the trainer
    # patched its forward with a closure over the original (TRL's fused forward), which a copy still calls.
    start = dict(zip(texts, embedder.encode(texts, show_progress=False)))
    samples = 128
    half = torch.randn(len(ITEMS), samples // 2, 1, embedder.config.hidden_size,
                       generator=torch.Generator().manual_seed(1))
    noise = torch.cat([half, -half], dim=1).flatten(0, 1)
    reward = get_reward("cooc_softmax")
    module = embedder.thought_module
    theta = parameters_to_vector(module.parameters()).detach().clone()

    def rewards_at(step: float) -> torch.Tensor:
        """[items, samples] cooc_softmax of the samples, thought module at theta + step * direction."""
        vector_to_parameters(theta + step * direction, module.parameters())
        with torch.no_grad():
            prefix = embedder.encode_prefix(**embedder.tokenize(texts))
            mean = embedder.thought_mean(prefix).repeat_interleave(samples, dim=0)
            embeddings = embedder.embed_with_thoughts(prefix, mean + SIGMA * noise, group_size=samples)
        reward_model.clear_cache()  # score against the fixed table, not the trainer's cache
        scored = reward_model.score(torch.as_tensor(ITEMS).repeat_interleave(samples), embeddings,
                                    lambda batch: torch.stack([start[text] for text in batch]))
        return reward(scored.scores, scored.positive_weights).view(len(ITEMS), samples)

    step = 1e-2
    slopes = (rewards_at(step) - rewards_at(-step)) / (2 * step)
    pair_slopes = slopes.view(len(ITEMS), 2, samples // 2).mean(dim=1)  # antithetic pairs are the independent draws
    slope = pair_slopes.mean()
    standard_error = (pair_slopes.var(dim=1) / pair_slopes.shape[1]).sum().sqrt() / len(ITEMS)
    assert sign * slope / standard_error > 5, f"slope {slope:.4f} +- {standard_error:.4f} along the update"
