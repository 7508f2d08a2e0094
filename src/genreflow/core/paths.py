"""Where every artifact lives, relative to one repository root.

Stages, the CLI and tests all go through :class:`Layout` so a temporary copy of the
repository (as the integration tests use) never writes into the real one. It is the one
place that names an artifact's path: ``dvc.yaml`` declares the same paths as stage outputs,
and ``tests/code/test_layout.py`` fails when the two drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def find_repo_root(start: Path | None = None) -> Path:
    """The repository root: the nearest directory (from ``start`` or the current one) holding
    ``dvc.yaml`` or ``params.yaml``; ``$DVC_ROOT`` only when there is none.

    The working directory comes first because DVC 3.67 sets ``DVC_ROOT`` to the *parent*
    repository even when ``dvc exp run --temp`` or a queued experiment runs the stages in a
    copy under ``.dvc/tmp/exps/``: trusting it would read the parent's params and write the
    parent's models.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file() or (candidate / "params.yaml").is_file():
            return candidate
    env_root = os.environ.get("DVC_ROOT")
    return Path(env_root).resolve() if env_root else here


@dataclass(frozen=True)
class Layout:
    """Paths of the pipeline's artifacts under ``root``."""

    root: Path

    @classmethod
    def from_root(cls, root: Path | str | None = None) -> Layout:
        return cls(Path(root).resolve() if root is not None else find_repo_root())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    # fetch
    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw_dir / "manifest.csv"

    @property
    def downloads_dir(self) -> Path:
        """Download cache outside every DVC output, so a partial transfer survives a failed run."""
        return self.root / "data" / "downloads"

    # validate
    @property
    def validated_dir(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def validated_manifest(self) -> Path:
        return self.validated_dir / "manifest.csv"

    @property
    def validation_reports(self) -> Path:
        """Written whether validate passes or not: what the user reads to fix the data."""
        return self.reports_dir / "validation"

    @property
    def validation_quarantine(self) -> Path:
        """Every file not passed on (quarantined or excluded by the split), with its reasons."""
        return self.validation_reports / "quarantine.csv"

    @property
    def validation_clips(self) -> Path:
        """The full per-clip table with each row's verdict."""
        return self.validation_reports / "clips.csv"

    @property
    def validation_gx_result(self) -> Path:
        return self.validation_reports / "gx_result.json"

    @property
    def validation_data_docs(self) -> Path:
        """Great Expectations' Data Docs site (a directory; ``index.html`` inside)."""
        return self.validation_reports / "data_docs"

    @property
    def validation_summary(self) -> Path:
        """The stage's decision (DVC metrics)."""
        return self.validation_reports / "summary.json"

    # spectrogramize
    @property
    def features_dir(self) -> Path:
        return self.root / "data" / "features"

    @property
    def figures_dir(self) -> Path:
        return self.reports_dir / "figures"

    @property
    def figures(self) -> tuple[Path, ...]:
        """The paper-style figures: waveforms, dB spectrograms, mel spectrograms, in that order."""
        names = ("waveforms.png", "spectrograms_db.png", "mel_spectrograms.png")
        return tuple(self.figures_dir / name for name in names)

    # train_cnn / train_lstm: one directory per architecture (``cnn`` or ``crnn``)
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, arch: str) -> Path:
        return self.models_dir / arch

    def checkpoint(self, arch: str) -> Path:
        """Resumable training state (a ``persist: true`` output; see training.loop)."""
        return self.model_dir(arch) / "checkpoint.pt"

    def run_id_file(self, arch: str) -> Path:
        """The MLflow run the checkpoint belongs to (persisted with it)."""
        return self.model_dir(arch) / "mlflow_run_id"

    def model_file(self, arch: str) -> Path:
        """Best-epoch weights plus configs (:func:`genreflow.serving.core.save_model`)."""
        return self.model_dir(arch) / "model.pt"

    def run_info(self, arch: str) -> Path:
        """``run.json``: the training scores, content only; written last by training."""
        return self.model_dir(arch) / "run.json"

    def training_curve(self, arch: str) -> Path:
        """One row per epoch (DVC plots), rewritten after every epoch."""
        return self.reports_dir / "training" / f"{arch}.csv"

    # evaluate
    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def evaluate_dir(self) -> Path:
        return self.reports_dir / "evaluate"

    def confusion(self, arch: str, ext: str) -> Path:
        """Confusion outputs of ``arch`` on the test clips: ``json`` (per-clip rows for DVC
        plots), ``csv`` (the matrix) or ``png`` (the figure)."""
        return self.evaluate_dir / f"confusion_{arch}.{ext}"

    @property
    def metrics(self) -> Path:
        """Test scores of every candidate and the baseline (DVC metrics)."""
        return self.reports_dir / "metrics.json"

    @property
    def promotion(self) -> Path:
        """This evaluation's registry decisions and the scores compared."""
        return self.reports_dir / "promotion.json"

    @property
    def promotion_log(self) -> Path:
        """Every decision ever made, one JSON line each (a ``persist: true`` output)."""
        return self.reports_dir / "promotion_log.jsonl"

    @property
    def similarity_index(self) -> Path:
        """The similar-song index (faiss vectors, catalogue, meta; see genreflow.similarity):
        built by evaluate with the champion, rebuilt by promote / rollback."""
        return self.models_dir / "similarity_index"

    @property
    def library_indexes(self) -> Path:
        """Named indexes of people's own music (``genreflow index PATH... --name NAME``),
        beside the corpus index. Not a DVC output: a library lives outside the pipeline."""
        return self.models_dir / "libraries"

    def library_index(self, name: str) -> Path:
        return self.library_indexes / name

    @property
    def serving_cache(self) -> Path:
        """A local, verified copy of the champion for fast CLI starts (see genreflow.serving).
        Not a DVC output: the registry stays the source of truth, the copy names its version."""
        return self.models_dir / "serving_cache"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    def relative(self, path: Path) -> str:
        """POSIX path relative to the root, as manifests store it."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def absolute(self, rel: str) -> Path:
        return self.root / rel
