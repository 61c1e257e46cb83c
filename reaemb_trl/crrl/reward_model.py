"""Scores sampled item embeddings against co-occurrence candidates (positives that co-occur, negatives that never
do)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse
import torch

from ..data import PreparedDataset, sample_candidates
from ..embedder.configuration import SIMILARITIES
from ..errors import InputError

# Maps item texts to noise-free embeddings [len(texts), d]; the trainer passes the embedder's `encode`.
Encoder = Callable[[list[str]], torch.Tensor]


@dataclass
class CandidateScores:
    """What a reward function sees, for N sampled embeddings (see `reaemb_trl.rewards.registry`)."""

    scores: torch.Tensor  # [N, K]
    positive_weights: torch.Tensor  # [N, K]
    candidate_ids: torch.Tensor  # [N, K]
    has_positive: torch.Tensor  # [N] bool: False where the item co-occurs with nothing (its reward is undefined)


class CooccurrenceRewardModel:
    """Candidates per item from a co-occurrence matrix, and a cache of the candidates' noise-free embeddings.

    Negatives are redrawn every epoch. A cached candidate embedding is recomputed once it is `refresh_every` steps
    old, so `refresh_every=1` always scores against the current model.
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
        if item_texts is not None and len(item_texts) != cooccurrence.shape[0]:
            raise InputError(f"{len(item_texts)} item texts for a co-occurrence matrix of {cooccurrence.shape[0]} rows")
        self.cooccurrence = cooccurrence.tocsr()
        self.item_texts = item_texts
        self.num_positives = num_positives
        self.num_candidates = num_candidates
        self.similarity = similarity
        self.refresh_every = refresh_every
        self.seed = seed
        self._candidates = None
        self._candidates_epoch = None
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget every cached candidate embedding (a new trainer's steps count from 0 and its model differs)."""
        self._cache: torch.Tensor | None = None
        self._cache_step = torch.full((self.num_items + 1,), -1, dtype=torch.long)  # -1: never computed

    @property
    def num_items(self) -> int:
        return self.cooccurrence.shape[0] - 1

    def items_with_positives(self) -> np.ndarray:
        """Item ids (1..N) that co-occur with at least one other item: the ones a reward can be computed for."""
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
                seed=self.seed, epoch=epoch,
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
        targets = self.candidate_embeddings(candidate_ids, encode, step)
        return self._compare(embeddings, targets, candidate_ids, torch.from_numpy(candidates.counts[rows]))

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
        scored = self._compare(anchors, targets, candidate_ids, torch.from_numpy(candidates.counts[item_ids.numpy()]))
        keep = scored.has_positive
        rewards = reward_fn(
            scored.scores[keep], scored.positive_weights[keep], item_ids=item_ids[keep],
            candidate_ids=candidate_ids[keep], embeddings=anchors[keep],
        )
        return float(rewards.mean()) if len(rewards) else float("nan")

    def _compare(self, anchors, targets, candidate_ids, counts) -> CandidateScores:
        targets = targets.to(anchors.device, anchors.dtype)
        if self.similarity == "cosine":
            anchors = torch.nn.functional.normalize(anchors, dim=-1)
            targets = torch.nn.functional.normalize(targets, dim=-1)
        scores = torch.einsum("nd,nkd->nk", anchors, targets)
        counts = counts.float().to(scores.device)
        totals = counts.sum(dim=1, keepdim=True)
        return CandidateScores(
            scores=scores,
            positive_weights=torch.where(totals > 0, counts / totals.clamp(min=1e-12), 0.0),
            candidate_ids=candidate_ids.to(scores.device),
            has_positive=totals.squeeze(1) > 0,
        )
