"""Deterministic synthetic music corpus in GTZAN's layout (``genres/<genre>/<genre>.000NN.wav``).

Lets the whole pipeline run, and be tested, without downloading GTZAN. The clips are meant
to be *music-like and not trivially separable*: each genre is a style recipe (tempo, meter,
swing, groove, bass line, harmony, instruments, structure, production) whose components
overlap where real genres are confused, and every clip randomises key, tempo, mix, noise,
EQ and loudness (see :mod:`genreflow.sources.synthetic.styles` and
``bench/calibrate_synthetic.py``).

Each clip's random stream comes only from ``(seed, genre, index)`` through
:class:`numpy.random.SeedSequence`, so the corpus is byte-identical whatever the number of
worker processes.
"""

from __future__ import annotations

import multiprocessing
import wave
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from genreflow.core.atomic import atomic_path
from genreflow.core.config import GTZAN_GENRES, SyntheticParams
from genreflow.core.progress import progress_bar
from genreflow.sources.synthetic.arrange import Arranger, draw_plan
from genreflow.sources.synthetic.mix import master, mix_buses


def clip_rng(seed: int, genre: str, index: int) -> np.random.Generator:
    """The clip's own generator: a function of (seed, genre name, index) only."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(genre.encode("utf-8")), int(index)])
    )


def _check_genre(genre: str) -> None:
    if genre not in GTZAN_GENRES:
        raise ValueError(
            f"unknown genre {genre!r} for the synthetic source; known genres: "
            f"{', '.join(GTZAN_GENRES)}"
        )


def render_clip(genre: str, index: int, params: SyntheticParams) -> np.ndarray:
    """Float32 mono waveform (``duration_s * sample_rate`` samples) of one synthetic clip."""
    _check_genre(genre)
    sr = int(params.sample_rate)
    n = int(round(params.duration_s * sr))
    rng = clip_rng(params.seed, genre, index)
    plan = draw_plan(genre, rng)
    arr = Arranger(plan, rng, sr, params.duration_s)
    buses = arr.render()
    # mix only the window plus a short pre-roll (reverb and echo tails from before it)
    start = int(round(arr.offset * sr))
    pre = min(start, sr)
    buses = {k: v[start - pre : start + n] for k, v in buses.items()}
    crop = mix_buses(buses, plan, rng, sr)[pre:]
    if len(crop) < n:  # cannot happen with the arranger's tail, but never return short clips
        crop = np.pad(crop, (0, n - len(crop)))
    return master(crop, plan, rng, sr)


def clip_path(out_dir: Path, genre: str, index: int) -> Path:
    return Path(out_dir) / "genres" / genre / f"{genre}.{index:05d}.wav"


def write_wav(path: Path, wave_f32: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV via the stdlib writer (header bytes are fully deterministic)."""
    pcm = np.clip(np.round(wave_f32 * 32767.0), -32767, 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(int(sample_rate))
        fh.writeframes(pcm.tobytes())


def _render_to_file(genre: str, index: int, params: SyntheticParams, out_dir: Path) -> Path:
    path = clip_path(out_dir, genre, index)
    write_wav(path, render_clip(genre, index, params), params.sample_rate)
    return path


def generate_corpus(
    params: SyntheticParams,
    genres: Sequence[str],
    out_dir: Path,
    progress: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``clips_per_genre`` clips of every genre under ``out_dir/genres``; sorted paths.

    Runs ``workers`` processes (inline when <= 1); the files are byte-identical for any
    number. Workers are spawned, not forked, so a parent that already started threads (torch,
    tqdm) cannot deadlock them.
    """
    for g in genres:
        _check_genre(g)
    if params.clips_per_genre < 1:
        raise ValueError(f"clips_per_genre must be >= 1, got {params.clips_per_genre}")
    if params.duration_s <= 0 or params.sample_rate <= 0:
        raise ValueError(
            f"duration_s and sample_rate must be positive, got {params.duration_s}, "
            f"{params.sample_rate}"
        )
    out_dir = Path(out_dir)
    jobs = [(g, i) for g in genres for i in range(params.clips_per_genre)]
    for g in genres:
        (out_dir / "genres" / g).mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=len(jobs), desc="synthesise", unit="clip", disable=not progress)
    paths: list[Path] = []
    try:
        if workers <= 1:
            for g, i in jobs:
                paths.append(_render_to_file(g, i, params, out_dir))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_render_to_file, g, i, params, out_dir) for g, i in jobs]
                try:
                    for fut in as_completed(futures):
                        paths.append(fut.result())
                        bar.update()
                except BaseException:
                    for fut in futures:  # fail fast: do not render the rest of the corpus
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return sorted(paths)
