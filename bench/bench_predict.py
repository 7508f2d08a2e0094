"""Benchmark: how fast `genreflow predict` answers, cold and warm, against today's path.

Two paths, same model, same run, alternated so machine load hits both alike:

- **new**: the champion's verified local copy (``genreflow.serving.fast_champion``): no MLflow
  import, plain weights in the front-end and classifier modules, freed memory kept between
  forward passes (``genreflow.serving.runtime``);
- **today**: the pyfunc loaded through MLflow with its ``torch.export`` core
  (``--model-uri models:/NAME/VERSION``, which never uses the copy), and, warm, glibc's
  default of returning freed memory.

Measured:

- **cold**: a fresh ``genreflow predict one.mp3`` process, spawn to exit, median of
  ``--cold-runs`` per path (the copy already written; the one run that writes it is reported
  too), next to ``genreflow predict --help`` (interpreter + CLI, no model). With
  ``genreflow similar FILE --index NAME`` available, also a cold ``similar`` on a small
  library index built here (``--no-similar`` skips it).
- **warm**: one 30-s clip through ``ServedModel.analyse`` (decode + forward) in a child per
  path and round, median of ``--warm-runs``; the children also report the answer's digest, so
  the run checks that both paths give the same genre, probabilities and vector bit for bit.

The model is the repository's champion when ``mlflow.db`` has one (read through a copy of the
database in a throw-away repository, so nothing under the repository is written); otherwise
a freshly initialised model of the default architecture, logged as training logs it (params
included) and registered as the champion there. Timing does not depend on the weights.

    .venv/bin/python bench/bench_predict.py [--cold-runs 3] [--warm-runs 30] [--rounds 3]
        [--threads 0] [--arch cnn|crnn] [--fresh] [--no-similar]
        [--out bench/results/predict.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from genreflow.core.champion_uri import CHAMPION_ALIAS, champion_uri

REPO = Path(__file__).resolve().parents[1]
CLIP_S = 30.0
GTZAN_RATE = 22050  # the clips are written as GTZAN's: 22.05 kHz mono
COLD_GOAL_S = 3.0  # issue 16, idle 2-core machine
WARM_GOAL_MS = 20.0


@dataclass(frozen=True)
class BenchModel:
    root: Path  # repository whose params.yaml / mlflow.db `genreflow predict --root` reads
    uri: str
    source: str  # "champion of <repo> (version N, arch)" or "freshly initialised <arch>"
    arch: str
    env: dict[str, str]  # environment for children (MLFLOW_TRACKING_URI of the store)
    classifier: Any = None  # the weights, when available
    version: str | None = None


# --------------------------------------------------------------------------- the model
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
        version = MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    arch = version.tags.get("arch", "?")
    return BenchModel(
        REPO,
        champion_uri(name),
        f"champion of {REPO} ({name} version {version.version}, {arch})",
        arch,
        dict(os.environ),
        None,
        str(version.version),
    )


def default_arch() -> str:
    promotion = REPO / "reports" / "promotion.json"
    if promotion.is_file():
        arch = json.loads(promotion.read_text()).get("champion_arch")
        if arch in ("cnn", "crnn"):
            return arch
    return "cnn"


def _throwaway_repo(workdir: Path) -> Path:
    root = workdir / "repo"
    root.mkdir(parents=True)
    shutil.copyfile(REPO / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def _store_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def fresh_champion(workdir: Path, params, arch: str) -> BenchModel:
    """A freshly initialised ``arch`` model, logged as training logs it (serving pyfunc plus
    the run's params) and registered as the champion of a throw-away repository."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from genreflow.core.config import section_of_arch
    from genreflow.core.paths import Layout
    from genreflow.models import build_classifier
    from genreflow.serving.export import log_serving_model
    from genreflow.tracking.runs import run_params
    from genreflow.tracking.store import configure_mlflow

    root = _throwaway_repo(workdir)
    env = _store_env(root)
    os.environ.update(env)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    configure_mlflow(Layout.from_root(root), params.tracking.experiment)
    section = section_of_arch(arch)
    f = params.features
    torch.manual_seed(0)
    train = getattr(params, section)
    classifier = build_classifier(train, f.n_mels, f.segment_frames, len(params.data.genres))
    n = f.segment_samples + 2 * f.segment_hop_samples
    example = 0.1 * np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    name = params.tracking.registered_model
    with mlflow.start_run(run_name=f"bench-{arch}"):
        mlflow.log_params(run_params(params, section))
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
        str(version),
    )


def bench_model(workdir: Path, params, arch: str | None, fresh: bool) -> BenchModel:
    """The repo's champion unless ``fresh`` or an ``arch`` is asked for; else a fresh one."""
    model = None if fresh or arch else repo_champion(params)
    return model or fresh_champion(workdir, params, arch or default_arch())


def isolated(model: BenchModel, workdir: Path) -> BenchModel:
    """``model`` read from a throw-away repository: the repository's store copied (SQLite's
    backup, read-only source) so the CLI's serving cache and library index land there."""
    if model.root != REPO:
        return model
    root = _throwaway_repo(workdir)
    source = sqlite3.connect(f"file:{REPO / 'mlflow.db'}?mode=ro", uri=True)
    target = sqlite3.connect(root / "mlflow.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return replace(model, root=root, env=_store_env(root))


# --------------------------------------------------------------------------- inputs
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


def make_mp3(wav: Path, target: Path) -> Path:
    """``wav`` as a 44.1-kHz stereo MP3: the decode and resampling a user's file needs."""
    y, rate = sf.read(wav, dtype="float32")
    up = np.repeat(y, 2)[: int(len(y) * 44100 / rate)]
    sf.write(target, np.stack([up, up], axis=1), 44100, format="MP3")
    return target


# --------------------------------------------------------------------------- cold
def _cli() -> str:
    return shutil.which("genreflow") or str(Path(sys.executable).with_name("genreflow"))


def _spawn_s(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def cold_commands(model: BenchModel, clip: Path, index: str | None) -> dict[str, list[str]]:
    """The commands timed cold, by name; ``today`` is main's MLflow + pt2 load."""
    exe, root = _cli(), ["--root", str(model.root)]
    pinned = model.uri.replace(f"@{CHAMPION_ALIAS}", f"/{model.version}")
    cmds = {
        "predict_new": [exe, "predict", str(clip), *root, "-q"],
        "predict_today": [exe, "predict", str(clip), *root, "-q", "--model-uri", pinned],
        "predict_help": [exe, "predict", "--help"],
    }
    if index:
        cmds["similar_index"] = [exe, "similar", str(clip), "--index", index, *root]
    return cmds


def cold(model: BenchModel, clip: Path, runs: int, index: str | None) -> dict[str, Any]:
    """Each command ``runs`` times, interleaved round by round; the first-ever fast start
    (which writes the copy) separately."""
    env = {**model.env, "GENREFLOW_LOG_LEVEL": "WARNING"}
    cmds = cold_commands(model, clip, index)
    shutil.rmtree(model.root / "models" / "serving_cache", ignore_errors=True)
    first = _spawn_s(cmds["predict_new"], env)  # through MLflow, writes the copy
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            times[name].append(_spawn_s(cmd, env))
    out: dict[str, Any] = {
        name: {"median_s": statistics.median(t), "runs_s": t} for name, t in times.items()
    }
    out["predict_first_run_writes_copy_s"] = first
    out["ratio_new_to_today"] = out["predict_new"]["median_s"] / out["predict_today"]["median_s"]
    return out


def similar_index(model: BenchModel, folder: Path) -> str | None:
    """Build a library index of ``folder`` when the CLI has ``index``/``similar --index``."""
    exe = _cli()
    help_text = subprocess.run(
        [exe, "similar", "--help"], capture_output=True, text=True, env=model.env, check=False
    ).stdout
    if "--index" not in help_text:
        return None
    name = "bench"
    cmd = [exe, "index", str(folder), "--name", name, "--root", str(model.root), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=model.env, check=False)
    if proc.returncode != 0:
        print(f"(no similar timing: {' '.join(cmd)} failed: {proc.stderr.strip()[-300:]})")
        return None
    return name


# --------------------------------------------------------------------------- warm
def warm_child(mode: str, root: Path, clip: Path, runs: int, threads: int) -> dict[str, Any]:
    """In a child process: load the model the ``mode`` way, time ``analyse`` of ``clip``
    (wall and process CPU time, ``threads`` torch threads; 0 keeps torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from genreflow.core.config import load_params
    from genreflow.core.paths import Layout

    layout = Layout.from_root(root)
    name = load_params(layout.params).tracking.registered_model
    if mode == "today":
        import genreflow.serving.runtime as runtime
        from genreflow.serving.served import ServedModel
        from genreflow.tracking.store import set_tracking

        runtime._applied.append(False)  # glibc's default, as main ran
        set_tracking(layout)
        served = ServedModel.load(champion_uri(name))
    else:
        from genreflow.serving.fast_champion import load_champion

        served = load_champion(layout, name)
    for _ in range(3):
        result = served.analyse(clip)
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        served.analyse(clip)
        times.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    digest = hashlib.sha256(
        json.dumps([result.genre, list(result.probabilities.items())]).encode()
        + np.asarray(result.embedding).tobytes()
    ).hexdigest()
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "cpu_median_ms": statistics.median(cpu),
        "core": type(served.core).__name__,
        "threads": torch.get_num_threads(),
        "answer_sha256": digest,
        "genre": result.genre,
    }


def warm(model: BenchModel, clip: Path, runs: int, rounds: int, threads: int) -> dict[str, Any]:
    """``rounds`` x (new child, today child). The ratio is the median of the rounds' ratios
    (each round's two children ran back to back, so a load spike hits one round, not the
    result); the CPU-time ratio is steadier still on a busy machine."""
    per: dict[str, list[dict[str, Any]]] = {"new": [], "today": []}
    for _ in range(rounds):
        for mode in per:
            cmd = [sys.executable, __file__, "--child-warm", mode, "--root", str(model.root)]
            cmd += ["--clip", str(clip), "--warm-runs", str(runs), "--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=model.env, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"warm child {mode} failed:\n{proc.stderr}")
            per[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {}
    for mode, rows in per.items():
        out[mode] = {
            "median_ms": statistics.median(r["median_ms"] for r in rows),
            "best_round_ms": min(r["median_ms"] for r in rows),
            "cpu_median_ms": statistics.median(r["cpu_median_ms"] for r in rows),
            "rounds_ms": [r["median_ms"] for r in rows],
            "core": rows[0]["core"],
            "threads": rows[0]["threads"],
        }
    digests = {r["answer_sha256"] for rows in per.values() for r in rows}
    out["same_answer_bit_for_bit"] = len(digests) == 1
    out["genre"] = per["new"][0]["genre"]
    pairs = list(zip(per["new"], per["today"], strict=True))
    out["ratio_new_to_today"] = statistics.median(a["median_ms"] / b["median_ms"] for a, b in pairs)
    out["cpu_ratio_new_to_today"] = statistics.median(
        a["cpu_median_ms"] / b["cpu_median_ms"] for a, b in pairs
    )
    return out


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="warm children per path")
    parser.add_argument("--threads", type=int, default=0, help="warm torch threads (0: default)")
    parser.add_argument("--library-clips", type=int, default=6, help="clips in the index")
    parser.add_argument("--arch", choices=("cnn", "crnn"), default=None)
    parser.add_argument("--fresh", action="store_true", help="a fresh model, not the champion")
    parser.add_argument("--no-similar", action="store_true", help="skip the similar timing")
    parser.add_argument("--out", default="bench/results/predict.json")
    parser.add_argument("--child-warm", choices=("new", "today"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_warm:
        child = warm_child(args.child_warm, args.root, args.clip, args.warm_runs, args.threads)
        print(json.dumps(child))
        return

    from genreflow.core.config import load_params

    params = load_params(REPO / "params.yaml")
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp_path = Path(tmp)
        model = isolated(bench_model(tmp_path, params, args.arch, args.fresh), tmp_path)
        print(f"model: {model.source} ({model.uri})", flush=True)
        wavs = make_clips(tmp_path / "library", max(2, args.library_clips))
        mp3 = make_mp3(wavs[0], tmp_path / "one.mp3")
        index = None if args.no_similar else similar_index(model, tmp_path / "library")
        result = {
            "model": {"source": model.source, "uri": model.uri, "arch": model.arch},
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "cold": cold(model, mp3, args.cold_runs, index),
            "warm": warm(model, wavs[0], args.warm_runs, args.rounds, args.threads),
            "load_average_after": os.getloadavg(),
            "bench_seconds": time.perf_counter() - started,
        }
    report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def report(r: dict) -> None:
    c, w = r["cold"], r["warm"]
    cold_goal, warm_goal = f"goal <= {COLD_GOAL_S:.0f} s", f"goal <= {WARM_GOAL_MS:.0f} ms"
    rows = [
        ("cold `predict one.mp3`, new", f"{c['predict_new']['median_s']:.2f} s", cold_goal),
        ("cold `predict one.mp3`, today", f"{c['predict_today']['median_s']:.2f} s", "MLflow+pt2"),
        ("ratio new / today (cold)", f"{c['ratio_new_to_today']:.3f}", ""),
        ("first run (writes the copy)", f"{c['predict_first_run_writes_copy_s']:.2f} s", ""),
        ("`predict --help` (no model)", f"{c['predict_help']['median_s']:.2f} s", ""),
    ]
    if "similar_index" in c:
        rows.append(("cold `similar FILE --index`", f"{c['similar_index']['median_s']:.2f} s", ""))
    rows += [
        ("warm analyse 30-s clip, new", f"{w['new']['median_ms']:.1f} ms", warm_goal),
        ("  best round, new", f"{w['new']['best_round_ms']:.1f} ms", ""),
        ("warm analyse 30-s clip, today", f"{w['today']['median_ms']:.1f} ms", ""),
        ("  best round, today", f"{w['today']['best_round_ms']:.1f} ms", ""),
        ("ratio new / today (warm)", f"{w['ratio_new_to_today']:.3f}", "median of rounds"),
        ("CPU-time ratio new / today", f"{w['cpu_ratio_new_to_today']:.3f}", ""),
        ("same answer bit for bit", str(w["same_answer_bit_for_bit"]), f"genre {w['genre']}"),
    ]
    print(f"\n{r['model']['source']}; {r['cpu_count']} CPUs, torch threads {w['new']['threads']}")
    before = ", ".join(f"{x:.1f}" for x in r["load_average_before"])
    after = ", ".join(f"{x:.1f}" for x in r["load_average_after"])
    print(f"load average before: {before}; after: {after}; bench {r['bench_seconds']:.0f} s")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
