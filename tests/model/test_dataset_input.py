"""The validated manifest is each training run's dataset input (the UI's Dataset column).

The tiny repository, params and tracking stores come from the ``tiny`` fixture
(``tests/model/conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from genreflow.core.paths import Layout


@pytest.fixture(scope="module")
def tiny_repo(tiny, tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return tiny.make_repo(tmp_path_factory.mktemp("dsrepo"))


def _source_uri(dataset_input) -> str:
    from mlflow.data import get_source

    return str(get_source(dataset_input).uri)


def test_training_run_logs_the_validated_manifest(
    tiny, tiny_repo: Layout, tmp_path: Path, tmp_path_factory, monkeypatch
) -> None:
    from mlflow.tracking import MlflowClient

    from genreflow.core.hashing import file_sha256
    from genreflow.pipeline.train import train_stage
    from genreflow.tracking.dataset_input import CONTEXT, DATASET_NAME, manifest_digest
    from genreflow.tracking.runs import TAG_MANIFEST_SHA

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    summary = train_stage(tiny.params(epochs=1), "train_lstm", tiny_repo, progress=False)

    run = MlflowClient().get_run(summary["run_id"])
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    (ds_input,) = inputs
    sha = file_sha256(tiny_repo.validated_manifest)
    assert ds_input.dataset.name == DATASET_NAME == "validated-manifest"
    assert ds_input.dataset.digest == manifest_digest(sha) == sha[:16]
    assert sha.startswith(ds_input.dataset.digest) and run.data.tags[TAG_MANIFEST_SHA] == sha
    tags = {t.key: t.value for t in ds_input.tags}
    assert tags["mlflow.data.context"] == CONTEXT == "training"
    assert tags["sha256"] == sha
    assert Path(_source_uri(ds_input)) == tiny_repo.validated_manifest.resolve()
    # the profile the UI shows counts the manifest's rows
    rows = len(pd.read_csv(tiny_repo.validated_manifest))
    assert json.loads(ds_input.dataset.profile)["num_rows"] == rows


def test_relogging_is_idempotent_and_other_data_gets_another_digest(
    tiny, tmp_path: Path, tmp_path_factory, monkeypatch
) -> None:
    """A resumed run logs the same manifest again without a second input; changed data shows."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from genreflow.tracking.dataset_input import log_manifest_input

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("track_id,genre,split\nblues.0,blues,train\n")
    with mlflow.start_run() as first:
        digest = log_manifest_input(manifest)
        assert log_manifest_input(manifest) == digest
    manifest.write_text("track_id,genre,split\nblues.0,blues,val\n")
    with mlflow.start_run() as second:
        other = log_manifest_input(manifest)
    assert other != digest
    client = MlflowClient()
    for run_id, expected in ((first.info.run_id, digest), (second.info.run_id, other)):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [
            ("validated-manifest", expected)
        ]
