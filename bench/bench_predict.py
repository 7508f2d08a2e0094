"""Benchmark: how fast `genreflow predict` answers, warm and cold, and its folder throughput.

The model is the repository's champion when ``mlflow.db`` has one; otherwise a freshly
initialised model of the default architecture (the champion arch in reports/promotion.json,
else cnn) is exported exactly as training exports it and registered as the champion of a
throw-away repository. Timing does not depend on the weights; the output says which was used.

- **warm**: one 30-s clip through ``ServedModel.analyse`` (decode + resample + forward),
  median of ``--warm-runs`` after warm-up, with ``--threads`` torch threads; also the forward
  alone (``analyse_waveform`` on the decoded clip) and the decode alone.
- **cold**: a fresh ``genreflow predict`` process on one clip, spawn to exit (median of
  ``--cold-runs``), next to ``genreflow predict --help`` (interpreter + CLI start, no model).
- **throughput**: ``run_predict`` over a folder of ``--clips`` 30-s clips in clips/s, and its
  ratio to decode-only speed (``genreflow.audio.load_mono``: soundfile decode + resample of
  the same files) in the same process and thread setting.

CPU times on a shared machine are indicative; the ratios are the result.

    .venv/bin/python bench/bench_predict.py [--clips 24] [--warm-runs 30] [--cold-runs 3]
        [--threads 2] [--arch cnn|crnn] [--out bench/results/predict.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from genreflow.core.champion_uri import CHAMPION_ALIAS, champion_uri

REPO = Path(__file__).resolve().parents[1]
CLIP_S = 30.0
GTZAN_RATE = 22050  # the clips are written as GTZAN's: 22.05 kHz mono 16-bit
ISSUE_WARM_MS = 62.0  # issue 9: a warm 30-s clip on main, CPU, 2 threads (quiet machine)


@dataclass(frozen=True)
class BenchModel:
    root: Path  # repository whose params.yaml / mlflow.db `genreflow predict --root` reads
    uri: str
    source: str  # "champion of <repo> (version N, arch)" or "freshly initialised <arch>"
    arch: str
    env: dict[str, str]  # environment for children (MLFLOW_TRACKING_URI of a temp store)
    classifier: Any = None  # the weights, for the reference path (None: not available)


def repo_champion(params) -> BenchModel | None:
    """The repository's champion, when its tracking store holds one."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from genreflow.core.paths import Layout
    from genreflow.tracking.store import resolve_tracking_uri, set_tracking, sqlite_path

    layout = Layout.from_root(REPO)
    db = sqlite_path(resolve_tracking_uri(layout.root))
    if db is not None and not db.is_file():
        return None
    set_tracking(layout)
    name = params.tracking.registered_model
    try:
        version = MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None
    arch = version.tags.get("arch", "?")
    classifier = None
    if layout.model_file(arch).is_file():  # the reference path needs the plain weights
        from genreflow.serving.core import load_classifier

        classifier = load_classifier(layout.model_file(arch))[0]
    return BenchModel(
        REPO,
        champion_uri(name),
        f"champion of {REPO} ({name} version {version.version}, {arch})",
        arch,
        dict(os.environ),
        classifier,
    )


def default_arch() -> str:
    promotion = REPO / "reports" / "promotion.json"
    if promotion.is_file():
        arch = json.loads(promotion.read_text()).get("champion_arch")
        if arch in ("cnn", "crnn"):
            return arch
    return "cnn"


def fresh_champion(workdir: Path, params, arch: str) -> BenchModel:
    """A freshly initialised ``arch`` model, exported and registered as the champion of a
    throw-away repository under ``workdir`` (same params.yaml, own mlflow.db)."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from genreflow.core.config import section_of_arch
    from genreflow.core.paths import Layout
    from genreflow.models import build_classifier
    from genreflow.serving.export import log_serving_model
    from genreflow.tracking.store import configure_mlflow

    root = workdir / "repo"
    root.mkdir(parents=True)
    shutil.copyfile(REPO / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text("stages: {}\n")
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    env.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.update(env)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    configure_mlflow(Layout.from_root(root), params.tracking.experiment)
    section = getattr(params, section_of_arch(arch))
    f = params.features
    torch.manual_seed(0)
    classifier = build_classifier(section, f.n_mels, f.segment_frames, len(params.data.genres))
    n = f.segment_samples + 2 * f.segment_hop_samples
    example = 0.1 * np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    name = params.tracking.registered_model
    with mlflow.start_run(run_name=f"bench-{arch}"):
        info = log_serving_model(classifier, f, list(params.data.genres), example)
    version = mlflow.register_model(info.model_uri, name).version
    MlflowClient().set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return BenchModel(
        root,
        champion_uri(name),
        f"freshly initialised {arch} (weights untrained)",
        arch,
        env,
        classifier,
    )


def bench_model(workdir: Path, params, arch: str | None, fresh: bool) -> BenchModel:
    """The repo's champion unless ``fresh`` or an ``arch`` is asked for; else a fresh one."""
    model = None if fresh or arch else repo_champion(params)
    return model or fresh_champion(workdir, params, arch or default_arch())


def make_clips(directory: Path, n: int) -> list[Path]:
    """Harmonic tones plus noise, 30 s each (content does not change decode or FFT cost)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_S * GTZAN_RATE)) / GTZAN_RATE
    paths = []
    for i in range(n):
        y = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(80, 4000, 6))
        y = 0.3 * y / np.abs(y).max() + 0.01 * rng.standard_normal(t.size)
        path = directory / f"clip{i:03d}.wav"
        sf.write(path, y.astype(np.float32), GTZAN_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def _median_ms(fn, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "min_ms": times[0],
    }


def reference_path(classifier: Any, params) -> Any:
    """Main's serving path before issue 9, on the same weights: the waveform model exported
    whole with ``torch.export`` (as the ``pt2`` flavour logged it), fed the whole decoded
    clip in one forward pass. Returns ``predict(path) -> logits``."""
    import torch
    from torch.export import Dim
    from torch.fx.experimental import _config as fx_config

    from genreflow.audio import load_mono
    from genreflow.features.frontend import LogMelFrontend
    from genreflow.serving.core import WaveformGenreModel
    from genreflow.serving.export import warnings_quiet

    f = params.features
    classifier = classifier.to(device="cpu", memory_format=torch.contiguous_format).eval()
    model = WaveformGenreModel(LogMelFrontend(f), classifier, f, list(params.data.genres))
    example = torch.zeros(2, f.segment_samples + 2 * f.segment_hop_samples)
    with warnings_quiet(), fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(
            model.eval(), (example,), dynamic_shapes=({0: Dim.AUTO, 1: Dim.AUTO},)
        )
    exported = program.module()

    def predict(path: Path) -> Any:
        wave = load_mono(path, f.sample_rate)
        with torch.inference_mode():
            return torch.softmax(exported(wave[None]), dim=-1)[0]

    return predict


def versus_reference(served, reference, clip: Path, runs: int) -> dict[str, float]:
    """Warm ``analyse`` against :func:`reference_path` on one clip, interleaved run by run so
    machine load hits both alike; the ratio is the result on a shared CPU."""
    from genreflow.serving.predict import analyse

    for _ in range(3):
        analyse(served, clip)
        reference(clip)
    ours, ref = [], []
    for _ in range(runs):
        start = time.perf_counter()
        analyse(served, clip)
        ours.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        reference(clip)
        ref.append(1000 * (time.perf_counter() - start))
    ratio = statistics.median(ours) / statistics.median(ref)
    return {
        "analyse_median_ms": statistics.median(ours),
        "reference_median_ms": statistics.median(ref),
        "ratio_analyse_to_reference": ratio,
        "issue_reference_ms": ISSUE_WARM_MS,
        "estimate_on_issue_machine_ms": ISSUE_WARM_MS * ratio,
    }


def warm(served, clip: Path, runs: int) -> dict[str, dict[str, float]]:
    import torch

    from genreflow.audio import load_mono
    from genreflow.serving.predict import analyse

    wave = load_mono(clip, served.sample_rate).numpy()

    def forward():
        if hasattr(served, "analyse_waveform"):
            return served.analyse_waveform(wave, served.sample_rate)
        with torch.inference_mode():
            return served.model(torch.from_numpy(wave)[None])

    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        analyse(served, clip)
        forward()
    return {
        "analyse_30s": _median_ms(lambda: analyse(served, clip), runs),
        "forward_only_30s": _median_ms(forward, runs),
        "decode_only_30s": _median_ms(lambda: load_mono(clip, served.sample_rate), runs),
    }


def throughput(served, folder: Path, n: int, repeats: int) -> dict[str, float]:
    """Clips/s of run_predict over the folder and of decode-only, interleaved repeats."""
    from genreflow.audio import load_mono
    from genreflow.serving.predict import run_predict

    paths = sorted(folder.glob("*.wav"))
    predict_s, decode_s = [], []
    with open(os.devnull, "w") as sink:
        for _ in range(repeats):
            start = time.perf_counter()
            summary = run_predict(served, [folder], as_json=True, quiet=True, out=sink, err=sink)
            predict_s.append(time.perf_counter() - start)
            assert summary.ok == n and summary.failed == 0, summary
            start = time.perf_counter()
            for path in paths:
                load_mono(path, served.sample_rate)
            decode_s.append(time.perf_counter() - start)
    predict_cps = n / statistics.median(predict_s)
    decode_cps = n / statistics.median(decode_s)
    return {
        "clips": n,
        "predict_clips_per_s": predict_cps,
        "decode_only_clips_per_s": decode_cps,
        "ratio_predict_to_decode": predict_cps / decode_cps,
        "predict_seconds": predict_s,
        "decode_seconds": decode_s,
    }


def _spawn_s(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float | list]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return {"median_s": statistics.median(times), "runs_s": times}


def cold(model: BenchModel, clip: Path, runs: int) -> dict[str, dict]:
    exe = shutil.which("genreflow") or str(Path(sys.executable).with_name("genreflow"))
    env = {**model.env, "GENREFLOW_LOG_LEVEL": "WARNING"}
    root = ["--root", str(model.root)]
    return {
        "predict_one_clip": _spawn_s([exe, "predict", str(clip), *root, "-q"], env, runs),
        "predict_help": _spawn_s([exe, "predict", "--help"], env, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="30-s clips in the folder")
    parser.add_argument("--repeats", type=int, default=3, help="folder passes (median)")
    parser.add_argument("--warm-runs", type=int, default=30)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (warm, folder)")
    parser.add_argument(
        "--arch",
        choices=("cnn", "crnn"),
        default=None,
        help="arch of a fresh model (default: champion arch in reports/)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="use a fresh model even when the repo has a champion"
    )
    parser.add_argument("--out", default="bench/results/predict.json")
    args = parser.parse_args()

    import torch

    from genreflow.core.config import load_params
    from genreflow.serving.predict import load_served_model
    from genreflow.tracking.store import resolve_tracking_uri

    torch.set_num_threads(args.threads)
    params = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp_path = Path(tmp)
        model = bench_model(tmp_path, params, args.arch, args.fresh)
        print(f"model: {model.source} ({model.uri})", flush=True)
        served = load_served_model(model.uri, resolve_tracking_uri(model.root))
        folder = tmp_path / "clips"
        paths = make_clips(folder, max(1, args.clips))
        result = {
            "model": {"source": model.source, "uri": model.uri, "arch": model.arch},
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "warm": warm(served, paths[0], args.warm_runs),
            "versus_main": (
                versus_reference(
                    served, reference_path(model.classifier, params), paths[0], args.warm_runs
                )
                if model.classifier is not None
                else None
            ),
            "throughput": throughput(served, folder, len(paths), args.repeats),
            "cold": cold(model, paths[0], args.cold_runs),
        }
    report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def report(r: dict) -> None:
    w, t, c = r["warm"], r["throughput"], r["cold"]
    print(f"\n{r['model']['source']}; {r['torch_threads']} torch threads, {r['cpu_count']} CPUs")
    rows = [
        (
            "warm analyse, 30-s clip (decode+fwd)",
            f"{w['analyse_30s']['median_ms']:.1f} ms",
            "target < 50 ms (issue 9; CPU, indicative)",
        ),
        ("warm forward only, 30-s clip", f"{w['forward_only_30s']['median_ms']:.1f} ms", ""),
        ("decode + resample only, 30-s clip", f"{w['decode_only_30s']['median_ms']:.1f} ms", ""),
        (
            "cold `genreflow predict` one clip",
            f"{c['predict_one_clip']['median_s']:.2f} s",
            f"`predict --help` alone: {c['predict_help']['median_s']:.2f} s",
        ),
        (
            "predict over folder",
            f"{t['predict_clips_per_s']:.1f} clips/s",
            f"{t['clips']} x 30-s clips",
        ),
        ("decode-only over folder", f"{t['decode_only_clips_per_s']:.1f} clips/s", ""),
        ("ratio predict / decode-only", f"{t['ratio_predict_to_decode']:.3f}", ""),
    ]
    v = r.get("versus_main")
    if v:
        rows[1:1] = [
            (
                "main's path, same clip, interleaved",
                f"{v['reference_median_ms']:.1f} ms",
                "whole-clip decode + one forward of the pt2 waveform model",
            ),
            (
                "ratio analyse / main's path",
                f"{v['ratio_analyse_to_reference']:.3f}",
                f"x {ISSUE_WARM_MS:.0f} ms (issue, quiet CPU) = "
                f"{v['estimate_on_issue_machine_ms']:.0f} ms estimated",
            ),
        ]
    load = ", ".join(f"{x:.1f}" for x in r["load_average"])
    print(f"load average at start: {load}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
