"""Score served models on the test clips under each perturbation, and report it.

Every perturbed clip is written as a real temporary file and read back through
:class:`genreflow.serving.served.ServedModel`'s file decoding, so decode, resample and
down-mix run exactly as for a user's file. Per perturbation it reports **accuracy** (against
the true genre) and **agreement** (the share of clips whose predicted genre equals the clean
file's), plus the clean accuracy through the same path. A clip the model cannot score counts
as wrong and as disagreeing, and is counted in ``failed``; the first such failure is printed.

The cost is the encoders', the decoders' and the forward passes'. :func:`score_models` pays
the first two once per clip, whatever the number of models: each clip is read once, each
perturbation written once and decoded once, and every model scores the decoded windows (a
forward per distinct decoded input: a lossless re-encode of a 16-bit file decodes to the clean
samples and reuses their answer, which is the same bits). Above ``max_clips`` test clips it
scores a deterministic genre-stratified sample (:func:`select_clips`), named in the report.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genreflow.audio import read_audio
from genreflow.core.config import RobustnessParams
from genreflow.core.progress import progress_bar
from genreflow.robustness.perturb import Perturbation, perturbations

if TYPE_CHECKING:  # torch loads when a model is scored
    from genreflow.serving.served import DecodedAudio

METRIC_PREFIX = "robust."
CLEAN = "clean"  # the unperturbed file's key in RobustnessReport.predictions
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
    population: int = 0  # test clips the sample was drawn from (0: not recorded)
    sample: tuple[str, ...] = ()  # track ids scored when a sample was drawn; () when all were
    # per-clip genres (None: not scored) under "clean" and each perturbation, in clip order
    predictions: dict[str, tuple[str | None, ...]] = field(default_factory=dict, repr=False)

    @property
    def sampled(self) -> bool:
        """Whether only a sample of the test clips was scored (``max_clips``)."""
        return bool(self.sample)

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
            # only when sampled, so a full run's metrics keep their keys
            **({"sampled_from": self.population} if self.sampled else {}),
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


def clip_seed(seed: int, path: Path) -> list[int]:
    """A per-clip noise seed that does not depend on which clips are scored or their order."""
    return [seed, zlib.crc32(path.name.encode())]


class _Tally:
    """One model's predictions per perturbation and the failures met on the way."""

    def __init__(self, names: Sequence[str]) -> None:
        self.clean: list[str | None] = []
        self.by_name: dict[str, list[str | None]] = {n: [] for n in names}
        self.failures: list[str] = []

    def add(self, name: str | None, genre: str | None) -> None:
        (self.clean if name is None else self.by_name[name]).append(genre)


def _guard(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(fn(), None)``, or ``(None, "<error>")`` when it raises a scoring error."""
    try:
        return fn(), None
    except SCORING_ERRORS as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def _digest(decoded: DecodedAudio) -> str:
    """Identity of what a forward pass sees: two equal digests give equal outputs."""
    h = hashlib.sha256()
    for w in decoded.windows:
        h.update(f"{len(w.wave)}:{w.skip}:{w.count}:".encode())
        h.update(np.ascontiguousarray(w.wave, dtype=np.float32).tobytes())
    return h.hexdigest()


@dataclass
class _Variant:
    """One file of a clip (the clean file or a perturbed copy), decoded once per decoding."""

    name: str | None  # perturbation name; None: the clean file
    label: str  # for failure messages
    decoded: dict[tuple[Any, ...], DecodedAudio | None]
    error: str | None = None


def _decode_all(
    path: Path, name: str | None, label: str, decoders: Mapping[tuple[Any, ...], Any]
) -> _Variant:
    """``path`` decoded once by one model of each decoding."""
    variant = _Variant(name, label, {})
    for key, model in decoders.items():
        variant.decoded[key], err = _guard(lambda m=model: m.decode(path))
        variant.error = variant.error or err
    return variant


def _variants(
    path: Path,
    perts: Sequence[Perturbation],
    tmp: Path,
    seed: int,
    decoders: Mapping[tuple[Any, ...], Any],
    on_file: Callable[[Path], None] | None,
) -> list[_Variant]:
    """The clean file and each perturbation of it, each written once and decoded once."""
    found = [_decode_all(path, None, str(path), decoders)]
    wave, rate = read_audio(path)
    for p in perts:
        label = f"{path} [{p.name}]"
        out, err = _guard(lambda p=p: p.write(wave, rate, tmp, "clip", clip_seed(seed, path)))
        if out is None:
            found.append(_Variant(p.name, label, dict.fromkeys(decoders), err))
            continue
        try:
            if on_file is not None:
                on_file(out)
            found.append(_decode_all(out, p.name, label, decoders))
        finally:
            out.unlink(missing_ok=True)
    return found


def _predict(
    model: Any, variants: Sequence[_Variant], tally: _Tally, clips_per_forward: int
) -> None:
    """One model's genre for every variant of a clip; a variant whose decoded audio equals
    one already scored (a lossless re-encode of a 16-bit file) reuses its answer."""
    key = model.decoding
    todo: dict[str, tuple[DecodedAudio, str]] = {}
    digests: list[str | None] = []
    for v in variants:
        decoded = v.decoded.get(key)
        digest = None if decoded is None else _digest(decoded)
        digests.append(digest)
        if digest is not None and digest not in todo:
            todo[digest] = (decoded, v.label)
    genres: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    pending = list(todo.items())
    batch, _ = _guard(  # a failed batch is re-scored clip by clip, naming the culprit
        lambda: model.analyse_decoded_many(
            [d for _, (d, _) in pending], [label for _, (_, label) in pending], clips_per_forward
        )
    )
    for i, (digest, (decoded, label)) in enumerate(pending):
        if batch is not None:
            genres[digest] = batch[i].genre
            continue
        one, one_err = _guard(lambda d=decoded, lb=label: model.analyse_decoded(d, lb))
        genres[digest] = None if one is None else one.genre
        if one_err:
            errors[digest] = one_err
    for v, digest in zip(variants, digests, strict=True):
        genre = None if digest is None else genres[digest]
        tally.add(v.name, genre)
        reason = v.error if digest is None else errors.get(digest)
        if genre is None:
            tally.failures.append(f"{v.label}: {reason or 'could not be scored'}")


def select_clips(track_ids: Sequence[str], genres: Sequence[str], max_clips: int) -> list[int]:
    """Indices of the clips robustness scores, in the given order: all of them, or, when
    there are more than ``max_clips`` (> 0), a deterministic genre-stratified sample.

    Each genre gets a share of ``max_clips`` proportional to its clips (largest remainders,
    ties to the genre name first), and within a genre the clips sorted by track id are taken
    evenly spaced. The sample depends only on the set of (track id, genre) pairs, never on
    the order the store lists them in, and keeps the genre mix of the test split.
    """
    n = len(track_ids)
    if max_clips <= 0 or max_clips >= n:
        return list(range(n))
    by_genre: dict[str, list[int]] = {}
    for i, g in enumerate(genres):
        by_genre.setdefault(str(g), []).append(i)
    exact = {g: max_clips * len(ix) / n for g, ix in by_genre.items()}
    quota = {g: int(q) for g, q in exact.items()}
    left = max_clips - sum(quota.values())
    for g in sorted(exact, key=lambda g: (-(exact[g] - quota[g]), g))[:left]:
        quota[g] += 1
    chosen: list[int] = []
    for g, members in by_genre.items():
        ordered = sorted(members, key=lambda i: str(track_ids[i]))
        k = quota[g]
        chosen += [ordered[(2 * j + 1) * len(ordered) // (2 * k)] for j in range(k)]
    return sorted(chosen)


def score_models(
    models: Mapping[str, Any],
    paths: Sequence[Path],
    genres: Sequence[str],
    settings: RobustnessParams,
    seed: int = 0,
    progress: bool = True,
    *,
    track_ids: Sequence[str] | None = None,
    clips_per_forward: int = 1,
    on_file: Callable[[Path], None] | None = None,
    desc: str = "robustness",
) -> dict[str, RobustnessReport]:
    """Robustness of every served model in ``models`` (name -> ServedModel) on the clips
    ``paths`` with true ``genres``, under every perturbation ``settings`` asks for.

    Each clip is read once and each perturbation written once as a real file (``on_file``
    sees each such file before it is decoded), decoded once per distinct
    :attr:`~genreflow.serving.served.ServedModel.decoding`, then scored by every model: the
    cost of encoders and decoders no longer grows with the number of models.
    ``clips_per_forward`` is :meth:`~genreflow.serving.served.ServedModel.analyse_decoded_many`'s.
    ``track_ids`` (default: the file names) decide the sample when there are more clips than
    ``settings.max_clips``.
    """
    perts = perturbations(settings)
    ids = list(track_ids) if track_ids is not None else [Path(p).name for p in paths]
    chosen = select_clips(ids, genres, settings.max_clips)
    decoders: dict[tuple[Any, ...], Any] = {}
    for model in models.values():
        decoders.setdefault(model.decoding, model)
    tallies = {name: _Tally([p.name for p in perts]) for name in models}
    with (
        tempfile.TemporaryDirectory(prefix="genreflow-robust-") as tmp,
        progress_bar(total=len(chosen), desc=desc, unit="clip", disable=not progress) as bar,
    ):
        for i in chosen:
            variants = _variants(Path(paths[i]), perts, Path(tmp), seed, decoders, on_file)
            for name, model in models.items():
                _predict(model, variants, tallies[name], clips_per_forward)
            bar.update()
    truth = [genres[i] for i in chosen]
    sample = tuple(str(ids[i]) for i in chosen) if len(chosen) < len(paths) else ()
    return {
        name: replace(_report(truth, tally), population=len(paths), sample=sample)
        for name, tally in tallies.items()
    }


def score_served(
    served: Any,
    paths: Sequence[Path],
    genres: Sequence[str],
    settings: RobustnessParams,
    seed: int = 0,
    progress: bool = True,
    desc: str = "robustness",
) -> RobustnessReport:
    """Robustness of one ``served`` model (:func:`score_models` of it alone)."""
    reports = score_models({"model": served}, paths, genres, settings, seed, progress, desc=desc)
    return reports["model"]


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
    predictions = {CLEAN: tuple(tally.clean), **{n: tuple(p) for n, p in tally.by_name.items()}}
    return RobustnessReport(
        len(truth),
        accuracy(tally.clean),
        scores,
        len(tally.failures),
        notes,
        predictions=predictions,
    )


def log_to_run(run_id: str, report: RobustnessReport) -> None:
    """The report's metrics into the candidate's training run, in one batch."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in report.mlflow_metrics().items()]
    MlflowClient().log_batch(run_id, metrics=metrics)


def evaluate_robustness(
    candidates: Mapping[str, tuple[str, str]],
    paths: Sequence[Path],
    genres: Sequence[str],
    settings: RobustnessParams,
    seed: int = 0,
    progress: bool = True,
    *,
    track_ids: Sequence[str] | None = None,
) -> dict[str, RobustnessReport]:
    """Load each candidate's logged model (name -> ``(model_uri, run_id)``), score them all
    on the same perturbed files, log each report to its run; the reports by name."""
    from genreflow.serving.served import ServedModel

    models = {name: ServedModel.load(uri) for name, (uri, _) in candidates.items()}
    reports = score_models(models, paths, genres, settings, seed, progress, track_ids=track_ids)
    for name, (uri, run_id) in candidates.items():
        for note in reports[name].notes:
            print(f"warning: {uri}: {note}", file=sys.stderr)
        log_to_run(run_id, reports[name])
    return reports
