"""Data-parallel training across processes (torchrun): who this process is, the process group,
BatchNorm over the global batch, the DDP wrapper and each rank's shard of a global batch.

Why it is built this way:

- **One recipe, any world size.** The global batch stays ``batch_size``; rank ``r`` takes the
  ``r``-th contiguous slice of each global batch of the shared permutation (every rank draws
  the same permutation and augmentations from the same seeded generator, for the whole global
  batch, then keeps its slice). DDP averages the gradients, so one step is the single-process
  step up to the order of float sums.
- **BatchNorm sees the global batch.** ``nn.SyncBatchNorm`` refuses CPU tensors in torch 2.14
  ("SyncBatchNorm expected input tensor to be on GPU", ``nn/modules/batchnorm.py``), so gloo
  runs could not use it. :class:`GlobalBatchNorm2d` computes the same statistics with two
  differentiable all-reduces (sum and count, then the sum of squared deviations), on CPU and
  CUDA alike: one code path, tested here. It is a ``BatchNorm2d`` (same parameters, buffers,
  state-dict keys and init), and only its training forward under a process group differs.
- **World size 1 is today's code:** no process group, no wrapper, no converted layers.
- **Dropout per rank** is re-seeded from ``(seed, epoch, rank)`` at each epoch
  (:meth:`Ranks.seed_dropout`): a resume at an epoch boundary, from a checkpoint made with
  any world size, then draws the same masks without storing one RNG state per rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from genreflow.core.errors import GenreflowError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a collective waits for a missing rank before failing. torchrun stops every rank of
#: a node when one dies; this bounds the wait of ranks on other nodes (and of a rank whose
#: peer hangs) while staying above the longest gap between collectives (rank 0 validating).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


class DistributedError(GenreflowError, RuntimeError):
    """A data-parallel run cannot go on; the message says which setting or rank is at fault."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: global rank, rank on its node, number of ranks."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Ranks:
        """What torchrun told this process (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``); one
        rank of one when it was not launched by torchrun."""
        env = os.environ
        return cls(
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes checkpoints and outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self) -> torch.device:
        """``cuda:LOCAL_RANK`` when CUDA is there (one GPU per rank), else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch that does not split evenly: uneven shards would weight the
        ranks' gradients unequally and change the recipe."""
        if batch_size % self.world_size:
            raise DistributedError(
                f"batch_size {batch_size} does not split over {self.world_size} ranks; "
                f"choose a multiple of world_size {self.world_size}"
            )

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (rows ``r*b/W`` to ``(r+1)*b/W``)."""
        if not self.distributed:
            return batch
        part = batch.shape[0] // self.world_size
        return batch[self.rank * part : (self.rank + 1) * part]

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Re-seed the global torch RNG (dropout) from ``(seed, epoch, rank)``; nothing at world
        size 1, whose RNG state is checkpointed and restored as before."""
        if self.distributed:
            torch.manual_seed(rank_seed(seed, epoch, self.rank))

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (itself at world size 1)."""
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the ranks (itself, untouched, at world size 1)."""
        if not self.distributed:
            return value
        return self.sum(value) / self.world_size

    def check_same(self, value: Any, what: str) -> None:
        """Fail on a rank whose ``value`` differs from rank 0's: ranks that disagree on what
        they train (another checkout, store or thread count on another node) would take
        different decisions and hang or silently mix recipes."""
        main = self.from_main(lambda: value)
        if main != value:
            raise DistributedError(
                f"rank {self.rank}'s {what} differs from rank 0's; every node needs the same "
                "checkout, params and feature store"
            )

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its result handed to every rank (pickled): one decision
        for all ranks, and data only rank 0 can read (a checkpoint on its node)."""
        if not self.distributed:
            return compute()
        box: list[Any] = [compute() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``module`` itself at world size 1, else ``module`` with its
        BatchNorm layers made global (in place) inside DistributedDataParallel."""
        if not self.distributed:
            return module
        sync_batchnorm(module)
        ids = [device.index] if device.type == "cuda" else None
        # Buffers (running statistics, input statistics) are equal on every rank by
        # construction, so they need no broadcast before each forward.
        return nn.parallel.DistributedDataParallel(
            module, device_ids=ids, forward_sync_buffers=False
        )


SINGLE = Ranks()


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed for ``(seed, epoch, rank)``, independent of the Python hash salt."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA ranks, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device | None = None) -> Iterator[torch.device]:
    """Join the job's process group (from torchrun's environment) for the block; yields this
    rank's device (``device``, else :meth:`Ranks.device`). Nothing at world size 1."""
    device = device or ranks.device()
    if not ranks.distributed:
        yield device
        return
    if device.type == "cuda":
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DistributedError(
                f"rank {ranks.rank} needs GPU {device.index} (one per rank on a node) but "
                f"{torch.cuda.device_count()} are visible; lower --nproc-per-node or world_size"
            )
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend_for(device),
        timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield device
    finally:
        dist.destroy_process_group()


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: every rank's statistics
    feed every rank's loss, so each rank's input gets the gradient of all of them."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks).

    The mean comes from all-reduced sums and counts, the variance from all-reduced squared
    deviations about it (no cancellation of E[x^2] - E[x]^2). Running statistics follow
    ``BatchNorm2d``'s rule (momentum, unbiased variance), so they are equal on every rank.
    Outside training, or without a process group of two or more, it is ``BatchNorm2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float()
        dims = (0, 2, 3)
        local_count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype)
        totals = _SumOverRanks.apply(torch.cat([x.sum(dim=dims), local_count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _SumOverRanks.apply(centred.square().sum(dim=dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as BatchNorm2d
            factor = 1.0 / float(self.num_batches_tracked.item())
        else:
            factor = self.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Make every ``BatchNorm2d`` in ``module`` a :class:`GlobalBatchNorm2d`, in place.

    The layers keep their parameters, buffers and state-dict keys (only the class changes),
    so the optimiser, checkpoints and served models see the same tensors.
    """
    for layer in module.modules():
        if type(layer) is nn.BatchNorm2d:
            layer.__class__ = GlobalBatchNorm2d
    return module


def local_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`sync_batchnorm`: plain ``BatchNorm2d`` layers for saving and serving."""
    for layer in module.modules():
        if type(layer) is GlobalBatchNorm2d:
            layer.__class__ = nn.BatchNorm2d
    return module


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the module itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
