"""Benchmark: spectrogramize throughput vs a plain librosa reference, in one process.

Both sides decode the same 30-s WAV files and compute a log-mel spectrogram with the same
parameters (params.yaml ``features``) on the same number of cores: ``--workers`` threads of
single-threaded torch for ours (as the stage runs), ``--workers`` single-threaded processes
for librosa (which holds the GIL, so threads would not help it). Reported as 30-s clips per
second and as the ratio ours / librosa; absolute times on a shared machine are noise, the
ratio is the result.

    .venv/bin/python bench/bench_spectrogramize.py [--clips 24] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from genreflow.core.config import FeatureParams, load_params
from genreflow.features.stage import _iter_segments

_ref_params: FeatureParams | None = None


def _ref_init(params: FeatureParams) -> None:
    global _ref_params
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _ref_params = params


def _ref_one(path: str) -> tuple[int, int]:
    """The reference: librosa.load + melspectrogram + power_to_db, same parameters."""
    import librosa

    p = _ref_params
    assert p is not None
    y, sr = librosa.load(path, sr=p.sample_rate, mono=True)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=p.n_fft,
        hop_length=p.hop_length,
        n_mels=p.n_mels,
        fmin=p.f_min,
        fmax=p.f_max,
        power=2.0,
        center=True,
        norm="slaney",
        htk=False,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    return db.shape


def run_reference(paths: list[Path], params: FeatureParams, workers: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_ref_init, initargs=(params,)) as pool:
        list(pool.map(_ref_one, [str(p) for p in paths], chunksize=4))
    return time.perf_counter() - start


def run_ours(paths: list[Path], params: FeatureParams, workers: int) -> float:
    start = time.perf_counter()
    for _ in _iter_segments(paths, params, workers):
        pass
    return time.perf_counter() - start


def make_clips(directory: Path, n: int, sample_rate: int) -> list[Path]:
    """Random-phase harmonic noise, 30 s each: content does not change FFT cost."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        t = np.arange(30 * sample_rate) / sample_rate
        y = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(80, 4000, 6))
        y = 0.1 * y / np.abs(y).max() + 0.01 * rng.standard_normal(t.size)
        path = directory / f"clip{i:03d}.wav"
        sf.write(path, y.astype(np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="bench/results/spectrogramize.json")
    args = parser.parse_args()

    params = load_params(args.params).features
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), args.clips, params.sample_rate)
        # Warm both sides in this process before the pools fork, so neither pays imports or
        # numba compilation inside the timed runs.
        _ref_init(params)
        _ref_one(str(paths[0]))
        run_ours(paths[:2], params, args.workers)
        run_reference(paths[:2], params, args.workers)
        ours, ref = [], []
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            ours.append(run_ours(paths, params, args.workers))
            ref.append(run_reference(paths, params, args.workers))
    result = {
        "clips": args.clips,
        "workers": args.workers,
        "ours_clips_per_s": args.clips / statistics.median(ours),
        "librosa_clips_per_s": args.clips / statistics.median(ref),
        "ours_seconds": ours,
        "librosa_seconds": ref,
    }
    result["ratio"] = result["ours_clips_per_s"] / result["librosa_clips_per_s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"spectrogramize: {result['ours_clips_per_s']:.1f} clips/s, librosa reference: "
        f"{result['librosa_clips_per_s']:.1f} clips/s, ratio {result['ratio']:.2f}x "
        f"({args.clips} x 30-s clips, {args.workers} workers)"
    )


if __name__ == "__main__":
    main()
