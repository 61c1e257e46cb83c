"""DownstreamTrainer: train one recommender on the leave-one-out split, early-stop on
validation NDCG@10 under the selection protocol, then read the test set once from the best checkpoint, under
every protocol asked for."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import DownstreamConfig
from .metrics import group_masks, rank_counts, ranking_metrics, summarize
from .models import build_model
from .protocol import LeaveOneOutSplit, check_protocols, sample_negatives
from .sequences import pad_right

SELECTION_METRIC = "NDCG@10"


@dataclass
class EvalBatches:
    """One phase as padded arrays: inputs [U, L], lengths, targets, and the candidates (sampled protocol) and / or
    the masked history (full protocol) of the protocols the trainer reports."""

    inputs: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    candidates: np.ndarray | None
    history: np.ndarray | None
    masks: dict[str, np.ndarray]


@dataclass
class RunResult:
    """`test` / `valid`: under the selection protocol (config.protocol); `by_protocol[p]` holds both for every
    reported protocol p, all read from the one checkpoint that the selection protocol picked."""

    test: dict[str, dict[str, float | None]]
    valid: dict[str, dict[str, float | None]]
    best_valid_score: float
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    group_sizes: dict[str, int] = field(default_factory=dict)
    protocol: str = "sampled"
    by_protocol: dict[str, dict[str, dict[str, dict[str, float | None]]]] = field(default_factory=dict)


class DownstreamTrainer:
    """`protocols`: every protocol whose test (and validation) metrics `fit` reports; `config.protocol` picks the
    checkpoint and is always reported, first. One training run serves them all."""

    def __init__(self, config: DownstreamConfig, sequences: Sequence[np.ndarray], num_items: int,
                 embeddings: np.ndarray | None = None, protocols: Sequence[str] = ()):
        self.config = config
        self.protocols = check_protocols([config.protocol, *protocols])
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.split = LeaveOneOutSplit(sequences, num_items)
        self.num_items = num_items
        self.model = build_model(config, num_items, self.split.train_popularity, embeddings)
        self.phases = {phase: self._eval_batches(phase) for phase in ("valid", "test")}
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = (torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
                          if params else None)
        if self.optimizer is not None:  # rows from the training prefixes (seq[:-2]) only
            self.train_inputs, self.train_targets = self.model.training_rows(self.split.train)

    def _eval_batches(self, phase: str) -> EvalBatches:
        data = self.split.eval_set(phase)
        inputs, lengths = pad_right(data.inputs, self.model.context_length)
        candidates = history = None
        # Neither set draws from the torch generators, so the training run is the same whatever is reported.
        if "sampled" in self.protocols:
            negatives = sample_negatives(self.split.sequences, data.users, self.num_items,
                                         self.config.num_negatives, self.config.negative_seed)
            candidates = np.concatenate([data.targets[:, None], negatives], axis=1)
        if "full" in self.protocols:
            history, _ = pad_right(data.history, max(len(h) for h in data.history))
        masks = group_masks(data.targets, self.split.sequence_lengths, self.split.train_popularity,
                            self.config.tail_threshold, self.config.short_user_threshold)
        # Users sorted by input length, so each evaluation batch is only as wide as its own longest user.
        order = np.argsort(lengths, kind="stable")
        return EvalBatches(inputs[order], lengths[order], data.targets[order],
                           None if candidates is None else candidates[order],
                           None if history is None else history[order],
                           {group: mask[order] for group, mask in masks.items()})

    @torch.no_grad()
    def rank_metrics(self, phase: str, protocol: str | None = None) -> dict[str, np.ndarray]:
        """Per-user metrics of the current model on `phase` (valid or test) under `protocol` (default: the
        selection protocol, config.protocol)."""
        protocol = protocol or self.config.protocol
        if protocol not in self.protocols:
            raise ValueError(f"protocol {protocol!r} was not prepared; this trainer reports {self.protocols}")
        self.model.eval()
        data = self.phases[phase]
        greater, ties = [], []
        for start in range(0, len(data.targets), self.config.eval_batch_size):
            rows = slice(start, start + self.config.eval_batch_size)
            lengths = torch.from_numpy(data.lengths[rows])
            inputs = torch.from_numpy(data.inputs[rows, : max(int(lengths.max()), 1)])
            if protocol == "sampled":
                scores = self.model.score_candidates(inputs, lengths, torch.from_numpy(data.candidates[rows]))
                target_scores = scores[:, 0]
            else:
                scores = self.model.score_all(inputs, lengths).clone()
                targets = torch.from_numpy(data.targets[rows])
                index = torch.arange(len(targets))
                target_scores = scores[index, targets].clone()
                scores[:, 0] = float("-inf")
                scores.scatter_(1, torch.from_numpy(data.history[rows]), float("-inf"))
                scores[index, targets] = target_scores  # an item consumed before can still be the target
            g, t = rank_counts(scores, target_scores)
            greater.append(g)
            ties.append(t)
        return ranking_metrics(np.concatenate(greater), np.concatenate(ties))

    def _train_epoch(self) -> float:
        self.model.train()
        # Batches of users with similar lengths (shuffled within equal lengths, batch order shuffled) keep the
        # padding small: most users are short and a few long ones would otherwise widen every batch.
        lengths = (self.train_targets != 0).sum(1)
        shuffled = torch.randperm(len(lengths), generator=self.generator).numpy()
        order = shuffled[np.argsort(lengths[shuffled], kind="stable")]
        batches = [order[i: i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        total = 0.0
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            rows = batches[b]
            width = max(int(lengths[rows].max()), 1)
            inputs = torch.from_numpy(self.train_inputs[rows, :width])
            targets = torch.from_numpy(self.train_targets[rows, :width])
            loss = self.model.calculate_loss(inputs, targets, self.generator, self.num_items, self.config)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.detach().item()
        return total / max(len(batches), 1)

    def _valid_score(self) -> float:
        return float(self.rank_metrics("valid")[SELECTION_METRIC].mean())

    def train(self) -> tuple[list[dict], int, float]:
        """Train until validation NDCG@10 stops improving; the model ends on its best checkpoint."""
        if self.optimizer is None:  # nothing to learn (a recommender without parameters: popularity)
            return [], 0, self._valid_score()
        history, best_score, best_epoch, best_state = [], float("-inf"), 0, None
        bar = tqdm(range(1, self.config.epochs + 1), desc=f"{self.config.recommender} epochs",
                   disable=not self.config.show_progress)
        for epoch in bar:
            loss = self._train_epoch()
            score = self._valid_score()
            history.append({"epoch": epoch, "loss": loss, f"valid_{SELECTION_METRIC}": score})
            bar.set_postfix(loss=f"{loss:.4f}", valid_ndcg10=f"{score:.4f}", best=f"{max(score, best_score):.4f}")
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, copy.deepcopy(self.model.state_dict())
            elif epoch - best_epoch >= self.config.patience:
                break
        bar.close()
        self.model.load_state_dict(best_state)
        return history, best_epoch, best_score

    def fit(self) -> RunResult:
        """Train (checkpoint chosen under config.protocol), then evaluate validation and, once, test with the best
        checkpoint under every reported protocol."""
        history, best_epoch, best_score = self.train()
        masks = self.phases["test"].masks
        by_protocol = {protocol: {"valid": summarize(self.rank_metrics("valid", protocol), self.phases["valid"].masks),
                                  "test": summarize(self.rank_metrics("test", protocol), masks)}
                       for protocol in self.protocols}
        selected = by_protocol[self.config.protocol]
        return RunResult(
            test=selected["test"],
            valid=selected["valid"],
            best_valid_score=best_score,
            best_epoch=best_epoch,
            epochs_run=len(history),
            history=history,
            group_sizes={group: int(mask.sum()) for group, mask in masks.items()},
            protocol=self.config.protocol,
            by_protocol=by_protocol,
        )
