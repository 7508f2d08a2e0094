"""MLflow runs: what a training run records and how a killed one resumes.

Provenance tags (git commit, DVC stage and experiment, hashes of the data consumed), the flat
params every training run logs, and :func:`training_run`, which starts or resumes the run of
one training stage. Where runs are stored (the SQLite store, the project experiment) is
:mod:`genreflow.tracking.store`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genreflow.core.config import Params, TrainParams, flatten, to_dict
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.tracking.store import configure_mlflow

# Tag keys (kept in one place so the registry and the evaluate stage read what training wrote).
TAG_GIT_COMMIT = "git_commit"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # what the MLflow UI shows
TAG_DVC_STAGE = "dvc_stage"
TAG_DVC_EXP_NAME = "dvc_exp_name"
TAG_ARCH = "arch"
TAG_SECTION = "section"
TAG_MANIFEST_SHA = "data.validated_manifest_sha256"
TAG_FEATURES_DIGEST = "data.features_digest"


# --------------------------------------------------------------------------- provenance
def git_commit(root: Path) -> str | None:
    """HEAD commit of the repository at ``root``, or ``None`` outside git / without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=str(root),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def dir_digest(path: Path) -> str:
    """SHA-256 over a directory's files (sorted relative path + content hash of each).

    Hidden files (temporary ``.*.tmp`` siblings from :mod:`genreflow.core.atomic`) are skipped, so
    the digest names the content a stage actually consumed.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory, cannot compute its digest")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        h.update(rel.encode())
        h.update(b"\0")
        h.update(file_sha256(f).encode())
        h.update(b"\n")
    return h.hexdigest()


def data_hashes(layout: Layout) -> dict[str, str]:
    """Hashes of the validated manifest and the feature store a training run consumed."""
    out: dict[str, str] = {}
    if layout.validated_manifest.is_file():
        out[TAG_MANIFEST_SHA] = file_sha256(layout.validated_manifest)
    if layout.features_dir.is_dir():
        out[TAG_FEATURES_DIGEST] = dir_digest(layout.features_dir)
    return out


def dvc_tags() -> dict[str, str]:
    """``DVC_STAGE`` / ``DVC_EXP_NAME`` (set by ``dvc repro`` / ``dvc exp run``) as run tags."""
    tags = {}
    for env, key in (("DVC_STAGE", TAG_DVC_STAGE), ("DVC_EXP_NAME", TAG_DVC_EXP_NAME)):
        value = os.environ.get(env)
        if value:
            tags[key] = value
    return tags


# --------------------------------------------------------------------------- runs
def run_params(params: Params, section: str) -> dict[str, Any]:
    """Everything a training run depends on, flat: the stage's section, seed, thread count
    (part of the recipe: see genreflow.core.numerics) and features.

    Training keys are logged without the section prefix (``lr``, ``augment.mixup_alpha``) so
    CNN and CRNN runs share column names in the MLflow UI; ``section`` says which one it was.
    """
    train: TrainParams = getattr(params, section)
    flat: dict[str, Any] = {"section": section, "seed": params.seed, "threads": params.threads}
    flat.update(flatten(to_dict(train)))
    flat.update(flatten(to_dict(params.features), "features."))
    return {k: str(v) for k, v in flat.items()}


def run_tags(layout: Layout, params: Params, section: str) -> dict[str, str]:
    """Provenance tags of a training run (git commit, DVC stage/experiment, arch, data hashes)."""
    tags: dict[str, str] = {TAG_ARCH: getattr(params, section).arch, TAG_SECTION: section}
    commit = git_commit(layout.root)  # in a DVC temp experiment: the experiment's own clone
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        tags[TAG_MLFLOW_GIT_COMMIT] = commit
    tags.update(dvc_tags())
    tags.update(data_hashes(layout))
    # runtime knobs change speed, not results: tags, so they never split run comparisons
    tags.update({f"runtime.{k}": str(v) for k, v in to_dict(params.runtime).items()})
    return tags


def find_run(run_id: str) -> Any | None:
    """The live (not deleted) run ``run_id`` in the configured store, or ``None``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as exc:
        # "no such run" (or an id this store cannot even parse) means missing; anything else
        # (an unreachable tracking server) must not be reported as a missing run
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return None if run.info.lifecycle_stage == "deleted" else run


def _resumable(run: Any | None, experiment_id: str, params: dict[str, str]) -> bool:
    """Resume only an unfinished run of this experiment whose logged params all agree."""
    if run is None or run.info.experiment_id != experiment_id:
        return False
    if run.info.status == "FINISHED":
        return False
    logged = run.data.params
    return all(logged.get(k, v) == v for k, v in params.items())


@contextlib.contextmanager
def training_run(
    layout: Layout,
    params: Params,
    section: str,
    run_id: str | None = None,
    *,
    resume: bool = True,
) -> Iterator[Any]:
    """Start (or resume) the MLflow run of one training stage; yields the ``ActiveRun``.

    With ``resume`` and ``run_id`` naming an unfinished run of the project experiment whose
    params match, that run is resumed (a killed stage continuing from its checkpoint keeps one
    run); otherwise a new run starts, and a stale ``run_id`` still marked RUNNING is set to
    KILLED so the UI does not show it as running forever. The block raising ends the run as
    FAILED (KILLED on Ctrl-C).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    configure_mlflow(layout, params.tracking.experiment)
    exp = mlflow.get_experiment_by_name(params.tracking.experiment)
    assert exp is not None  # configure_mlflow created it
    flat = run_params(params, section)
    existing = find_run(run_id) if run_id else None
    if resume and _resumable(existing, exp.experiment_id, flat):
        active = mlflow.start_run(run_id=run_id)
    else:
        if existing is not None and existing.info.status == "RUNNING":
            MlflowClient().set_terminated(existing.info.run_id, status="KILLED")
        arch = getattr(params, section).arch
        active = mlflow.start_run(experiment_id=exp.experiment_id, run_name=f"{section}-{arch}")
    try:
        mlflow.log_params(flat)
        mlflow.set_tags(run_tags(layout, params, section))
        yield active
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
