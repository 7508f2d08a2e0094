"""Training from a streamed split against the same split resident: throughput and peak RSS.

Builds a memory-mapped store of realistic shape (96 mels x 130 frames, float16; random dB
values, or ``--tile-from`` a real store's segments repeated) in a temporary directory, then:

- **throughput**: one child process trains one epoch resident, one streamed, alternating,
  ``--repeats`` rounds; the best training-pass throughput of each (segments/s from
  ``EpochMetrics.train_seconds``), their ratio streamed/resident, and the median of each
  round's ratio (robust to load that other processes shift under it). Both modes in one
  process, so both see the same allocator, oneDNN and page-cache state;
- **peak RSS**: one fresh child per mode training one epoch, its ``VmHWM`` at the end (the
  whole process: torch, the model, the split or its batches; pages of the store mapped
  into the process count, the page cache does not).

``--read-only`` times the data path alone (open the split, gather a shuffled epoch of
batches, no model): on this CPU training runs at tens of segments/s, so a store of several
GB is priced for memory and read speed this way, and the full-training ratio on a smaller one.

Every child pins numerics (:func:`genreflow.core.numerics.pin_numerics`, ``--threads``)
before torch computes, as the stages do. ``--cold`` drops the store file from the page cache
(``posix_fadvise(DONTNEED)``, no root needed) before each streamed epoch, so its reads come
from the disk instead of memory. The store directory is deleted at the end.

    .venv/bin/python bench/bench_streaming.py                        # default CNN, 2520 train
    .venv/bin/python bench/bench_streaming.py --model tiny --n-train 40000 --repeats 2
    .venv/bin/python bench/bench_streaming.py --read-only --n-train 60000 --batch-size 64
    .venv/bin/python bench/bench_streaming.py --read-only --cold --tile-from data/features
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_MELS, N_FRAMES, SEGMENTS_PER_CLIP, N_CLASSES = 96, 130, 19, 10
MODES = ("resident", "streamed")
BUDGET_GB = {"resident": 1e6, "streamed": 1e-6}
MODELS = {  # the default profile's CNN, and a tiny one that leaves the reads exposed
    "default": {"channels": (16, 32, 64, 128, 256), "dense": (512, 256, 128, 64)},
    "tiny": {"channels": (4, 4, 4, 4, 4), "dense": (16, 16, 16, 16)},
}


def write_store(root: Path, n_train: int, n_val: int, tile_from: Path | None) -> Path:
    """A store of ``n_train + n_val`` segments in whole clips, the splits interleaved clip by
    clip in the file as a real store's are; written chunk by chunk (bounded memory)."""
    import numpy as np
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    clips = {s: -(-n // SEGMENTS_PER_CLIP) for s, n in (("train", n_train), ("val", n_val))}
    order = ["train"] * clips["train"] + ["val"] * clips["val"]
    np.random.default_rng(0).shuffle(order)
    rows = [
        (f"{split}{c:06d}", f"g{c % N_CLASSES}", c % N_CLASSES, split, s, "")
        for c, split in enumerate(order)
        for s in range(SEGMENTS_PER_CLIP)
    ]
    cols = ["track_id", "genre", "label", "split", "segment", "path"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "index.csv", index=False)
    out = np.lib.format.open_memmap(
        root / "segments.npy", mode="w+", dtype=np.float16, shape=(len(rows), N_MELS, N_FRAMES)
    )
    source = np.load(tile_from / "segments.npy", mmap_mode="r") if tile_from else None
    rng = np.random.default_rng(1)
    chunk = 2048
    for start in range(0, len(out), chunk):
        stop = min(start + chunk, len(out))
        if source is not None:
            picks = np.arange(start, stop) % len(source)
            out[start:stop] = source[picks]
        else:
            block = rng.standard_normal((stop - start, N_MELS, N_FRAMES), dtype=np.float32)
            out[start:stop] = (block * 15.0 - 40.0).astype(np.float16)
    out.flush()
    del out
    meta = {"features": {"n_mels": N_MELS}, "genres": [f"g{i}" for i in range(N_CLASSES)]}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def _drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def train_once(store_dir: Path, mode: str, args: argparse.Namespace) -> dict:
    """One epoch of ``train_classifier`` in ``mode``; its training-pass throughput."""
    from genreflow.core.config import AugmentParams, TrainParams
    from genreflow.features.store import FeatureStore
    from genreflow.models import build_classifier
    from genreflow.training.loop import train_classifier

    if args.cold and mode == "streamed":
        _drop_page_cache(store_dir / "segments.npy")
    store = FeatureStore.load(store_dir, mmap=True)
    params = TrainParams(
        arch="cnn",
        epochs=1,
        batch_size=args.batch_size,
        augment=AugmentParams(random_crop_frames=8),
        **MODELS[args.model],
    )
    model = build_classifier(params, N_MELS, N_FRAMES, N_CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_classifier(
            model,
            store,
            params,
            seed=0,
            checkpoint_path=Path(tmp) / "checkpoint.pt",
            device=_device(args),
            progress=False,
            memory_budget_gb=BUDGET_GB[mode],
        )
    epoch = result.history[-1]
    assert bool(result.streamed_splits) == (mode == "streamed"), result.streamed_splits
    return {
        "mode": mode,
        "segments_per_s": epoch.train_segments / epoch.train_seconds,
        "train_seconds": epoch.train_seconds,
        "streamed_splits": list(result.streamed_splits),
    }


def read_once(store_dir: Path, mode: str, args: argparse.Namespace) -> dict:
    """The data path alone (``--read-only``): open the training split in ``mode`` and gather
    one shuffled epoch of batches, no model; seconds to open, gathered segments/s."""
    import torch

    from genreflow.features.store import FeatureStore
    from genreflow.training.batches import open_splits

    if args.cold and mode == "streamed":
        _drop_page_cache(store_dir / "segments.npy")
    store = FeatureStore.load(store_dir, mmap=True)
    t0 = time.perf_counter()
    device = _device(args)
    source = open_splits(store, ("train",), device, BUDGET_GB[mode] * 1e9)["train"]
    t1 = time.perf_counter()
    perm = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))
    seen, check = 0, 0.0
    for xb, _ in source.batches(perm.to(device), args.batch_size):
        seen += len(xb)
        check += float(xb[:, 0, 0].sum())  # use each batch, as training would
    t2 = time.perf_counter()
    assert source.streamed == (mode == "streamed")
    return {
        "mode": mode,
        "open_seconds": t1 - t0,
        "segments_per_s": seen / (t2 - t1),
        "train_seconds": t2 - t1,
    }


def _device(args: argparse.Namespace):
    import torch

    return torch.device(args.device)


def peak_rss_mb() -> float:
    """This process image's peak RSS: ``VmHWM``, not ``ru_maxrss``, which Linux carries over
    ``execve`` and so would report the parent's size at the fork if that was larger."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> int:
    """``--child throughput`` (alternating rounds) or ``--child resident|streamed`` (RSS)."""
    from genreflow.core.numerics import pin_numerics

    pinned = pin_numerics(args.threads)
    store_dir = Path(args.store)
    once = read_once if args.read_only else train_once
    if args.child == "throughput":
        for mode in MODES:  # warm-up, not recorded: allocator, oneDNN, page cache
            once(store_dir, mode, args)
        runs = [once(store_dir, m, args) for _ in range(args.repeats) for m in MODES]
        print(json.dumps({"pinned": pinned, "runs": runs}), flush=True)
        return 0
    run = once(store_dir, args.child, args)
    run["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps({"pinned": pinned, **run}), flush=True)
    return 0


def _run_child(args: argparse.Namespace, store: Path, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--store", str(store)]
    cmd += ["--model", args.model, "--batch-size", str(args.batch_size)]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    cmd += ["--device", args.device] + (["--cold"] if args.cold else [])
    cmd += ["--read-only"] if args.read_only else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_streaming: child {what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _round_ratios(throughput: dict) -> list[float]:
    runs = throughput["runs"]
    pairs = zip(runs[::2], runs[1::2], strict=True)  # (resident, streamed) per round
    return [s["segments_per_s"] / r["segments_per_s"] for r, s in pairs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2520)
    ap.add_argument("--n-val", type=int, default=840)
    ap.add_argument("--model", choices=sorted(MODELS), default="default")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; best of each")
    ap.add_argument("--threads", type=int, default=2, help="params.yaml threads (the recipe)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--cold", action="store_true", help="streamed reads from disk, not cache")
    ap.add_argument("--read-only", action="store_true", help="gather batches, train nothing")
    ap.add_argument("--tile-from", type=Path, help="repeat this store's segments")
    ap.add_argument("--keep-store", type=Path, help="build (or reuse) the store here, keep it")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        store = args.keep_store or Path(tmp) / "features"
        t0 = time.perf_counter()
        if not (store / "segments.npy").is_file():
            write_store(store, args.n_train, args.n_val, args.tile_from)
        built_s = time.perf_counter() - t0
        size_gb = (store / "segments.npy").stat().st_size / 1e9
        throughput = _run_child(args, store, "throughput")
        rss = {mode: _run_child(args, store, mode) for mode in MODES}
    best = {
        m: max(r["segments_per_s"] for r in throughput["runs"] if r["mode"] == m) for m in MODES
    }
    result = {
        "store_gb": round(size_gb, 3),
        "store_build_s": round(built_s, 1),
        "n_train": args.n_train,
        "n_val": args.n_val,
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": args.device,
        "cold": args.cold,
        "read_only": args.read_only,
        "pinned": throughput["pinned"],
        "segments_per_s": {m: round(v, 1) for m, v in best.items()},
        "all_segments_per_s": [
            (r["mode"], round(r["segments_per_s"], 1)) for r in throughput["runs"]
        ],
        "ratio_streamed_over_resident": round(best["streamed"] / best["resident"], 3),
        # each round's streamed epoch over the resident epoch just before it: under shifting
        # load (other processes), their median says more than the ratio of the bests
        "median_round_ratio": round(float(statistics.median(_round_ratios(throughput))), 3),
        "peak_rss_mb": {m: round(rss[m]["peak_rss_mb"]) for m in MODES},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result), flush=True)
    print(
        f"streamed/resident throughput {result['ratio_streamed_over_resident']} "
        f"({best['streamed']:.1f} vs {best['resident']:.1f} segments/s, best of "
        f"{args.repeats}); peak RSS resident {result['peak_rss_mb']['resident']} MB, "
        f"streamed {result['peak_rss_mb']['streamed']} MB; store {size_gb:.2f} GB",
        file=sys.stderr,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
