"""Score a served model on the test clips under each perturbation, and report it.

Every perturbed clip is written as a real temporary file and predicted through
:class:`genreflow.serving.served.ServedModel`'s file path, so decode, resample and down-mix run
exactly as for a user's file. Per perturbation it reports **accuracy** (against the true genre)
and **agreement** (the share of clips whose predicted genre equals the clean file's), plus the
clean accuracy through the same path. A clip the model cannot score counts as wrong and as
disagreeing, and is counted in ``failed``; the first such failure is printed.
"""

from __future__ import annotations

import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genreflow.audio import read_audio
from genreflow.core.config import RobustnessParams
from genreflow.robustness.perturb import Perturbation, perturbations

METRIC_PREFIX = "robust."
SCORING_ERRORS = (RuntimeError, ValueError)  # decode/encode errors and shape rejections


@dataclass(frozen=True)
class PerturbationScore:
    accuracy: float
    agreement: float  # share of clips predicted as on the clean file


@dataclass(frozen=True)
class RobustnessReport:
    """Scores of one model; :meth:`to_dict` is what ``reports/metrics.json`` holds."""

    n_clips: int
    clean_accuracy: float
    scores: dict[str, PerturbationScore]
    failed: int = 0  # (clip, perturbation) pairs that could not be scored, clean included
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> str:
        """The perturbation with the lowest agreement (first in params order on ties)."""
        return min(self.scores, key=lambda name: self.scores[name].agreement)

    def summary(self) -> dict[str, float]:
        agreements = [s.agreement for s in self.scores.values()]
        return {
            "n_clips": self.n_clips,
            "clean_accuracy": self.clean_accuracy,
            "worst_agreement": min(agreements, default=1.0),
            "mean_agreement": float(np.mean(agreements)) if agreements else 1.0,
            "worst_accuracy": min((s.accuracy for s in self.scores.values()), default=1.0),
            "failed": self.failed,
        }

    def to_dict(self) -> dict[str, Any]:
        """Summary numbers, then ``{name: {accuracy, agreement}}`` per perturbation (numbers
        only, so ``dvc metrics show`` lists every one as ``<arch>.robustness.<name>.<score>``)."""
        per = {
            n: {"accuracy": s.accuracy, "agreement": s.agreement} for n, s in self.scores.items()
        }
        return {**self.summary(), **per}

    def mlflow_metrics(self) -> dict[str, float]:
        """``robust.<name>.accuracy`` / ``.agreement`` and ``robust.<summary>``."""
        flat = {f"{METRIC_PREFIX}{k}": float(v) for k, v in self.summary().items()}
        for name, s in self.scores.items():
            flat[f"{METRIC_PREFIX}{name}.accuracy"] = s.accuracy
            flat[f"{METRIC_PREFIX}{name}.agreement"] = s.agreement
        return flat


def select_clips(n: int, max_clips: int) -> list[int]:
    """All ``n`` clip indices, or ``max_clips`` evenly spaced ones (spread over the genres,
    which the store orders by)."""
    if max_clips <= 0 or max_clips >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, max_clips).round()})


def clip_seed(seed: int, path: Path) -> list[int]:
    """A per-clip noise seed that does not depend on which clips are scored or their order."""
    return [seed, zlib.crc32(path.name.encode())]


def _genre(served: Any, path: Path) -> str:
    """The served model's genre for one file, read exactly as a user's file is."""
    return served.analyse(path).genre


class _Tally:
    """Predictions per perturbation and the failures met on the way."""

    def __init__(self, names: Sequence[str]) -> None:
        self.clean: list[str | None] = []
        self.by_name: dict[str, list[str | None]] = {n: [] for n in names}
        self.failures: list[str] = []

    def guard(self, what: str, fn: Any) -> str | None:
        try:
            return fn()
        except SCORING_ERRORS as exc:
            self.failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            return None


def _score_clip(
    served: Any,
    path: Path,
    perts: Sequence[Perturbation],
    tmp: Path,
    seed: int,
    tally: _Tally,
    bar: tqdm,
) -> None:
    tally.clean.append(tally.guard(str(path), lambda: _genre(served, path)))
    bar.update()
    wave, rate = read_audio(path)
    for p in perts:

        def perturbed(p: Perturbation = p) -> str | None:
            out = p.write(wave, rate, tmp, "clip", clip_seed(seed, path))
            try:
                return _genre(served, out)
            finally:
                out.unlink(missing_ok=True)

        tally.by_name[p.name].append(tally.guard(f"{path} [{p.name}]", perturbed))
        bar.update()


def score_served(
    served: Any,
    paths: Sequence[Path],
    genres: Sequence[str],
    settings: RobustnessParams,
    seed: int = 0,
    progress: bool = True,
    desc: str = "robustness",
) -> RobustnessReport:
    """Robustness of ``served`` (a :class:`~genreflow.serving.served.ServedModel`) on the clips
    ``paths`` with true ``genres``, under every perturbation ``settings`` asks for."""
    perts = perturbations(settings)
    chosen = select_clips(len(paths), settings.max_clips)
    tally = _Tally([p.name for p in perts])
    total = len(chosen) * (len(perts) + 1)
    with (
        tempfile.TemporaryDirectory(prefix="genreflow-robust-") as tmp,
        tqdm(total=total, desc=desc, unit="file", disable=not progress) as bar,
    ):
        for i in chosen:
            _score_clip(served, Path(paths[i]), perts, Path(tmp), seed, tally, bar)
    truth = [genres[i] for i in chosen]
    return _report(truth, tally)


def _report(truth: Sequence[str], tally: _Tally) -> RobustnessReport:
    def accuracy(preds: Sequence[str | None]) -> float:
        return float(np.mean([p == t for p, t in zip(preds, truth, strict=True)]))

    def agreement(preds: Sequence[str | None]) -> float:
        same = [p is not None and p == c for p, c in zip(preds, tally.clean, strict=True)]
        return float(np.mean(same))

    scores = {
        name: PerturbationScore(accuracy(preds), agreement(preds))
        for name, preds in tally.by_name.items()
    }
    notes = []
    if tally.failures:
        notes.append(
            f"robustness: {len(tally.failures)} file(s) could not be scored, counted as wrong "
            f"and disagreeing; first: {tally.failures[0]}"
        )
    return RobustnessReport(len(truth), accuracy(tally.clean), scores, len(tally.failures), notes)


def log_to_run(run_id: str, report: RobustnessReport) -> None:
    """The report's metrics into the candidate's training run, in one batch."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in report.mlflow_metrics().items()]
    MlflowClient().log_batch(run_id, metrics=metrics)


def evaluate_robustness(
    model_uri: str,
    run_id: str,
    paths: Sequence[Path],
    genres: Sequence[str],
    settings: RobustnessParams,
    seed: int = 0,
    progress: bool = True,
    desc: str = "robustness",
) -> dict[str, Any]:
    """Load the candidate's logged model, score it, log to its run; the metrics.json entry."""
    from genreflow.serving.served import ServedModel

    report = score_served(
        ServedModel.load(model_uri), paths, genres, settings, seed, progress, desc
    )
    for note in report.notes:
        print(f"warning: {model_uri}: {note}", file=sys.stderr)
    log_to_run(run_id, report)
    return report.to_dict()
