"""Clean and perturbed test accuracy of several trained models: the issue-9 ablation.

For every test clip of a repository's feature store it writes each perturbation of
``evaluate.robustness`` once (a real file: gain, stereo, sample rate, format, noise; the
same code as the ``evaluate`` stage), decodes it the way a user's file is decoded, and scores
every given ``model.pt`` on it: the model's own front-end (loudness mode included) plus its
classifier, segment logits averaged per clip (the served decision). Writing each perturbed
file once for all models keeps a 9-model ablation affordable on a CPU.

It prints, per group of models (the directory name up to its last ``_``, e.g. ``C`` of
``C_43``), the mean over seeds of clean accuracy, and per perturbation accuracy and
agreement with the clean prediction, with a t-based 95% interval over the seeds.

    python bench/robustness_seeds.py --root /path/to/repo --out results.json \\
        models/A_42 models/A_43 models/A_44 models/C_42 ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from genreflow.audio import load_mono, read_audio
from genreflow.core.config import FeatureParams, TrainParams, from_dict, load_params, to_dict
from genreflow.core.paths import Layout
from genreflow.features.frontend import LogMelFrontend
from genreflow.features.store import FeatureStore
from genreflow.models import build_classifier
from genreflow.pipeline.held_out_clips import load_test_clips
from genreflow.robustness.perturb import perturbations
from genreflow.robustness.score import clip_seed


class Scorer:
    """One saved model as (front-end, classifier): waveform -> genre index."""

    def __init__(self, path: Path) -> None:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        # Model files written before a FeatureParams key existed lack it; the missing keys
        # (excerpt) do not change what the model computes, so defaults are safe here.
        feature_raw = {**to_dict(FeatureParams()), **payload["feature_params"]}
        self.features = from_dict(FeatureParams, feature_raw)
        train = from_dict(TrainParams, payload["train_params"])
        self.genres = list(payload["genres"])
        self.classifier = build_classifier(
            train, int(payload["n_mels"]), int(payload["n_frames"]), len(self.genres)
        )
        self.classifier.load_state_dict(payload["state_dict"])
        self.classifier.eval()
        self.frontend = LogMelFrontend(self.features).eval()

    @torch.inference_mode()
    def genre(self, wave: torch.Tensor) -> int:
        segs = self.frontend.segments(wave)
        return int(self.classifier(segs).mean(dim=0).argmax())


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and t-based 95% interval over seeds, clipped to [0, 1]."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return mean, max(0.0, mean - half), min(1.0, mean + half)  # proportions stay in [0, 1]


def score_all(models: dict[str, Scorer], clips, perts, sample_rate: int) -> dict:
    names = ["clean"] + [p.name for p in perts]
    preds = {m: {n: [] for n in names} for m in models}
    truth = []
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=len(clips.paths), unit="clip") as bar:
        for path, genre in zip(clips.paths, clips.genres, strict=True):
            truth.append(genre)
            clean = load_mono(path, sample_rate)
            for m, s in models.items():
                preds[m]["clean"].append(s.genres[s.genre(clean)])
            raw, rate = read_audio(path)
            for p in perts:
                out = p.write(raw, rate, Path(tmp), "clip", clip_seed(0, Path(path)))
                wave = load_mono(out, sample_rate)
                out.unlink()
                for m, s in models.items():
                    preds[m][p.name].append(s.genres[s.genre(wave)])
            bar.update()
    result = {}
    for m in models:
        clean = preds[m]["clean"]
        result[m] = {
            n: {
                "accuracy": float(np.mean([a == t for a, t in zip(v, truth, strict=True)])),
                "agreement": float(np.mean([a == c for a, c in zip(v, clean, strict=True)])),
            }
            for n, v in preds[m].items()
        }
    return result


def summarise(result: dict) -> dict:
    groups: dict[str, list[str]] = defaultdict(list)
    for m in result:
        groups[m.rsplit("_", 1)[0]].append(m)
    summary = {}
    for g, members in sorted(groups.items()):
        names = result[members[0]].keys()
        summary[g] = {
            "seeds": sorted(members),
            **{
                n: {
                    k: interval([result[m][n][k] for m in members])
                    for k in ("accuracy", "agreement")
                }
                for n in names
            },
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="directories holding model.pt")
    ap.add_argument("--root", type=Path, required=True, help="repo with data/features")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-clips", type=int, default=0, help="0: every test clip")
    args = ap.parse_args()
    torch.set_num_threads(1)
    layout = Layout.from_root(args.root)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    clips = load_test_clips(FeatureStore.load(layout.features_dir), layout)
    if args.max_clips:
        keep = np.linspace(0, len(clips.paths) - 1, args.max_clips).round().astype(int)
        clips = type(clips)(
            *(
                tuple(getattr(clips, f)[i] for i in keep)
                for f in ("track_ids", "audio_sha256", "paths", "genres")
            )
        )
    models = {d.name: Scorer(d / "model.pt") for d in args.models}
    rates = {s.features.sample_rate for s in models.values()}
    if len(rates) != 1:
        raise SystemExit(f"models disagree on the sample rate: {sorted(rates)}")
    perts = perturbations(params.evaluate.robustness)
    result = score_all(models, clips, perts, rates.pop())
    summary = summarise(result)
    args.out.write_text(json.dumps({"per_model": result, "summary": summary}, indent=2))
    for g, s in summary.items():
        print(f"\n== {g} ({', '.join(s['seeds'])})")
        for n, v in s.items():
            if n == "seeds":
                continue
            acc, agr = v["accuracy"], v["agreement"]
            print(
                f"{n:>14}  acc {acc[0]:.3f} [{acc[1]:.3f}, {acc[2]:.3f}]  "
                f"agree {agr[0]:.3f} [{agr[1]:.3f}, {agr[2]:.3f}]"
            )


if __name__ == "__main__":
    main()
