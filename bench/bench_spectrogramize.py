"""Benchmark spectrogramize: throughput vs a plain librosa reference (default), or peak memory,
time and disk as the corpus grows (``--scaling``).

**Throughput.** Both sides decode the same 30-s WAV files and compute a log-mel spectrogram
with the same parameters (params.yaml ``features``) on the same number of cores:
``--workers`` threads of single-threaded torch for ours (as the stage runs), ``--workers``
single-threaded processes for librosa (which holds the GIL, so threads would not help it).
Reported as 30-s clips per second and as the ratio ours / librosa; absolute times on a
shared machine are noise, the ratio is the result.

    .venv/bin/python bench/bench_spectrogramize.py [--clips 24] [--repeats 3] [--workers 2]

**Scaling** (issue 15: peak RSS must not grow with the corpus). The real ``spectrogramize``
runs in a fresh child process per corpus size, on 1x, 4x and 16x the default corpus: the
validated clips under ``data/`` (600 synthetic 12-s clips with the default params), listed
``k`` times under distinct track ids. Every copy is decoded and computed for real; only the
synthesis of new clips is spared. Each run reports the child's peak RSS (its own
``ru_maxrss``), the stage's wall time, the store's size on disk, and whether its files equal
``data/features`` (1x) and the reference's (``--legacy``: the code before streaming, loaded
from git, which gathers the whole store in memory). The goal: peak RSS at 16x <= 1.2 x at 1x.

    .venv/bin/python bench/bench_spectrogramize.py --scaling [--scales 1 4 16] [--legacy]
        [--tracks N]   # the first N validated clips per copy, for a quicker run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from genreflow.core.config import FeatureParams, load_params
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout

STORE_FILES = ("segments.npy", "index.csv", "excerpts.csv", "meta.json")
LEGACY_REF = "4ceedb4"  # the last commit whose spectrogramize gathered the store in memory

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
    from genreflow.features.stage import _iter_segments

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


def scaled_manifest(source: Path, scale: int, tracks: int | None) -> pd.DataFrame:
    """The validated manifest listed ``scale`` times: copy 0 keeps its track ids (so 1x is the
    real corpus), copy j > 0 gets ids ``<id>~j`` and the same split and file."""
    base = pd.read_csv(source, dtype={"track_id": str, "split": str})
    if tracks is not None:
        base = base.head(tracks)
    copies = [base.assign(track_id=base["track_id"] + (f"~{j}" if j else "")) for j in range(scale)]
    return pd.concat(copies, ignore_index=True)


def make_root(directory: Path, data: Layout, manifest: pd.DataFrame) -> Layout:
    """A throw-away repository whose raw audio is ``data``'s (linked, read only)."""
    layout = Layout(directory)
    layout.raw_dir.parent.mkdir(parents=True)
    layout.raw_dir.symlink_to(data.raw_dir.resolve(), target_is_directory=True)
    layout.validated_dir.mkdir()
    manifest.to_csv(layout.validated_manifest, index=False)
    return layout


def legacy_spectrogramize(ref: str):
    """``spectrogramize`` as commit ``ref`` had it, loaded from git as its own module."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/genreflow/features/stage.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="legacy-stage-")) / "legacy_stage.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("genreflow_legacy_stage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.spectrogramize


def child(root: Path, params_path: Path, impl: str, legacy_ref: str) -> None:
    """One measured run in this fresh process; prints one JSON line. Nothing in this module
    imports torch before this pins the numerics, or the store's bytes would differ."""
    from genreflow.core.numerics import apply_numerics

    params = load_params(params_path)
    apply_numerics(params)  # as run_pipeline_stage does, before torch computes
    if impl == "legacy":
        spectrogramize = legacy_spectrogramize(legacy_ref)
    else:
        from genreflow.features.stage import spectrogramize
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    meta = spectrogramize(
        params.features,
        params.data.genres,
        Layout(root),
        progress=False,
        figures=False,
        workers=params.runtime.workers,
    )
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "stage_s": wall,
                "peak_rss_mib": peak / 1024,
                "rss_before_stage_mib": before / 1024,
                "segments": meta["shape"][0],
            }
        )
    )


def store_hashes(directory: Path) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in STORE_FILES}


def run_size(
    args: argparse.Namespace, data: Layout, scale: int, impl: str, work: Path
) -> dict[str, object]:
    """Measure one corpus size with one implementation, in a child process."""
    manifest = scaled_manifest(data.validated_manifest, scale, args.tracks)
    layout = make_root(work / f"{impl}-{scale}x", data, manifest)
    command = [
        sys.executable,
        __file__,
        "--child",
        str(layout.root),
        "--impl",
        impl,
        "--params",
        str(Path(args.params).resolve()),
        "--legacy-ref",
        args.legacy_ref,
    ]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise SystemExit(f"{impl} at {scale}x failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    store = layout.features_dir
    row.update(
        scale=scale,
        impl=impl,
        tracks=len(manifest),
        process_s=time.perf_counter() - start,
        store_bytes=sum((store / name).stat().st_size for name in STORE_FILES),
        hashes=store_hashes(store),
        load_avg_1min_before=load,
    )
    shutil.rmtree(layout.root)  # up to ~1.5 GB per 16x store
    return row


def describe(row: dict) -> str:
    """One readable line per measured run."""
    line = (
        f"{row['impl']:>8} {row['scale']:>2}x  {row['tracks']:>5} clips"
        f"  {row['segments']:>6} segments  peak RSS {row['peak_rss_mib']:7.0f} MiB"
        f" ({row['peak_rss_mib'] - row['rss_before_stage_mib']:+6.0f} over the imports)"
        f"  stage {row['stage_s']:6.1f} s  process {row['process_s']:6.1f} s"
        f"  store {row['store_bytes'] / 2**20:7.1f} MiB"
    )
    if "identical_to_data_features" in row:
        line += f"  same bytes as data/features: {row['identical_to_data_features']}"
    return line


def scaling(args: argparse.Namespace) -> None:
    data = Layout(Path(args.data).resolve())
    if not data.validated_manifest.is_file():
        raise SystemExit(f"{data.validated_manifest} missing: run `dvc repro validate` first")
    reference = data.features_dir
    impls = ["streamed", "legacy"] if args.legacy else ["streamed"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-spectrogramize-") as tmp:
        for scale in args.scales:
            for impl in impls:
                row = run_size(args, data, scale, impl, Path(tmp))
                if scale == 1 and args.tracks is None and reference.is_dir():
                    row["identical_to_data_features"] = row["hashes"] == store_hashes(reference)
                rows.append(row)
                print(describe(row), flush=True)
    result = {
        "note": (
            f"{args.scales} x the validated corpus under {data.root}/data "
            f"({'first ' + str(args.tracks) if args.tracks else 'all'} clips per copy), listed "
            "again under distinct track ids (each copy decoded and computed for real); "
            "peak RSS is the child process's ru_maxrss"
        ),
        "command": " ".join([".venv/bin/python", "bench/bench_spectrogramize.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    for impl in impls:
        mine = {r["scale"]: r for r in rows if r["impl"] == impl}
        lo, hi = min(mine), max(mine)
        ratio = mine[hi]["peak_rss_mib"] / mine[lo]["peak_rss_mib"]
        result[f"{impl}_peak_rss_ratio_{hi}x_over_{lo}x"] = ratio
        print(f"{impl}: peak RSS {hi}x / {lo}x = {ratio:.3f} (goal for streamed: <= 1.2)")
    if args.legacy:
        same = all(
            a["hashes"] == b["hashes"]
            for a in rows
            for b in rows
            if a["scale"] == b["scale"] and a["impl"] != b["impl"]
        )
        result["streamed_equals_legacy_bytes"] = same
        print(f"streamed and legacy stores byte-identical at every size: {same}")
    out = Path(args.out or "bench/results/spectrogramize_scaling.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def throughput(args: argparse.Namespace) -> None:
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
    out = Path(args.out or "bench/results/spectrogramize.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"spectrogramize: {result['ours_clips_per_s']:.1f} clips/s, librosa reference: "
        f"{result['librosa_clips_per_s']:.1f} clips/s, ratio {result['ratio']:.2f}x "
        f"({args.clips} x 30-s clips, {args.workers} workers)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="result JSON (under bench/results/)")
    scale = parser.add_argument_group("--scaling: memory, time and disk as the corpus grows")
    scale.add_argument("--scaling", action="store_true")
    scale.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    scale.add_argument("--tracks", type=int, default=None, help="clips per copy (default all)")
    scale.add_argument("--legacy", action="store_true", help="also run the pre-streaming code")
    scale.add_argument("--legacy-ref", default=LEGACY_REF)
    scale.add_argument("--data", default=".", help="repository whose data/ is the corpus")
    scale.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    scale.add_argument("--impl", default="streamed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, Path(args.params), args.impl, args.legacy_ref)
    elif args.scaling:
        scaling(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
