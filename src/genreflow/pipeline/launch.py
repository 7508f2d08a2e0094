"""A training stage with ``world_size > 1`` launches itself under torchrun and waits.

Why in-process torchrun (``torch.distributed.run.run``) rather than a subprocess or a
supervisor of our own: it is torchrun itself (the same argument parser, rendezvous and elastic
agent, which stops every rank when one dies), and its failure comes back as a
``ChildFailedError`` naming the rank and exit code. The stage turns that into one line saying
how far the checkpoint got, instead of torchrun's multi-line report.

A run started by hand under torchrun (``TORCHELASTIC_RUN_ID`` is set) trains directly, with
the launcher's world size, whatever ``world_size`` says.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from genreflow.core.config import Params, TrainSection
from genreflow.core.errors import GenreflowError
from genreflow.core.paths import Layout

log = logging.getLogger(__name__)


class RankFailedError(GenreflowError, RuntimeError):
    """A rank of a data-parallel stage failed; the message names it and where a re-run
    resumes."""


def under_torchrun() -> bool:
    """Whether this process is a rank started by torchrun (its elastic agent sets this)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def torchrun_args(world_size: int, script: str) -> list[str]:
    """The torchrun command line a stage relaunches itself with (one node, local
    rendezvous on a free port)."""
    return ["--standalone", "--nproc-per-node", str(world_size), script]


def train_or_launch(params: Params, section: TrainSection, layout: Layout) -> None:
    """Run a training stage: here when one process is asked for (or this already is a rank),
    else as ``world_size`` ranks under torchrun, waiting for them."""
    if params.world_size > 1 and not under_torchrun():
        arch = getattr(params, section).arch
        launch(params.world_size, sys.argv[0], layout.checkpoint(arch))
        return
    from genreflow.pipeline.train import train_stage

    train_stage(params, section, layout)


def launch(world_size: int, script: str, checkpoint: Path) -> None:
    """Run ``script`` as ``world_size`` ranks under torchrun and wait; a failed rank raises
    :class:`RankFailedError` (see :func:`describe_failure`)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun_args(world_size, script)
    log.info("launching %d ranks: torchrun %s", world_size, " ".join(args))
    try:
        torchrun(args)
    except ChildFailedError as exc:
        rank, exitcode = root_failure({r: f.exitcode for r, f in exc.failures.items()})
        raise RankFailedError(describe_failure(rank, exitcode, checkpoint)) from None


def root_failure(exitcodes: dict[int, int]) -> tuple[int, int]:
    """The rank whose failure stopped the job, and its exit code. The agent stops the
    survivors with SIGTERM and records them as failed too, in the same second (torchrun's own
    "first observed failure" is a tie then): a rank that did not die of that SIGTERM is the
    cause; the lowest such rank, else the lowest rank."""
    causes = [r for r, code in sorted(exitcodes.items()) if code != -signal.SIGTERM]
    rank = causes[0] if causes else min(exitcodes)
    return rank, exitcodes[rank]


def torchrun(args: list[str]) -> None:
    """``torchrun ARGS`` in this process (torch.distributed.run's own entry, without the
    ``@record`` wrapper that would print its report); raises ``ChildFailedError``."""
    from torch.distributed.run import parse_args, run

    run(parse_args(args))


def describe_failure(rank: int, exitcode: int, checkpoint: Path) -> str:
    """One line: which rank failed and how, and the epoch a re-run resumes from."""
    how = f"exit code {exitcode}"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            how += f", {signal.Signals(-exitcode).name}"
    return f"rank {rank} died ({how}); re-run to {_resume_point(checkpoint)}"


def _resume_point(checkpoint: Path) -> str:
    from genreflow.training.checkpoint import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError:
        state = None
    if not state or int(state["epoch"]) == 0:
        return "train from the start (no epoch was checkpointed)"
    return f"resume after epoch {int(state['epoch'])} ({checkpoint})"
