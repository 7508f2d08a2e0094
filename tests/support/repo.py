"""Committed copies of this repository with the tiny pipeline profile, the environment child
processes get, and one ``dvc`` runner. The pipeline tests reach them through the session
fixture ``pipeline_kit`` (a :class:`PipelineKit`, in ``tests/pipeline/conftest.py``); other
conftests import them from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from support.processes import VENV_BIN, child_env, run

REPO = Path(__file__).resolve().parents[2]  # tests/support/repo.py -> the repository
DVC_TIMEOUT_S = 900


def tiny_pipeline_params(params: dict) -> dict:
    """The tiny profile (10 genres x 3 clips x 5 s, tiny models, 2 epochs) of ``params``."""
    params["data"]["synthetic"].update(clips_per_genre=3, duration_s=5.0)
    params["features"].update(n_mels=32, n_fft=1024, hop_length=512)
    for section, channels, dense in (
        ("train_cnn", [4, 8, 8, 16, 16], [32, 16, 16, 16]),
        ("train_lstm", [4, 8, 8], [16]),
    ):
        params[section].update(
            epochs=2,
            batch_size=16,
            channels=channels,
            dense=dense,
            lstm_hidden=8,
            early_stopping_patience=0,
        )
    params["evaluate"].update(bootstrap_samples=200)
    # Every perturbation still runs, on a few clips: the tiny profile is about the pipeline.
    params["evaluate"]["robustness"].update(max_clips=6)
    return params


def repo_files() -> list[str]:
    """The repository's files as git sees them: tracked, plus untracked ones not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line and (REPO / line).is_file()]


def copy_repo(root: Path, params_transform: Callable[[dict], dict]) -> Path:
    """Copy the repository's files into ``root``, rewrite its ``params.yaml`` with
    ``params_transform``, and commit the copy as a fresh git repository; returns ``root``."""
    for rel in repo_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params_transform(params), sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    return root


def clean_env() -> dict[str, str]:
    """This process's environment without MLflow's variables, which in-process tests (and
    ``mlflow.set_tracking_uri`` itself) may have set: each copy must use its own mlflow.db."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def dvc_env() -> dict[str, str]:
    """The environment for ``dvc``: :func:`support.processes.child_env` (no MLflow or enclosing
    stage's variables, the venv first on PATH so stage commands find its executables)."""
    return child_env()


def run_dvc(
    root: Path, *args: str, timeout: float = DVC_TIMEOUT_S, merge_output: bool = False
) -> subprocess.CompletedProcess:
    """Run the venv's ``dvc`` in ``root`` in its own session (see :func:`support.processes.run`):
    its completed process, or an AssertionError showing its output. ``merge_output`` sends
    stderr into stdout (one interleaved text)."""
    return run(
        [str(VENV_BIN / "dvc"), *args],
        root,
        dvc_env(),
        timeout=timeout,
        merge_output=merge_output,
    )


@dataclass(frozen=True)
class PipelineKit:
    """What the ``pipeline_kit`` fixture hands a test."""

    source: Path  # the repository under test (copied, never changed)
    venv_bin: Path  # the venv's executables: dvc, genreflow
    tiny_params: Callable[[dict], dict]  # tiny_params(params): the tiny profile, in place
    copy_repo: Callable[[Path, Callable[[dict], dict]], Path]  # copy_repo(root, transform)
    clean_env: Callable[[], dict[str, str]]  # for the genreflow CLI
    dvc_env: Callable[[], dict[str, str]]  # for dvc
    dvc: Callable[..., subprocess.CompletedProcess]  # dvc(root, *args, timeout=, merge_output=)


def kit() -> PipelineKit:
    """The pipeline tests' shared helpers and paths, as the ``pipeline_kit`` fixture hands them."""
    return PipelineKit(
        source=REPO,
        venv_bin=VENV_BIN,
        tiny_params=tiny_pipeline_params,
        copy_repo=copy_repo,
        clean_env=clean_env,
        dvc_env=dvc_env,
        dvc=run_dvc,
    )


@dataclass(frozen=True)
class DvcBuild:
    """The tiny pipeline built by ``dvc repro`` in a committed copy (its own ``mlflow.db``)."""

    root: Path
    repro: subprocess.CompletedProcess  # the `dvc repro` that built it
    lock: str  # dvc.lock as that repro left it (tests may promote a champion afterwards)


def build_tiny_pipeline(root: Path) -> DvcBuild:
    """Copy the repository to ``root`` with the tiny profile and ``dvc repro`` every stage."""
    copy_repo(root, tiny_pipeline_params)
    repro = run_dvc(root, "repro")
    return DvcBuild(root, repro, (root / "dvc.lock").read_text())
