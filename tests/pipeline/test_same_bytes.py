"""Same commit, same bytes, through DVC: a copy of the repository built under another
machine's code paths and other runtime values reproduces the session build's ``dvc.lock``
for every stage, apart from the ``mlflow_run_id`` provenance files (each copy has its own
fresh ``mlflow.db``, so the registry decisions start from the same empty state).

"Another machine" is the environment that selects other code paths in MKL, ATen and oneDNN
and another thread count (``OTHER_MACHINE``), plus other ``runtime`` values. The control
shows the same environment does change the features when ``runtime.pin_numerics`` is off,
so the comparison can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.processes import dvc
from support.repo import copy_repo, tiny_pipeline_params

OTHER_MACHINE = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
}
STAGES = ("fetch", "validate", "spectrogramize", "train_cnn", "train_lstm", "evaluate")
PROVENANCE_SUFFIX = "mlflow_run_id"  # the one output allowed to differ between two runs


def content_of(lock: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's lock entry without its provenance files (as deps or outs)."""
    entry = dict(lock["stages"][stage])
    for side in ("deps", "outs"):
        entry[side] = [x for x in entry.get(side, []) if not x["path"].endswith(PROVENANCE_SUFFIX)]
    return entry


def read_lock(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "dvc.lock").read_text())


def built_lock(build) -> dict[str, Any]:
    """The session build's dvc.lock as its ``dvc repro`` left it."""
    return yaml.safe_load(build.lock)


def _other_runtime(params: dict) -> dict:
    params = tiny_pipeline_params(params)
    params["runtime"]["workers"] = 1
    return params


@pytest.fixture(scope="module")
def other_machine(tmp_path_factory) -> Path:
    """A fresh copy, ``dvc repro`` under ``OTHER_MACHINE`` with one worker."""
    root = copy_repo(tmp_path_factory.mktemp("other-machine"), _other_runtime)
    dvc(root, "repro", **OTHER_MACHINE)
    return root


@pytest.fixture(scope="module")
def other_lock(other_machine) -> dict[str, Any]:
    return read_lock(other_machine)  # read before the control below re-runs a stage


@pytest.mark.parametrize("stage", STAGES)
def test_another_machine_reproduces_the_lock(dvc_built, other_lock, stage):
    assert content_of(other_lock, stage) == content_of(built_lock(dvc_built), stage)


def test_only_the_provenance_files_differ(dvc_built, other_lock):
    """The run id files do differ (a new MLflow run), and they are all that does."""
    ours, theirs = built_lock(dvc_built), other_lock
    differing = {
        out["path"]
        for stage in STAGES
        for out, other in zip(
            ours["stages"][stage]["outs"], theirs["stages"][stage]["outs"], strict=True
        )
        if out != other
    }
    assert differing == {"models/cnn/mlflow_run_id", "models/crnn/mlflow_run_id"}


def features_after_unpinned_spectrogramize(root: Path, **env: str) -> dict[str, Any]:
    """``data/features``'s lock entry after spectrogramize re-ran without the pins in ``env``."""
    dvc(root, "repro", "--single-item", "--force", "spectrogramize", **env)
    outs = read_lock(root)["stages"]["spectrogramize"]["outs"]
    return next(out for out in outs if out["path"] == "data/features")


def test_control_unpinned_the_same_environment_changes_the_features(other_machine, other_lock):
    """Without the pins (``runtime.pin_numerics: false``), the environment above does select
    other code paths: the features move with it, so the comparison above could fail."""
    params_path = other_machine / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["runtime"]["pin_numerics"] = False
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    here = features_after_unpinned_spectrogramize(other_machine)
    elsewhere = features_after_unpinned_spectrogramize(other_machine, **OTHER_MACHINE)
    assert here["md5"] != elsewhere["md5"]
