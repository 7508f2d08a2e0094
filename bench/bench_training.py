"""Training throughput of both classifiers through the real training loop.

Random features shaped like the default store (96 mels x 130 frames, float16) with a
realistic split (~2500 train, ~840 val segments of 7-segment clips). Everything runs
through ``train_classifier`` itself (the same code path the stages use), and reports

- train segments/second: the training passes alone (``EpochMetrics.train_seconds``),
  epoch 1 excluded as warm-up (allocator, oneDNN/cuDNN autotuning), and
- seconds per full epoch (train + val + checkpoint),

on ``--device`` (default ``auto``: :func:`select_device`, i.e. CUDA when there is one; on
CUDA the same loop with bf16 autocast, ``--no-mixed-precision`` for float32). Each result is
one JSON line on stdout plus a readable line on stderr, both naming the device.
GPU goal: >= 25,000 segments/s for the CNN on an H100; measure it with enough batches per
epoch to time, e.g. ``--device cuda --arch cnn --batch-size 256 --n-train 50000 --epochs 3``.

    .venv/bin/python bench/bench_training.py                 # both models, defaults below
    .venv/bin/python bench/bench_training.py --arch cnn --epochs 4 --batch-size 256
    .venv/bin/python bench/bench_training.py --device cpu --epochs 1 --n-train 256 --n-val 70

``--nproc N`` (N > 1) relaunches the script under ``torchrun --standalone --nproc-per-node N``:
N data-parallel ranks (gloo on CPU, NCCL with ``--device cuda``, one GPU per rank) share each
global batch of ``--batch-size``; rank 0 reports the global throughput. Compare it with
``--nproc 1`` at the same global batch (strong scaling) or at N times the batch (weak)::

    PYTHONPATH=src .venv/bin/python bench/bench_training.py --arch cnn --nproc 2 --threads 1
    PYTHONPATH=src .venv/bin/python bench/bench_training.py --device cuda --nproc 8 \
        --arch cnn --batch-size 2048 --n-train 200000 --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genreflow.core.config import AugmentParams, FeatureParams, TrainParams
from genreflow.features.store import FeatureStore
from genreflow.models import build_classifier
from genreflow.training.distributed import Ranks, process_group
from genreflow.training.loop import select_device, train_classifier

SEGMENTS_PER_CLIP = 7
# the widths, schedule and augmentation suggested for params.yaml (train_cnn / train_lstm)
AUGMENT = AugmentParams(
    freq_masks=1, freq_mask_width=8, time_masks=1, time_mask_width=16, random_crop_frames=8
)
ARCH_DEFAULTS = {
    "cnn": {
        "lr": 0.01,
        "channels": (16, 32, 64, 128, 256),
        "dense": (512, 256, 128, 64),
    },
    "crnn": {
        "lr": 0.02,
        "batch_norm": True,
        "channels": (16, 32, 64, 64),
        "dense": (),
        "lstm_hidden": 64,
    },
}


def random_store(n_train: int, n_val: int, n_mels: int, n_frames: int, seed: int) -> FeatureStore:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("val", n_val)):
        n_clips = -(-n // SEGMENTS_PER_CLIP)
        for c in range(n_clips):
            label = c % 10
            for s in range(SEGMENTS_PER_CLIP):
                rows.append((f"{split}{c:05d}", f"g{label}", label, split, s, ""))
    index = pd.DataFrame(rows, columns=["track_id", "genre", "label", "split", "segment", "path"])
    feats = rng.standard_normal((len(index), n_mels, n_frames), dtype=np.float32)
    feats = (feats * 15.0 - 40.0).astype(np.float16)
    fp = dataclasses.asdict(FeatureParams(n_mels=n_mels))
    return FeatureStore(feats, index, {"features": fp, "genres": [f"g{i}" for i in range(10)]})


def resolve_device(name: str, ranks: Ranks) -> torch.device:
    """``auto`` -> :func:`select_device`; ``cuda`` must really be there (no silent CPU run).
    Under torchrun each rank takes the GPU of its local rank."""
    if name == "auto":
        return ranks.device() if ranks.distributed else select_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"bench_training: --device cuda, but torch {torch.__version__} sees no CUDA device "
            f"(torch.cuda.is_available() is False; built for CUDA {torch.version.cuda})"
        )
    if name == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return torch.device(name)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["cnn", "crnn", "both"], default="both")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=2520)
    ap.add_argument("--n-val", type=int, default=840)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to train (auto: CUDA when available, else CPU; cuda fails if absent)",
    )
    ap.add_argument(
        "--no-mixed-precision",
        dest="mixed_precision",
        action="store_false",
        help="float32 on CUDA instead of bf16 autocast (CPU always runs float32)",
    )
    ap.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel ranks on this machine (> 1: relaunch under torchrun)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from genreflow.pipeline.launch import torchrun, under_torchrun

    if args.nproc > 1 and not under_torchrun():
        # without --nproc: torchrun's parser would take it for an abbreviation of its own
        # --nproc-per-node (the ranks see TORCHELASTIC_RUN_ID and do not relaunch anyway)
        torchrun(["--standalone", "--nproc-per-node", str(args.nproc), *without_nproc(sys.argv)])
        return 0
    ranks = Ranks.from_env()
    with process_group(ranks, resolve_device(args.device, ranks)) as device:
        return bench(args, ranks, device)


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def bench(args: argparse.Namespace, ranks: Ranks, device: torch.device) -> int:
    """Train each arch and, on rank 0, report it."""
    store = random_store(args.n_train, args.n_val, 96, 130, seed=0)
    if args.threads > 0:  # params.yaml `threads` (unpinned here: bench_numerics.py prices the pins)
        torch.set_num_threads(args.threads)
    archs = ["cnn", "crnn"] if args.arch == "both" else [args.arch]
    results = []
    for arch in archs:
        params = TrainParams(
            arch=arch,
            epochs=args.epochs + 1,  # + the warm-up epoch
            batch_size=args.batch_size,
            lr_schedule="cosine",
            augment=AUGMENT,
            mixed_precision=args.mixed_precision,
            **ARCH_DEFAULTS[arch],
        )
        model = build_classifier(params, 96, 130, 10)
        with tempfile.TemporaryDirectory() as tmp:
            res = train_classifier(
                model,
                store,
                params,
                seed=0,
                checkpoint_path=Path(tmp) / "ckpt.pt",
                device=device,
                progress=False,
                ranks=ranks,
            )
        timed = res.history[1:] or res.history
        seg_s = sum(h.train_segments for h in timed) / sum(h.train_seconds for h in timed)
        epoch_s = [round(h.seconds, 2) for h in res.history]
        timed_epoch_s = sum(h.seconds for h in timed) / len(timed)
        n_params = sum(p.numel() for p in model.parameters())
        row = {
            "arch": arch,
            "device": device_label(device),
            "nproc": ranks.world_size,
            "bf16_autocast": device.type == "cuda" and params.mixed_precision,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "n_train": args.n_train,
            "n_val": args.n_val,
            "params": n_params,
            "train_segments_per_s": round(seg_s, 1),
            "seconds_per_epoch": round(timed_epoch_s, 3),
            "epoch_seconds": epoch_s,
            "channels": list(params.channels),
            "dense": list(params.dense),
        }
        results.append(row)
        if not ranks.is_main:
            continue
        print(json.dumps(row), flush=True)
        print(
            f"{arch} on {ranks.world_size} x {row['device']}: {seg_s:,.1f} train segments/s, "
            f"{timed_epoch_s:.2f} s per epoch (mean of {len(timed)} timed; all: {epoch_s})",
            file=sys.stderr,
            flush=True,
        )
    if args.json and ranks.is_main:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
