"""Scores sampled item embeddings against co-occurrence candidates (positives that co-occur, negatives that never
do: random ones, and optionally hard ones that the current table ranks closest to the item)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse
import torch

from ..data import PreparedDataset, sample_candidates
from ..data.association import POSITIVE_RULES
from ..embedder.configuration import SIMILARITIES
from ..errors import InputError

# Maps item texts to noise-free embeddings [len(texts), d]; the trainer passes the embedder's `encode`.
Encoder = Callable[[list[str]], torch.Tensor]


@dataclass
class CandidateScores:
    """What a reward function sees, for N sampled embeddings (see `reaemb_trl.rewards.registry`)."""

    scores: torch.Tensor  # [N, K]
    positive_weights: torch.Tensor  # [N, K] each positive's share of the row's positive-rule scores; 0: negative
    candidate_ids: torch.Tensor  # [N, K]
    has_positive: torch.Tensor  # [N] bool: False where the item co-occurs with nothing (its reward is undefined)


class CooccurrenceRewardModel:
    """Candidates per item from a co-occurrence matrix, and a cache of the candidates' noise-free embeddings.

    Positives are each item's best-associated items under `positive_rule` (`reaemb_trl.data.association`); ties
    and the random negatives are redrawn every epoch. A cached candidate embedding is recomputed once it is
    `refresh_every` steps old, so `refresh_every=1` always scores against the current model. With
    `num_hard_negatives` > 0 the cache holds every item, and that many of each row's negatives are replaced by the
    never-co-occurring items closest to the item in the cached table (the current model's, as fresh as the cache).
    """

    def __init__(
        self,
        source: PreparedDataset | scipy.sparse.spmatrix | str | os.PathLike,
        num_positives: int = 1,
        num_candidates: int = 10,
        similarity: str = "cosine",
        refresh_every: int = 1,
        seed: int = 0,
        item_texts: list[str] | None = None,
        positive_rule: str = "count",
        positive_min_count: int | None = None,
        num_hard_negatives: int = 0,
    ):
        if isinstance(source, (str, os.PathLike)):
            source = PreparedDataset.load(source)
        self.dataset_sha256 = source.sha256 if isinstance(source, PreparedDataset) else None  # for the model card
        if isinstance(source, PreparedDataset):
            cooccurrence = source.cooccurrence
            item_texts = source.item_texts if item_texts is None else item_texts
        else:
            cooccurrence = scipy.sparse.csr_matrix(source)
        if cooccurrence.shape[0] != cooccurrence.shape[1]:
            raise InputError(f"co-occurrence matrix must be square, got shape {cooccurrence.shape}")
        if similarity not in SIMILARITIES:
            raise InputError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if refresh_every < 1:
            raise InputError(f"refresh_every must be >= 1, got {refresh_every}")
        if not 1 <= num_positives < num_candidates:
            raise InputError(f"need 1 <= num_positives < num_candidates, got {num_positives} and {num_candidates}")
        if not 0 <= num_hard_negatives <= num_candidates - num_positives:
            raise InputError(f"num_hard_negatives must be in 0..{num_candidates - num_positives} (the negative slots), "
                             f"got {num_hard_negatives}")
        if positive_rule not in POSITIVE_RULES:
            raise InputError(f"positive_rule must be one of {POSITIVE_RULES}, got {positive_rule!r}")
        if positive_min_count is not None and positive_min_count < 1:
            raise InputError(f"positive_min_count must be >= 1, got {positive_min_count}")
        if item_texts is not None and len(item_texts) != cooccurrence.shape[0]:
            raise InputError(f"{len(item_texts)} item texts for a co-occurrence matrix of {cooccurrence.shape[0]} rows")
        self.cooccurrence = cooccurrence.tocsr()
        self.item_texts = item_texts
        self.num_positives = num_positives
        self.num_candidates = num_candidates
        self.similarity = similarity
        self.refresh_every = refresh_every
        self.seed = seed
        self.positive_rule = positive_rule
        self.positive_min_count = positive_min_count
        self.num_hard_negatives = num_hard_negatives
        self._candidates = None
        self._candidates_epoch = None
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget every cached candidate embedding (a new trainer's steps count from 0 and its model differs)."""
        self._cache: torch.Tensor | None = None
        self._cache_step = torch.full((self.num_items + 1,), -1, dtype=torch.long)  # -1: never computed
        self._hard_negatives: dict[int, torch.Tensor] = {}  # item -> its hard negatives, valid for _hard_step
        self._hard_step: int | None = None

    @property
    def num_items(self) -> int:
        return self.cooccurrence.shape[0] - 1

    def items_with_positives(self) -> np.ndarray:
        """Item ids (1..N) that have a positive under the rule: the ones a reward can be computed for."""
        return np.flatnonzero(self.candidates(0).num_positives > 0)

    def split_items(self, num_heldout: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(train, held-out) item ids among the items with positives, held-out drawn at random with `seed`."""
        eligible = self.items_with_positives()
        if not 0 <= num_heldout < len(eligible):
            raise InputError(f"cannot hold out {num_heldout} of the {len(eligible)} items that have a co-occurring "
                             "item")
        order = np.random.default_rng(self.seed if seed is None else seed).permutation(eligible)
        return np.sort(order[num_heldout:]), np.sort(order[:num_heldout])

    def candidates(self, epoch: int = 0):
        """The `reaemb_trl.data.Candidates` of `epoch` (negatives redrawn when the epoch changes)."""
        if self._candidates_epoch != epoch:
            self._candidates = sample_candidates(
                self.cooccurrence, num_positives=self.num_positives, num_candidates=self.num_candidates,
                seed=self.seed, epoch=epoch, rule=self.positive_rule, min_count=self.positive_min_count,
            )
            self._candidates_epoch = epoch
        return self._candidates

    def candidate_embeddings(self, item_ids: torch.Tensor, encode: Encoder, step: int) -> torch.Tensor:
        """Noise-free embeddings of `item_ids` (any shape) from the cache, recomputing entries that are too old."""
        if self.item_texts is None:
            raise InputError("the reward model needs item texts to embed candidates (build it from a prepared dataset)")
        needed = torch.unique(item_ids.flatten().cpu())
        age = step - self._cache_step[needed]
        stale = needed[(self._cache_step[needed] < 0) | (age >= self.refresh_every)]
        if len(stale):
            fresh = encode([self.item_texts[i] for i in stale.tolist()]).detach().float().cpu()
            if self._cache is None:
                self._cache = torch.zeros(self.num_items + 1, fresh.shape[1])
            self._cache[stale] = fresh
            self._cache_step[stale] = step
        return self._cache[item_ids.cpu()]

    def score(
        self, item_ids: torch.Tensor, embeddings: torch.Tensor, encode: Encoder, step: int = 0, epoch: int = 0
    ) -> CandidateScores:
        """Similarity of each embedding [N, d] (of item `item_ids[n]`) to that item's candidates (cached embeddings)."""
        candidates = self.candidates(epoch)
        rows = item_ids.cpu().numpy()
        candidate_ids = torch.from_numpy(candidates.item_ids[rows])
        if self.num_hard_negatives:
            candidate_ids = self._with_hard_negatives(item_ids.cpu(), candidate_ids, encode, step)
        targets = self.candidate_embeddings(candidate_ids, encode, step)
        return self._compare(embeddings, targets, candidate_ids, torch.from_numpy(candidates.weights[rows]))

    def _with_hard_negatives(self, item_ids: torch.Tensor, candidate_ids: torch.Tensor, encode: Encoder,
                             step: int) -> torch.Tensor:
        """`candidate_ids` with its last `num_hard_negatives` slots (random negatives) replaced by the items closest
        to each row's item in the current table that never co-occur with it and are not among its other candidates."""
        # the whole table, as fresh as `refresh_every` allows; row 0 (padding) stays zero
        self.candidate_embeddings(torch.arange(1, self.num_items + 1), encode, step)
        table = self._cache
        items, first, inverse = _unique_first(item_ids)
        closeness = self._similarity(table[items], table)
        excluded = torch.from_numpy(self.cooccurrence[items.numpy()].toarray() != 0)
        excluded[:, 0] = True
        excluded[torch.arange(len(items)), items] = True
        kept = self.num_candidates - self.num_hard_negatives
        excluded.scatter_(1, candidate_ids[first, :kept], True)
        hard = closeness.masked_fill(excluded, -torch.inf).topk(self.num_hard_negatives, dim=1).indices
        return torch.cat([candidate_ids[:, :kept], hard[inverse]], dim=1)

    def reward_bounds(self, item_ids, reward_fn: Callable, epoch: int = 0, draws: int = 256,
                      seed: int = 0) -> tuple[float, float]:
        """(floor, ceiling) of `reward_fn`'s mean over `item_ids` (those with a positive): the floor ranks each
        item's candidates with uniformly random similarities in [-1, 1], the ceiling puts every positive above every
        negative (similarity 1 for the best positive, -1 for the negatives), as close as cosine similarity allows."""
        rows = np.asarray(item_ids)
        candidates = self.candidates(epoch)
        weights = torch.from_numpy(candidates.weights[rows])
        keep = weights.sum(dim=1) > 0
        weights = (weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12))[keep]
        if not len(weights):
            return float("nan"), float("nan")
        kwargs = {"item_ids": torch.as_tensor(rows)[keep],
                  "candidate_ids": torch.from_numpy(candidates.item_ids[rows])[keep], "embeddings": None}
        generator = torch.Generator().manual_seed(seed)
        random_scores = torch.rand((draws, *weights.shape), generator=generator) * 2 - 1
        floor = float(np.mean([reward_fn(scores, weights, **kwargs).mean().item() for scores in random_scores]))
        best = torch.where(weights > 0, 0.5 + 0.5 * weights / weights.amax(dim=1, keepdim=True), -1.0)
        return floor, float(reward_fn(best, weights, **kwargs).mean())

    @torch.no_grad()
    def evaluate(self, item_ids, encode: Encoder, reward_fn: Callable, epoch: int = 0) -> float:
        """Mean reward of freshly computed noise-free embeddings of `item_ids` (the cache is left untouched)."""
        item_ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.long)
        candidates = self.candidates(epoch)
        candidate_ids = torch.from_numpy(candidates.item_ids[item_ids.numpy()])
        needed, inverse = torch.unique(torch.cat([item_ids, candidate_ids.flatten()]), return_inverse=True)
        table = encode([self.item_texts[i] for i in needed.tolist()]).float().cpu()
        anchors = table[inverse[: len(item_ids)]]
        targets = table[inverse[len(item_ids) :]].view(len(item_ids), self.num_candidates, -1)
        scored = self._compare(anchors, targets, candidate_ids, torch.from_numpy(candidates.weights[item_ids.numpy()]))
        keep = scored.has_positive
        rewards = reward_fn(
            scored.scores[keep], scored.positive_weights[keep], item_ids=item_ids[keep],
            candidate_ids=candidate_ids[keep], embeddings=anchors[keep],
        )
        return float(rewards.mean()) if len(rewards) else float("nan")

    def _normalized(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Embeddings whose dot product is the reward model's similarity."""
        return torch.nn.functional.normalize(embeddings, dim=-1) if self.similarity == "cosine" else embeddings

    def _similarity(self, anchors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[n, d] x [m, d] -> [n, m]."""
        return self._normalized(anchors) @ self._normalized(targets).T

    def _compare(self, anchors, targets, candidate_ids, weights) -> CandidateScores:
        targets = targets.to(anchors.device, anchors.dtype)
        scores = torch.einsum("nd,nkd->nk", self._normalized(anchors), self._normalized(targets))
        weights = weights.float().to(scores.device)
        totals = weights.sum(dim=1, keepdim=True)
        return CandidateScores(
            scores=scores,
            positive_weights=torch.where(totals > 0, weights / totals.clamp(min=1e-12), 0.0),
            candidate_ids=candidate_ids.to(scores.device),
            has_positive=totals.squeeze(1) > 0,
        )


def _unique_first(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(unique values, index of each one's first occurrence, inverse) of a 1-D tensor."""
    unique, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(unique),), len(values), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(values)), reduce="amin")
    return unique, first, inverse
