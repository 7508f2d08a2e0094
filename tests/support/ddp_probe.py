"""A script the DDP tests run as one process or as ranks under torchrun: it trains one of the
tiny profile's networks on a feature store through the real training loop, and rank 0 writes
what the tests compare as JSON: the epoch history and the optimiser steps taken.

Why a script and not an in-process test: DDP needs one process per rank, started the way a
user starts them (torchrun), each pinned before torch computes, as a stage pins itself.

    python tests/support/ddp_probe.py FEATURES OUT.json --arch crnn --epochs 3 --seed 3
    torchrun --standalone --nproc-per-node 2 tests/support/ddp_probe.py FEATURES OUT.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: `support` imports


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--arch", default="crnn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-norm", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true", help="keep OUT.pt: resume from it")
    ap.add_argument("--stop-after", type=int, default=0, help="every rank exits (code 3) here")
    args = ap.parse_args()

    from genreflow.core.numerics import pin_numerics

    pin_numerics(args.threads)  # before torch computes, as every stage does

    from torch.optim.optimizer import register_optimizer_step_post_hook

    from genreflow.features.store import FeatureStore
    from genreflow.models import build_classifier
    from genreflow.training.distributed import Ranks, process_group
    from genreflow.training.loop import train_classifier
    from support.tiny import tiny_train

    steps = [0]
    register_optimizer_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    params = tiny_train(
        args.arch, epochs=args.epochs, batch_size=args.batch_size, batch_norm=args.batch_norm
    )
    store = FeatureStore.load(args.features)
    _, n_mels, n_frames = store.features.shape
    model = build_classifier(params, int(n_mels), int(n_frames), len(store.genres))
    ranks = Ranks.from_env()
    checkpoint = args.out.with_suffix(".pt")  # rank 0 alone reads and writes it
    if ranks.is_main and not args.resume:
        checkpoint.unlink(missing_ok=True)
    with process_group(ranks) as device:
        result = train_classifier(
            model,
            store,
            params,
            seed=args.seed,
            checkpoint_path=checkpoint,
            on_epoch=lambda m: stop(m.epoch, args.stop_after),
            device=device,
            progress=False,
            ranks=ranks,
        )
    if ranks.is_main:
        args.out.write_text(
            json.dumps(
                {
                    "world_size": ranks.world_size,
                    "steps": steps[0],
                    "resumed_from_epoch": result.resumed_from_epoch,
                    "history": [h.content() for h in result.history],
                    "bn_classes": sorted({type(m).__name__ for m in model.modules()}),
                }
            )
        )


def stop(epoch: int, after: int) -> None:
    """Stand in for a job stopped once epoch ``after`` is checkpointed (on_epoch runs after
    the checkpoint is written)."""
    if epoch == after:
        raise SystemExit(3)


if __name__ == "__main__":
    main()
