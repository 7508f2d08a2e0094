"""The checkpoint's code identity is the code that shapes weights, seen through ``dvc repro``.

``train_cnn`` depends (in ``dvc.yaml``) on more of the package than shapes its weights: the
tracking, serving and pipeline code too, so editing any of it re-runs the stage. The stage's
checkpoint key (``genreflow.training.code_identity``) hashes only ``genreflow/models``,
``genreflow/training`` and ``features/frontend.py``. So an edit outside that scope re-runs the
stage, which reuses the finished checkpoint and writes the same weights; an edit inside it
(the training loop) makes the checkpoint stale, naming the file, and the stage trains again.

One tiny build (the tiny profile, ``dvc repro train_cnn`` only: 2 epochs) is shared; each test
edits its own copy of it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from genreflow.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration

MODEL = "models/cnn/model.pt"
CHECKPOINT = "models/cnn/checkpoint.pt"
REUSED = "training already finished at epoch 2; not retraining"
STALE = "is stale: code changed (training/loop.py); training from scratch"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, pipeline_kit) -> Path:
    """A committed tiny copy of the repository with ``train_cnn`` (and what it needs) built."""
    root = tmp_path_factory.mktemp("code-identity") / "repo"
    root.mkdir()
    pipeline_kit.copy_repo(root, pipeline_kit.tiny_params)
    pipeline_kit.dvc(root, "repro", "train_cnn")
    return root


def _edited_copy(built: Path, dest: Path, rel: str) -> Path:
    """A copy of the built repository with a comment appended to the source file ``rel``."""
    shutil.copytree(built, dest, symlinks=True)
    with (dest / rel).open("a") as fh:
        fh.write("\n# an edit that changes the file's bytes, not what it does\n")
    return dest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _repro(pipeline_kit, root: Path) -> str:
    """``dvc repro train_cnn`` in ``root``; its output, the stage's log included."""
    return pipeline_kit.dvc(root, "repro", "train_cnn", merge_output=True).stdout


def test_an_edit_outside_the_scope_reruns_the_stage_but_reuses_the_weights(
    built, tmp_path, pipeline_kit
):
    root = _edited_copy(built, tmp_path / "repo", "src/genreflow/tracking/epoch_log.py")
    before_ckpt, before_model = _sha256(root / CHECKPOINT), _sha256(root / MODEL)
    # DVC sees a changed dependency: the stage is out of date and runs.
    status = pipeline_kit.dvc(root, "status", "train_cnn").stdout
    assert "src/genreflow/tracking" in status and "modified" in status, status

    out = _repro(pipeline_kit, root)

    assert "Running stage 'train_cnn'" in out, out[-3000:]
    assert REUSED in out, out[-3000:]
    assert "is stale" not in out and "training from scratch" not in out, out[-3000:]
    # The finished checkpoint is reused as it is, not rewritten, and the weights file the
    # stage writes again from it has the same bytes: it holds content only (no run id), and
    # it is saved through a file handle (a path would name the zip's folder after the random
    # temporary file).
    assert _sha256(root / CHECKPOINT) == before_ckpt
    assert _sha256(root / MODEL) == before_model


def test_an_edit_to_the_training_loop_retrains_from_scratch(built, tmp_path, pipeline_kit):
    root = _edited_copy(built, tmp_path / "repo", "src/genreflow/training/loop.py")
    before_ckpt = _sha256(root / CHECKPOINT)

    out = _repro(pipeline_kit, root)

    assert "Running stage 'train_cnn'" in out, out[-3000:]
    assert STALE in out, out[-3000:]
    assert REUSED not in out, out[-3000:]
    # Both epochs ran again and the checkpoint was rewritten (under the new code identity).
    assert "resuming from epoch" not in out
    assert _sha256(root / CHECKPOINT) != before_ckpt
    ckpt = load_checkpoint(root / CHECKPOINT)
    assert ckpt is not None and ckpt["finished"] and ckpt["epoch"] == 2
    # its key records the edited loop, so the next repro reuses it
    edited = _sha256(root / "src/genreflow/training/loop.py")
    assert ckpt["config"]["code"]["training/loop.py"] == edited
