"""Calibrate the synthetic corpus: how separable are its genres by simple clip statistics?

Generates the corpus (profile from params.yaml unless overridden), summarises each whole
clip by the mean and standard deviation over time of its log-mel spectrogram (the
pipeline's own :class:`LogMelFrontend`), splits 60/20/20 stratified by genre, fits a
standardised logistic regression on train (C picked on val) and prints test accuracy and
the per-genre confusion. The generator is tuned so this lands around 50-75%: hard enough
that a model has something to learn, far from a trivially separable toy.

``--cnn`` adds a quick small-CNN check on 3-s log-mel segments (clip-level split, so no
leakage), to see that the difficulty is not only in the clip-level statistics.

    .venv/bin/python bench/calibrate_synthetic.py                 # default profile
    .venv/bin/python bench/calibrate_synthetic.py --seed 1 --clips 60 --duration 12
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from genreflow.core.config import FeatureParams, load_params
from genreflow.features.frontend import LogMelFrontend
from genreflow.sources.synthetic.corpus import generate_corpus


def _cpu_s() -> float:
    """CPU seconds of this process plus its finished children (the generator's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 60/20/20 train/val/test split of clip indices."""
    idx = np.arange(len(labels))
    train, rest = train_test_split(idx, test_size=0.4, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return train, val, test


def clip_features(waves: list[np.ndarray], fp: FeatureParams) -> np.ndarray:
    """Mean and std over time of each band of the whole clip's log-mel spectrogram."""
    fe = LogMelFrontend(fp)
    feats = []
    with torch.no_grad():
        for w in waves:
            mel = fe(torch.from_numpy(w)).numpy()
            feats.append(np.concatenate([mel.mean(axis=1), mel.std(axis=1)]))
    return np.stack(feats)


def logreg(
    x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, te: np.ndarray, seed: int
) -> tuple[float, float, float, np.ndarray]:
    best = None
    for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed)
        )
        model.fit(x[tr], y[tr])
        acc = accuracy_score(y[va], model.predict(x[va]))
        if best is None or acc > best[0]:
            best = (acc, c, model)
    val_acc, c, model = best
    pred = model.predict(x[te])
    return val_acc, c, accuracy_score(y[te], pred), pred


def cnn_check(
    waves: list[np.ndarray],
    y: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    fp: FeatureParams,
    epochs: int,
    seed: int,
) -> tuple[float, float]:
    """Small CNN on 3-s segments; returns (segment accuracy, clip accuracy by mean logits)."""
    torch.manual_seed(seed)
    fe = LogMelFrontend(fp)
    with torch.no_grad():
        segs = [fe.segments(torch.from_numpy(w)) for w in waves]
    n_seg = segs[0].shape[0]
    x = torch.stack(segs)  # (clips, segs, mels, frames)
    mu, sd = x[tr].mean(), x[tr].std()
    x = (x - mu) / sd
    n_cls = int(y.max()) + 1
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.BatchNorm2d(64),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(64, n_cls),
    )
    xtr = x[tr].reshape(-1, 1, *x.shape[2:])
    ytr = torch.from_numpy(np.repeat(y[tr], n_seg))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        logits = net(x[te].reshape(-1, 1, *x.shape[2:])).reshape(len(te), n_seg, n_cls)
    seg_acc = float((logits.argmax(-1).numpy() == y[te][:, None]).mean())
    clip_acc = float((logits.mean(1).argmax(-1).numpy() == y[te]).mean())
    return seg_acc, clip_acc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips", type=int, help="clips per genre (default: params.yaml)")
    ap.add_argument("--duration", type=float, help="seconds per clip (default: params.yaml)")
    ap.add_argument("--seed", type=int, help="generator seed (default: params.yaml)")
    ap.add_argument(
        "--workers", type=int, help="generator processes (default: params.yaml runtime.workers)"
    )
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the corpus here (default: a temp dir)")
    ap.add_argument("--cnn", action="store_true", help="also run the small-CNN segment check")
    ap.add_argument("--cnn-epochs", type=int, default=8)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # the machine is small and shared; threads only contend here
    params = load_params(args.params)
    syn = params.data.synthetic
    overrides = {
        k: v
        for k, v in (
            ("clips_per_genre", args.clips),
            ("duration_s", args.duration),
            ("seed", args.seed),
        )
        if v is not None
    }
    syn = dataclasses.replace(syn, **overrides)
    genres = list(params.data.genres)
    fp = params.features
    print(f"profile: {syn}", flush=True)

    with tempfile.TemporaryDirectory(prefix="synth-calib-") as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        cpu0 = _cpu_s()
        workers = args.workers or params.runtime.workers
        paths = generate_corpus(syn, genres, out, progress=not args.no_progress, workers=workers)
        gen_s = time.perf_counter() - t0
        cpu_s = _cpu_s() - cpu0
        print(
            f"generated {len(paths)} clips in {gen_s:.1f} s wall with {workers} workers; "
            f"{cpu_s:.1f} CPU-s in all ({cpu_s / len(paths) * 1000:.0f} ms/clip), i.e. "
            f"~{cpu_s / max(1, min(workers, os.cpu_count() or 1)):.0f} s on idle cores"
        )
        waves, labels = [], []
        for p in paths:
            w, sr = sf.read(str(p), dtype="float32")
            assert sr == fp.sample_rate, f"{p}: sample rate {sr} != features {fp.sample_rate}"
            waves.append(w)
            labels.append(genres.index(p.parent.name))
    y = np.array(labels)
    t0 = time.perf_counter()
    x = clip_features(waves, fp)
    print(f"features: {x.shape} in {time.perf_counter() - t0:.1f} s")
    tr, va, te = split_indices(y, args.split_seed)
    # one BLAS thread: these fits are tiny, and an oversubscribed pool makes them 100x slower
    with threadpool_limits(limits=1):
        val_acc, c, test_acc, pred = logreg(x, y, tr, va, te, args.split_seed)
    print(
        f"logistic regression on clip log-mel mean+std (C={c}): "
        f"val {val_acc:.3f}  test {test_acc:.3f}  "
        f"(n_test={len(te)}, chance {1 / len(genres):.2f})"
    )
    accs = []
    for s in range(5):  # the 120-clip test set is noisy: also show the spread over splits
        tr_s, va_s, te_s = split_indices(y, 1000 + s)
        with threadpool_limits(limits=1):
            accs.append(logreg(x, y, tr_s, va_s, te_s, s)[2])
    print(
        f"test accuracy over 5 other split seeds: mean {np.mean(accs):.3f} "
        f"(min {np.min(accs):.3f}, max {np.max(accs):.3f})"
    )
    cm = confusion_matrix(y[te], pred, labels=range(len(genres)))
    width = max(len(g) for g in genres)
    print("confusion (rows true, cols predicted):")
    print(" " * (width + 1) + " ".join(f"{g[:4]:>4}" for g in genres) + "  recall")
    for i, g in enumerate(genres):
        rec = cm[i, i] / max(cm[i].sum(), 1)
        print(f"{g:>{width}} " + " ".join(f"{v:4d}" for v in cm[i]) + f"  {rec:.2f}")
    if args.cnn:
        t0 = time.perf_counter()
        seg_acc, clip_acc = cnn_check(
            waves, y, np.concatenate([tr, va]), te, fp, args.cnn_epochs, args.split_seed
        )
        print(
            f"small CNN on 3-s segments ({args.cnn_epochs} epochs, "
            f"{time.perf_counter() - t0:.0f} s): segment acc {seg_acc:.3f}, "
            f"clip acc (mean logits) {clip_acc:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
