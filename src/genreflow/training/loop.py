"""The one training loop shared by ``train_cnn`` and ``train_lstm``.

Design choices, and why:

- The training split stays resident on the device as one tensor (float16 on CUDA, float32
  on CPU) and batches are gathered with a device-side permutation, so an epoch needs no host
  work per batch and no DataLoader; the GPU is never starved by Python. A split beyond the
  memory budget is streamed from the memory-mapped store instead, prefetched, with the same
  values in the same order: the same weights (see :mod:`genreflow.training.batches`).
- Every random draw comes from the single ``seed``: initial weights are re-drawn here, the
  batch order and augmentation use one explicit generator, dropout the global torch RNG.
  All of it is checkpointed each epoch, so a killed run resumes to bit-identical weights (CPU).
  The checkpoint is the live objects' state plus a :class:`TrainState` (history, best-so-far,
  early-stopping count), which alone knows the on-disk keys in both directions.
- Under torchrun (``ranks``, see :mod:`genreflow.training.distributed`) every rank draws the
  same permutation and augmentations for the whole global batch and trains its slice of it in
  DDP with BatchNorm over the global batch; rank 0 alone validates (its metrics, hence every
  stop decision, are broadcast) and writes the checkpoint. One rank is today's loop exactly.
- The best epoch is chosen by clip-level validation accuracy (mean of each clip's segment
  logits), the decision that evaluation and serving actually make.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genreflow.core.config import TrainParams, to_dict
from genreflow.core.numerics import RECIPE_KEYS, numeric_environment
from genreflow.core.progress import progress_bar
from genreflow.features.store import FeatureStore
from genreflow.training.augment import augment_batch, mixup, one_hot
from genreflow.training.batches import RowView, SplitSource, open_splits
from genreflow.training.checkpoint import (
    CheckpointError,
    capture_rng,
    config_hash,
    load_checkpoint,
    plain_config,
    restore_rng,
    save_checkpoint,
    stale_reasons,
)
from genreflow.training.clip_metrics import clip_accuracy
from genreflow.training.code_identity import code_identity
from genreflow.training.distributed import SINGLE, Ranks, local_batchnorm

log = logging.getLogger(__name__)

EVAL_BATCH = 512


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float  # segment level
    val_clip_accuracy: float
    lr: float
    # Wall-clock timings: provenance, logged to MLflow, never stored in the checkpoint (a DVC
    # output must be the same bytes for the same inputs). An epoch restored from a checkpoint
    # reads 0 here; its timings were logged when it ran.
    seconds: float = 0.0  # the whole epoch: training pass, validation, checkpoint
    train_seconds: float = 0.0  # the training pass alone (throughput = segments / this)
    train_segments: int = 0  # segments seen by the training pass (ragged tail dropped)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def content(self) -> dict[str, float]:
        """:meth:`as_dict` without the wall-clock timings: what the checkpoint keeps."""
        return {k: v for k, v in self.as_dict().items() if k not in TIMING_FIELDS}


TIMING_FIELDS = ("seconds", "train_seconds")


@dataclass
class TrainResult:
    best_epoch: int
    best_val_clip_accuracy: float
    history: list[EpochMetrics]
    stopped_early: bool
    resumed_from_epoch: int | None
    streamed_splits: tuple[str, ...] = ()  # splits read from the store, not resident


def select_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def reset_weights(module: nn.Module) -> None:
    """Re-draw the initial weights from the (just seeded) global RNG.

    Uses the classifier's own ``reset_parameters`` (its chosen init) when it has one, else
    each layer's default.
    """
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def input_stats(features: np.ndarray | RowView, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std of all dB values, accumulated in float64 chunk by chunk."""
    total = sq = 0.0
    count = 0
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start : start + chunk], dtype=np.float64)
        total += float(block.sum())
        sq += float(np.square(block).sum())
        count += block.size
    mean = total / count
    std = max((sq / count - mean**2) ** 0.5, 1e-6)
    return mean, std


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _make_optimizer(
    classifier: nn.Module, params: TrainParams, device: torch.device
) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        classifier.parameters(),
        lr=params.lr,
        momentum=params.momentum,
        weight_decay=params.weight_decay,
        fused=device.type == "cuda",
    )


def _make_scheduler(
    optimizer: torch.optim.Optimizer, params: TrainParams
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if params.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(params.epochs, 1))
    if params.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(params.lr_step_epochs, 1), gamma=params.lr_step_gamma
        )
    return None


def _segments_per_epoch(n: int, batch_size: int) -> int:
    """Whole batches only: static shapes, and never a BatchNorm batch of one."""
    bs = min(batch_size, n)
    return (n // bs) * bs


def _train_epoch(
    classifier: nn.Module,
    train: SplitSource,
    params: TrainParams,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    n_classes: int,
    ranks: Ranks = SINGLE,
) -> tuple[float, float]:
    """One pass over the shuffled training split; returns (mean loss, accuracy).

    Several ranks: each augments the whole global batch (the same draws as one process) and
    trains on its slice; loss and accuracy are those of the global batches.
    """
    classifier.train()
    device = train.device
    n = len(train)
    bs = min(params.batch_size, n)
    n_batches = _segments_per_epoch(n, bs) // bs
    perm = torch.randperm(n, generator=gen, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    alpha = params.augment.mixup_alpha
    with contextlib.closing(train.batches(perm, bs)) as batches:
        for x_raw, yb in batches:
            xb = augment_batch(x_raw, params.augment, gen)
            target: torch.Tensor = yb
            if alpha > 0:
                xb, target = mixup(xb, one_hot(yb, n_classes), alpha, gen)
            xb, target, yb = ranks.shard(xb), ranks.shard(target), ranks.shard(yb)
            with _autocast(device, params.mixed_precision):
                logits = classifier(xb)
            loss = F.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(dim=1) == yb).sum()
    loss_sum, correct = ranks.mean(loss_sum), ranks.sum(correct)
    return loss_sum.item() / n_batches, correct.item() / (n_batches * bs)


@torch.no_grad()
def _evaluate(classifier: nn.Module, split: SplitSource) -> tuple[float, float, float]:
    """(segment loss, segment accuracy, clip accuracy) in float32, eval mode; the split is
    read in order, ``EVAL_BATCH`` segments at a time."""
    classifier.eval()
    in_order = torch.arange(len(split), device=split.device)
    with contextlib.closing(split.batches(in_order, EVAL_BATCH, drop_last=False)) as batches:
        logits = torch.cat([classifier(xb) for xb, _ in batches]).float()
    loss = F.cross_entropy(logits, split.y).item()
    seg_logits = logits.cpu().numpy()
    seg_acc = float((seg_logits.argmax(axis=1) == split.labels).mean())
    return loss, seg_acc, clip_accuracy(seg_logits, split.labels, split.track_ids)


def predict_segments(
    classifier: nn.Module,
    features: np.ndarray,
    device: torch.device | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Segment logits ``(N, n_classes)`` float32 for ``(N, n_mels, frames)`` dB features.

    Runs where the classifier already lives unless ``device`` is given (then it moves there).
    """
    if device is not None:
        classifier.to(device)
    else:
        device = next(classifier.parameters()).device
    classifier.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            block = np.asarray(features[start : start + batch_size], dtype=np.float32)
            out.append(classifier(torch.from_numpy(block).to(device)).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def _config(params: TrainParams, seed: int, store: FeatureStore, device: torch.device) -> dict:
    """Everything that shapes the weights: the checkpoint's key, and stored in it.

    Includes the code identity (source of models/, training/, features/frontend.py and the
    torch version): a finished checkpoint from other code must be retrained, not reused. And
    the numeric recipe in force (thread count, pinned code paths): a checkpoint half-trained
    under another one would finish with bytes that neither recipe gives alone.
    """
    index = store.index
    numerics = numeric_environment()
    return {
        **code_identity(),
        "params": to_dict(params),
        "seed": seed,
        "store_shape": list(store.features.shape),
        "store_content": store.meta.get("content_sha256"),
        "split_sizes": {k: int(v) for k, v in index["split"].value_counts().sort_index().items()},
        "genres": store.genres,
        "device": device.type,
        "numerics": {key: numerics[key] for key in RECIPE_KEYS},
    }


def _state_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@dataclass
class TrainState:
    """Where training stands after ``epoch`` epochs: history, best-so-far, early stopping.

    The live objects (weights, optimiser, scheduler, RNGs) are not part of it; together they
    make a checkpoint. :meth:`to_checkpoint` builds the dict that ``save_checkpoint`` writes
    and :meth:`from_checkpoint` reads this part back, so the on-disk keys live in one place.
    """

    best_state: dict[str, torch.Tensor]  # CPU copy of the best epoch's weights
    history: list[EpochMetrics] = field(default_factory=list)
    best_score: float = -1.0  # clip-level validation accuracy of ``best_epoch``
    best_epoch: int = 0
    patience_counter: int = 0  # epochs since the best one
    stopped_early: bool = False
    epoch: int = 0  # epochs done: a resumed run starts after it
    finished: bool = False  # nothing left to train (last epoch done or stopped early)

    @classmethod
    def fresh(cls, classifier: nn.Module) -> TrainState:
        """Nothing trained yet; the initial weights count as the best so far."""
        return cls(best_state=_state_cpu(classifier))

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> TrainState:
        return cls(
            best_state=dict(ckpt["best_state"]),
            history=[EpochMetrics(**h) for h in ckpt["history"]],
            best_score=float(ckpt["best_score"]),
            best_epoch=int(ckpt["best_epoch"]),
            patience_counter=int(ckpt["patience_counter"]),
            stopped_early=bool(ckpt["stopped_early"]),
            epoch=int(ckpt["epoch"]),
            finished=bool(ckpt["finished"]),
        )

    def to_checkpoint(
        self,
        *,
        config: dict[str, Any],
        config_hash: str,
        model: dict[str, torch.Tensor],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None,
        rng: dict[str, Any],
    ) -> dict[str, Any]:
        """The checkpoint body: this state plus the live objects' state dicts and the key."""
        return {
            "config_hash": config_hash,
            "config": config,
            "epoch": self.epoch,
            "finished": self.finished,
            "model": model,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "rng": rng,
            "history": [h.content() for h in self.history],
            "best_state": self.best_state,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "patience_counter": self.patience_counter,
            "stopped_early": self.stopped_early,
        }

    def record(self, metrics: EpochMetrics, classifier: nn.Module, params: TrainParams) -> None:
        """Add a finished epoch: keep the best weights, count patience, decide whether done."""
        epoch = metrics.epoch
        self.history.append(metrics)
        self.epoch = epoch
        if metrics.val_clip_accuracy > self.best_score:
            self.best_score, self.best_epoch = metrics.val_clip_accuracy, epoch
            self.patience_counter = 0
            self.best_state = _state_cpu(classifier)
        else:
            self.patience_counter += 1
        self.stopped_early = (
            params.early_stopping_patience > 0
            and self.patience_counter >= params.early_stopping_patience
            and epoch < params.epochs
        )
        self.finished = self.stopped_early or epoch == params.epochs


@dataclass
class _Trainer:
    """What one ``train_classifier`` call trains with: fixed inputs and the live objects."""

    classifier: nn.Module
    params: TrainParams
    seed: int
    device: torch.device
    checkpoint_path: Path
    train: SplitSource
    val: SplitSource
    n_classes: int
    input_stats: tuple[float, float]  # mean, std of the training split
    config: dict[str, Any]
    config_hash: str
    gen: torch.Generator
    ranks: Ranks = SINGLE
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = field(init=False, default=None)

    def fresh_start(self) -> TrainState:
        """Seed everything, re-draw the weights, new optimiser and scheduler: epoch 0."""
        seed_everything(self.seed)
        self.gen.manual_seed(self.seed)
        # initialise on CPU in the default layout: the draws then do not depend on the
        # device or on a layout left over from an earlier start
        self.classifier.to(device="cpu", memory_format=torch.contiguous_format)
        reset_weights(self.classifier)
        self.classifier.set_input_stats(*self.input_stats)
        # NHWC conv weights: ~1.3x faster training on CPU (oneDNN), and the layout cuDNN's
        # bf16 tensor-core kernels want on GPU
        self.classifier.to(device=self.device, memory_format=torch.channels_last)
        self.optimizer = _make_optimizer(self.classifier, self.params, self.device)
        self.scheduler = _make_scheduler(self.optimizer, self.params)
        return TrainState.fresh(self.classifier)

    @functools.cached_property
    def model(self) -> nn.Module:
        """What trains: the classifier itself, or (several ranks) the classifier with global
        BatchNorm inside DDP. Built on first use, after the weights are drawn or restored."""
        return self.ranks.wrap(self.classifier, self.device)

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Weights, optimiser, scheduler and every RNG as the checkpoint holds them."""
        self.classifier.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng(ckpt["rng"], self.gen)

    def save(self, state: TrainState) -> None:
        """Write the checkpoint atomically (see :func:`save_checkpoint`); rank 0 alone."""
        if not self.ranks.is_main:
            return
        body = state.to_checkpoint(
            config=self.config,
            config_hash=self.config_hash,
            model=_state_cpu(self.classifier),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
            rng=capture_rng(self.gen),
        )
        if self.ranks.distributed:  # provenance only: any world size resumes from it
            body["world_size"] = self.ranks.world_size
        save_checkpoint(self.checkpoint_path, body)


def train_classifier(
    classifier: nn.Module,
    store: FeatureStore,
    params: TrainParams,
    seed: int,
    checkpoint_path: Path,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    memory_budget_gb: float | None = None,
    ranks: Ranks = SINGLE,
    on_start: Callable[[int | None], None] | None = None,
) -> TrainResult:
    """Train ``classifier`` on the store's train split, select by val clip accuracy.

    The classifier's weights are re-initialised from ``seed`` (so results depend on the seed
    alone) and its input statistics are set from the training split. On return it lives on
    ``device``, in eval mode, holding the best epoch's weights.

    ``checkpoint_path`` is written atomically after every epoch, *before* ``on_epoch`` runs;
    a run resumed from it does not replay ``on_epoch`` for epochs already done (their
    metrics are in ``TrainResult.history``).

    ``on_start`` runs once the start is known (its argument: the epoch resumed from, ``None``
    from scratch), before the first epoch trains, so whatever it records (the stage's MLflow
    run id) exists before any checkpoint does: a job killed right after its first checkpoint
    resumes that record instead of starting a second one.

    ``ranks`` (several: a process group must be initialised, see
    :func:`genreflow.training.distributed.process_group`) splits each global batch of
    ``params.batch_size`` over the ranks; rank 0 alone writes the checkpoint. ``on_epoch``
    runs on every rank that passes one (the stage passes it on rank 0 only).

    ``memory_budget_gb`` (``runtime.memory_budget_gb``; ``None``: unlimited) bounds what the
    splits may take resident on the device; a split beyond it is streamed from the store
    (``store.features`` memory-mapped), with the same weights as a bytes result.
    """
    device = device or select_device()
    budget = None if memory_budget_gb is None else memory_budget_gb * 1e9
    trainer = _setup(classifier, store, params, seed, Path(checkpoint_path), device, budget, ranks)
    state, resumed_from = _resume_or_fresh(trainer)
    if on_start is not None:
        on_start(resumed_from)
    _run_epochs(trainer, state, on_epoch, progress)
    local_batchnorm(trainer.classifier)  # plain BatchNorm2d again, for saving and serving
    trainer.classifier.load_state_dict(state.best_state)
    trainer.classifier.to(device).eval()
    return TrainResult(
        best_epoch=state.best_epoch,
        best_val_clip_accuracy=state.best_score,
        history=state.history,
        stopped_early=state.stopped_early,
        resumed_from_epoch=resumed_from,
        streamed_splits=tuple(
            name
            for name, split in (("train", trainer.train), ("val", trainer.val))
            if split.streamed
        ),
    )


def _setup(
    classifier: nn.Module,
    store: FeatureStore,
    params: TrainParams,
    seed: int,
    checkpoint_path: Path,
    device: torch.device,
    budget_bytes: float | None = None,
    ranks: Ranks = SINGLE,
) -> _Trainer:
    """Check the params, open both splits (resident or streamed), compute the checkpoint key."""
    if params.epochs < 1 or params.batch_size < 1:
        raise ValueError(
            f"epochs and batch_size must be >= 1, got {params.epochs} and {params.batch_size}"
        )
    splits = open_splits(store, ("train", "val"), device, budget_bytes)
    train, val = splits["train"], splits["val"]
    stats = input_stats(RowView(store.features, train.rows))
    ranks.check_batch(min(params.batch_size, len(train)))
    config = plain_config(_config(params, seed, store, device))
    ranks.check_same(config_hash(config), "training config (code, params, store, numerics)")
    return _Trainer(
        classifier=classifier,
        params=params,
        seed=seed,
        device=device,
        checkpoint_path=checkpoint_path,
        train=train,
        val=val,
        n_classes=len(store.genres),
        input_stats=stats,
        config=config,
        config_hash=config_hash(config),
        gen=torch.Generator(device=device),
        ranks=ranks,
    )


def _resume_or_fresh(trainer: _Trainer) -> tuple[TrainState, int | None]:
    """The state to train on from, and the epoch it resumes from (``None``: from scratch).

    A stale checkpoint (another training config) or one that cannot be restored is
    ignored, and overwritten after the first epoch.
    """
    state = trainer.fresh_start()
    path = trainer.checkpoint_path
    ckpt = trainer.ranks.from_main(lambda: _read_checkpoint(path))  # rank 0's node has it
    if ckpt is not None and ckpt["config_hash"] != trainer.config_hash:
        log.warning(
            "checkpoint %s is stale: %s; training from scratch (different training config)",
            path,
            "; ".join(stale_reasons(ckpt.get("config"), trainer.config)),
        )
        return state, None
    if ckpt is None:
        return state, None
    try:
        resumed = TrainState.from_checkpoint(ckpt)
        trainer.restore(ckpt)
    except Exception as exc:  # a structurally broken checkpoint: never crash-loop on it
        log.warning(
            "%s: cannot restore checkpoint (%s: %s); training from scratch and overwriting it",
            path,
            type(exc).__name__,
            exc,
        )
        return trainer.fresh_start(), None
    if resumed.finished:
        log.info("%s: training already finished at epoch %d; not retraining", path, resumed.epoch)
    else:
        log.info("resuming from epoch %d (%s)", resumed.epoch, path)
    return resumed, resumed.epoch


def _run_epochs(
    trainer: _Trainer,
    state: TrainState,
    on_epoch: Callable[[EpochMetrics], None] | None,
    progress: bool,
) -> None:
    """Train the epochs left after ``state.epoch``, until the last one or early stopping."""
    params = trainer.params
    bar = progress_bar(
        total=params.epochs,
        initial=state.epoch,
        desc=f"train {params.arch}",
        unit="epoch",
        disable=not progress or state.finished,
    )
    try:
        for epoch in range(state.epoch + 1, params.epochs + 1):
            if state.finished:
                break
            metrics = _epoch_step(trainer, state, epoch)
            bar.update(1)
            bar.set_postfix(
                loss=f"{metrics.train_loss:.3f}",
                acc=f"{metrics.train_accuracy:.3f}",
                val_clip=f"{metrics.val_clip_accuracy:.3f}",
                best=f"{state.best_score:.3f}",
            )
            if on_epoch is not None:
                on_epoch(metrics)
            if state.stopped_early:
                log.info(
                    "early stopping after epoch %d: no val clip accuracy gain for %d epochs",
                    epoch,
                    state.patience_counter,
                )
                break
    finally:
        bar.close()


def _epoch_step(trainer: _Trainer, state: TrainState, epoch: int) -> EpochMetrics:
    """Train and validate one epoch, record it in ``state``, then write the checkpoint."""
    params = trainer.params
    t0 = time.perf_counter()
    lr = float(trainer.optimizer.param_groups[0]["lr"])
    trainer.ranks.seed_dropout(trainer.seed, epoch)
    train_loss, train_acc = _train_epoch(
        trainer.model,
        trainer.train,
        params,
        trainer.optimizer,
        trainer.gen,
        trainer.n_classes,
        trainer.ranks,
    )  # returns host floats, so the device is synchronised here
    train_seconds = time.perf_counter() - t0
    if not math.isfinite(train_loss):
        raise FloatingPointError(
            f"train {params.arch}: training loss became {train_loss} in epoch {epoch} "
            f"(lr {lr:g}); lower the learning rate or enable batch_norm"
        )
    # rank 0 validates; every rank records its numbers, so all take the same decisions
    val_loss, val_acc, val_clip = trainer.ranks.from_main(
        lambda: _evaluate(trainer.classifier, trainer.val)
    )
    if trainer.scheduler is not None:
        trainer.scheduler.step()
    metrics = EpochMetrics(
        epoch=epoch,
        train_loss=train_loss,
        train_accuracy=train_acc,
        val_loss=val_loss,
        val_accuracy=val_acc,
        val_clip_accuracy=val_clip,
        lr=lr,
        seconds=0.0,
        train_seconds=train_seconds,
        train_segments=_segments_per_epoch(len(trainer.train), params.batch_size),
    )
    state.record(metrics, trainer.classifier, params)
    metrics.seconds = time.perf_counter() - t0  # as of the checkpoint write below
    trainer.save(state)
    return metrics


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        log.warning("%s; training from scratch and overwriting it", exc)
        return None
