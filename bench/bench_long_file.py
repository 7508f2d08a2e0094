"""Benchmark: peak memory of analysing a one-hour file, against a 30-s clip.

``ServedModel.analyse`` decodes in blocks and scores in windows, so its memory should not
grow with the file. This writes a one-hour 44.1 kHz stereo FLAC of synthetic music (notes,
chords and -40 dB noise, in blocks, never held in memory) to a temp dir, then measures each
case in a fresh child process and reads the child's peak RSS (``ru_maxrss`` from
``os.wait4``, so nothing the parent holds counts):

- ``load``: import, load the model, nothing analysed (the floor);
- ``clip_30s``: load and analyse one 30-s clip of the same format (the reference);
- ``long``: load and analyse the one-hour file.

Reported as MB and as the ratio long / clip_30s (1.0 = memory independent of length), plus
the hour's analysis time. The model comes from bench_predict.py (the repo's champion, or a
freshly initialised model of the default architecture: memory does not depend on weights).

    .venv/bin/python bench/bench_long_file.py [--hours 1] [--threads 2]
        [--out bench/results/long_file.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from bench_predict import REPO, bench_model  # bench/ is on sys.path when run as a script

BLOCK_S = 10.0


def write_long_file(path: Path, seconds: float, sample_rate: int, channels: int) -> Path:
    """Synthetic music, written block by block: a new chord every block, a note every 0.5 s,
    a different pan per channel, noise 40 dB down."""
    rng = np.random.default_rng(0)
    n_block = int(BLOCK_S * sample_rate)
    note = int(0.5 * sample_rate)
    with sf.SoundFile(
        path, "w", samplerate=sample_rate, channels=channels, format="FLAC", subtype="PCM_16"
    ) as out:
        written = 0
        total = int(seconds * sample_rate)
        while written < total:
            n = min(n_block, total - written)
            t = (written + np.arange(n)) / sample_rate
            chord = 110.0 * 2 ** (rng.integers(0, 24, 3) / 12)
            mono = sum(np.sin(2 * np.pi * f * t) for f in chord) / 3
            melody = 440.0 * 2 ** (rng.integers(0, 12, n // note + 1) / 12)
            mono += 0.5 * np.sin(2 * np.pi * np.repeat(melody, note)[:n] * t)
            pans = np.linspace(0.3, 0.7, channels)[:, None]
            block = 0.3 * mono * pans + 0.01 * rng.standard_normal((channels, n))
            out.write(block.T.astype(np.float32))
            written += n
    return path


def child(model_uri: str, path: str | None, threads: int) -> None:
    """Child process: load the model and analyse ``path`` (if any); print JSON."""
    import torch

    from genreflow.serving.predict import load_served_model
    from genreflow.tracking.store import resolve_tracking_uri

    torch.set_num_threads(threads)
    served = load_served_model(model_uri, resolve_tracking_uri(Path.cwd()))
    out: dict = {"model_id": served.model_id}
    if path:
        start = time.perf_counter()
        a = served.analyse(path)
        out.update(seconds=time.perf_counter() - start, genre=a.genre, duration_s=a.duration_s)
    print(json.dumps(out), flush=True)


def measure(model, path: Path | None, threads: int) -> dict:
    """Run one child; its JSON plus its peak RSS in MB."""
    cmd = [sys.executable, __file__, "--child", model.uri, "--threads", str(threads)]
    if path is not None:
        cmd += ["--path", str(path)]
    proc = subprocess.Popen(
        cmd, cwd=model.root, env=model.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{stderr.decode()}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", choices=("cnn", "crnn"), default=None)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--out", default="bench/results/long_file.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.threads)
        return

    from genreflow.core.config import load_params

    params = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        tmp_path = Path(tmp)
        model = bench_model(tmp_path, params, args.arch, args.fresh)
        print(f"model: {model.source} ({model.uri})", flush=True)
        seconds = args.hours * 3600
        start = time.perf_counter()
        long_file = write_long_file(
            tmp_path / "long.flac", seconds, args.sample_rate, args.channels
        )
        write_s = time.perf_counter() - start
        clip = write_long_file(tmp_path / "clip.flac", 30.0, args.sample_rate, args.channels)
        print(f"wrote {long_file.stat().st_size / 1e6:.0f} MB in {write_s:.0f} s", flush=True)
        runs = {
            "load": measure(model, None, args.threads),
            "clip_30s": measure(model, clip, args.threads),
            "long": measure(model, long_file, args.threads),
        }
        file_mb = long_file.stat().st_size / 1e6
    decoded_mb = seconds * args.sample_rate * args.channels * 4 / 1e6
    result = {
        "model": {"source": model.source, "uri": model.uri, "arch": model.arch},
        "file": {
            "seconds": seconds,
            "sample_rate": args.sample_rate,
            "channels": args.channels,
            "format": "FLAC PCM_16",
            "size_mb": file_mb,
            "decoded_float32_mb": decoded_mb,
        },
        "threads": args.threads,
        "runs": runs,
        "ratio_long_to_clip_rss": runs["long"]["peak_rss_mb"] / runs["clip_30s"]["peak_rss_mb"],
        "long_realtime_factor": seconds / runs["long"]["seconds"],
    }
    print(f"\n{model.source}; {args.threads} torch threads")
    print(f"{'case':<34}{'peak RSS':>12}{'time':>10}")
    labels = {
        "load": "model loaded, nothing analysed",
        "clip_30s": "30-s clip (reference)",
        "long": f"{args.hours:g}-h file ({args.sample_rate} Hz, {args.channels} ch FLAC)",
    }
    for key, label in labels.items():
        r = runs[key]
        took = f"{r['seconds']:.1f} s" if "seconds" in r else "-"
        print(f"{label:<34}{r['peak_rss_mb']:>9.0f} MB{took:>10}")
    print(
        f"ratio long / 30-s clip: {result['ratio_long_to_clip_rss']:.2f} "
        f"(the whole file decoded as float32 alone would be {decoded_mb:.0f} MB); "
        f"{result['long_realtime_factor']:.0f}x real time"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
