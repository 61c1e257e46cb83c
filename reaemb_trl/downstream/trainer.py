"""DownstreamConfig + DownstreamTrainer: train one recommender on the leave-one-out split, early-stop on
validation NDCG@10 under the selection protocol, then read the test set once from the best checkpoint, under
every protocol asked for."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from .losses import masked_item_ce, next_item_bce
from .metrics import group_masks, rank_counts, ranking_metrics, summarize
from .models import BACKBONES, build_model
from .protocol import PROTOCOLS, LeaveOneOutSplit, sample_negatives

SELECTION_METRIC = "NDCG@10"


@dataclass
class DownstreamConfig:
    backbone: str = field(default="sasrec", metadata={"help": f"Recommender: {', '.join(BACKBONES)}."})
    protocol: str = field(default="sampled", metadata={
        "help": "sampled (100 negatives) or full (whole catalogue); the protocol whose validation NDCG@10 picks the "
                "checkpoint."})
    seed: int = field(default=0, metadata={"help": "Seed of model initialisation, batches and training negatives."})
    negative_seed: int = field(default=0, metadata={
        "help": "Seed of the sampled-protocol candidates; kept apart from --seed so every compared run shares them."})
    num_negatives: int = field(default=100, metadata={"help": "Sampled negatives per user (sampled protocol)."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden width of the recommender."})
    max_len: int = field(default=200, metadata={"help": "Most recent items a model reads per user."})
    num_layers: int = field(default=2, metadata={"help": "Transformer blocks (SASRec, BERT4Rec)."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads (SASRec, BERT4Rec)."})
    inner_size: int = field(default=256, metadata={"help": "Feed-forward width of a transformer block."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and inside blocks."})
    mask_prob: float = field(default=0.2, metadata={"help": "BERT4Rec: share of items masked per sequence."})
    trainable_table: bool = field(default=False, metadata={"help": "Fine-tune the embedding-file table too."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    batch_size: int = field(default=128, metadata={"help": "Users per training batch."})
    eval_batch_size: int = field(default=1024, metadata={"help": "Users per evaluation batch."})
    epochs: int = field(default=200, metadata={"help": "Most training epochs."})
    patience: int = field(default=20, metadata={"help": "Epochs without a better validation NDCG@10 before stopping."})
    tail_threshold: int = field(default=20, metadata={"help": "Tail item: fewer training interactions than this."})
    short_user_threshold: int = field(default=10, metadata={"help": "Short user: fewer interactions than this."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar over epochs."})

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise InputError(f"backbone {self.backbone!r} is unknown (choose from {', '.join(BACKBONES)})")
        if self.protocol not in PROTOCOLS:
            raise InputError(f"protocol {self.protocol!r} is unknown (choose from {', '.join(PROTOCOLS)})")
        if self.max_len < 2:
            raise InputError(f"max_len must be at least 2, got {self.max_len}")

    def to_dict(self) -> dict:
        return asdict(self)


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


def pad_right(rows: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's last `width` entries, left-aligned and zero-padded on the right; also return lengths."""
    lengths = np.array([min(len(r), width) for r in rows], dtype=np.int64)
    padded = np.zeros((len(rows), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
    for i, (row, n) in enumerate(zip(rows, lengths)):
        padded[i, :n] = row[len(row) - n:]
    return padded, lengths


def end_aligned_windows(seq: np.ndarray, width: int, step: int) -> list[np.ndarray]:
    """Windows of at most `width` items ending at len(seq), len(seq) - step, ...

    With step = width - 1 neighbouring windows share one item, so each item after the first is a next-item
    target in exactly one window; with step = width they tile the sequence.
    """
    return [seq[max(0, end - width): end] for end in range(len(seq), width - step, -step)]


class DownstreamTrainer:
    """`protocols`: every protocol whose test (and validation) metrics `fit` reports; `config.protocol` picks the
    checkpoint and is always reported, first. One training run serves them all."""

    def __init__(self, config: DownstreamConfig, sequences: Sequence[np.ndarray], num_items: int,
                 embeddings: np.ndarray | None = None, protocols: Sequence[str] = ()):
        self.config = config
        self.protocols = list(dict.fromkeys([config.protocol, *protocols]))
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown:
            raise InputError(f"protocol(s) {unknown} unknown (choose from {', '.join(PROTOCOLS)})")
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.split = LeaveOneOutSplit(sequences, num_items)
        self.num_items = num_items
        self.model = build_model(config.backbone, num_items, self.split.train_popularity, embeddings,
                                 config.trainable_table, config.hidden_size, config.max_len, config.num_layers,
                                 config.num_heads, config.inner_size, config.dropout)
        self.train_inputs, self.train_targets = self._training_rows()
        self.phases = {phase: self._eval_batches(phase) for phase in ("valid", "test")}
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = (torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
                          if params else None)

    def _training_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Padded training inputs and targets, built from the training prefixes (seq[:-2]) only.

        A prefix longer than the model's window is cut into consecutive windows, aligned to its end, so every
        next-item target inside it is trained once per epoch (the most recent window keeps the full context).
        """
        context = self.model.context_length
        if self.config.backbone == "bert4rec":
            windows = [end_aligned_windows(seq, context + 1, context + 1) for seq in self.split.train if len(seq) >= 2]
            inputs, _ = pad_right([w for user_windows in windows for w in user_windows], context + 1)
            return inputs, inputs.copy()
        rows = [w for seq in self.split.train if len(seq) >= 2 for w in end_aligned_windows(seq, context + 1, context)]
        inputs, _ = pad_right([r[:-1] for r in rows], context)
        targets, _ = pad_right([r[1:] for r in rows], context)
        return inputs, targets

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
            if self.config.backbone == "bert4rec":
                loss = masked_item_ce(self.model, inputs, self.config.mask_prob, self.generator)
            else:
                negatives = torch.randint(1, self.num_items + 1, targets.shape, generator=self.generator)
                negatives = torch.where(negatives == targets, negatives % self.num_items + 1, negatives)
                loss = next_item_bce(self.model, inputs, targets, negatives)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.detach().item()
        return total / max(len(batches), 1)

    def _valid_score(self) -> float:
        return float(self.rank_metrics("valid")[SELECTION_METRIC].mean())

    def train(self) -> tuple[list[dict], int, float]:
        """Train until validation NDCG@10 stops improving; the model ends on its best checkpoint."""
        if self.optimizer is None:  # nothing to learn (popularity)
            return [], 0, self._valid_score()
        history, best_score, best_epoch, best_state = [], float("-inf"), 0, None
        bar = tqdm(range(1, self.config.epochs + 1), desc=f"{self.config.backbone} epochs",
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
