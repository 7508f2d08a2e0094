"""The identity of the code that shapes trained weights, for the training checkpoint's key.

A finished checkpoint is reused ("training already finished at epoch N; not retraining")
only when everything that determines its weights is unchanged. Params, seed and feature-store
content are not enough: edit the model or the training loop, run ``dvc repro``, and DVC
re-runs the stage, but a key blind to code would skip training and log the *old* weights
under the new commit.
A change that keeps the ``state_dict`` keys (activation, pooling, normalisation) would even
load the old weights into the new architecture without an error.

So the key also covers:

- every ``.py`` file of the packages ``genreflow.models`` and ``genreflow.training`` plus
  ``genreflow/features/frontend.py`` (it made the training features and the served model
  wraps it: weights are only valid with the front-end they were trained behind), found from
  the imported package's ``__file__`` so it is the code that actually runs;
- the torch version (kernels, initialisers and numerics change between releases).

Nothing else is in it, on purpose. The train stages also depend (in ``dvc.yaml``) on the
orchestration (``genreflow.pipeline.train``), tracking, serving export and core code, so an
edit there re-runs the stage, which then reuses the finished checkpoint: same weights, a new
MLflow run and a freshly exported served model. ``tests/pipeline/test_code_identity.py``
checks both sides through ``dvc repro``.

Files are identified by their path relative to the package root and the SHA-256 of their
bytes, so the checkpoint can say *which* file changed when it is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import genreflow
from genreflow.core.hashing import file_sha256

WEIGHT_SHAPING_PACKAGES = ("models", "training")
WEIGHT_SHAPING_FILES = ("features/frontend.py",)


def package_root() -> Path:
    """Directory of the imported ``genreflow`` package (the code this process runs)."""
    return Path(genreflow.__file__).resolve().parent


def weight_shaping_files(root: Path) -> list[str]:
    """Sorted POSIX paths, relative to ``root``, of the source files that shape the weights."""
    root = Path(root)
    found = {
        path.relative_to(root).as_posix()
        for package in WEIGHT_SHAPING_PACKAGES
        for path in (root / package).rglob("*.py")
        if path.is_file()
    }
    found.update(rel for rel in WEIGHT_SHAPING_FILES if (root / rel).is_file())
    return sorted(found)


def code_hashes(root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256 of its bytes}`` for :func:`weight_shaping_files`.

    ``root`` defaults to the imported package; tests pass a copy of the sources instead.
    """
    root = Path(root) if root is not None else package_root()
    return {rel: file_sha256(root / rel) for rel in weight_shaping_files(root)}


def code_identity(root: Path | None = None) -> dict[str, Any]:
    """The code part of the checkpoint key: source hashes and the torch version."""
    return {"code": code_hashes(root), "torch": torch.__version__}


def changed_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Files edited, added or removed between two :func:`code_hashes` results, sorted."""
    return sorted(rel for rel in set(old) | set(new) if old.get(rel) != new.get(rel))
