"""train_stage: MLflow params/metrics/tags, model files, plots CSV, and resuming one run.

The tiny repository, params and tracking stores come from the ``tiny`` fixture
(``tests/model/conftest.py``, which explains the tiny data's design).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from genreflow.core.paths import Layout


@pytest.fixture(scope="module")
def tiny_repo(tiny, tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return tiny.make_repo(tmp_path_factory.mktemp("repo"))


def _metric_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


#: What train_stage returns beside run.json: provenance, which lives in MLflow only.
PROVENANCE = ("run_id", "model_uri")


def test_train_stage_logs_run_and_writes_outputs(
    tiny, tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from genreflow.core.hashing import file_sha256
    from genreflow.pipeline.train import train_stage
    from genreflow.serving.core import load_classifier
    from genreflow.tracking.runs import TAG_FEATURES_DIGEST, TAG_MANIFEST_SHA

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    monkeypatch.setenv("DVC_STAGE", "train_cnn")
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-exp")
    params = tiny.params()
    summary = train_stage(params, "train_cnn", tiny_repo, progress=False)

    model_dir = tiny_repo.models_dir / "cnn"
    run_json = json.loads((model_dir / "run.json").read_text())
    # run.json is a DVC output, content only: no run id, model URI, machine path or resume
    assert run_json == {k: v for k, v in summary.items() if k not in PROVENANCE}
    assert set(run_json) == {
        "experiment",
        "arch",
        "section",
        "best_epoch",
        "best_val_clip_accuracy",
        "epochs_run",
        "stopped_early",
    }
    assert run_json["arch"] == "cnn" and summary["model_uri"].startswith("models:/")
    assert str(tmp_path) not in (model_dir / "run.json").read_text()
    assert (model_dir / "mlflow_run_id").read_text().strip() == summary["run_id"]
    assert (model_dir / "checkpoint.pt").is_file()
    classifier, meta = load_classifier(model_dir / "model.pt")
    assert meta["genres"] == list(tiny.genres) and meta["feature_params"] == tiny.features

    with (tiny_repo.reports_dir / "training" / "cnn.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    epochs = list(range(1, 9))  # tiny_train: 8 epochs
    assert [int(r["epoch"]) for r in rows] == epochs
    assert {"train_loss", "val_loss", "val_accuracy", "val_clip_accuracy"} <= set(rows[0])
    assert "seconds" not in rows[0]  # wall time is provenance: MLflow's epoch_seconds only

    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "genreflow"
    p = run.data.params
    assert p["arch"] == "cnn" and p["epochs"] == "8" and p["lr"] == "0.01"
    assert p["channels"] == "[8, 8, 16, 16, 16]" and p["augment.mixup_alpha"] == "0.0"
    assert p["seed"] == "3" and p["features.n_mels"] == "16" and p["section"] == "train_cnn"
    t = run.data.tags
    assert t["arch"] == "cnn"
    assert t["dvc_stage"] == "train_cnn" and t["dvc_exp_name"] == "tiny-exp"
    assert t[TAG_MANIFEST_SHA] == file_sha256(tiny_repo.validated_manifest)
    assert len(t[TAG_FEATURES_DIGEST]) == 64
    for key in (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_clip_accuracy",
        "epoch_seconds",
    ):
        assert _metric_steps(client, run.info.run_id, key) == epochs, key
    assert all(m.value > 0 for m in client.get_metric_history(run.info.run_id, "epoch_seconds"))
    history = client.get_metric_history(run.info.run_id, "val_clip_accuracy")
    csv_clip = {int(r["epoch"]): float(r["val_clip_accuracy"]) for r in rows}
    assert {m.step: m.value for m in history} == pytest.approx(csv_clip)
    assert run.data.metrics["best_val_clip_accuracy"] == pytest.approx(
        run_json["best_val_clip_accuracy"]
    )
    # the logged model is the serving model, with a variable-length waveform signature
    from mlflow.models import get_model_info

    info = get_model_info(summary["model_uri"])
    spec = info.signature.inputs.inputs[0]
    assert spec.shape == (-1, -1) and str(spec.type) == "float32"
    outputs = {col.name for col in info.signature.outputs.inputs}
    assert {"genre", "probabilities", "embedding", "model_id"} <= outputs
    assert info.metadata["genres"] == list(tiny.genres)


#: The CRNN stage's outputs that hold content only (its mlflow_run_id may differ run to run).
CONTENT_FILES = ("models/crnn/run.json", "reports/training/crnn.csv")


class _Killed(BaseException):
    """Stands in for the stage being killed mid-training."""


def _sharing_data(tiny_repo: Layout, root) -> Layout:
    """A new repository at ``root`` whose data is the tiny repository's (no models yet)."""
    layout = Layout.from_root(root)
    layout.root.mkdir()
    (layout.root / "data").symlink_to(tiny_repo.root / "data", target_is_directory=True)
    return layout


def _killed(monkeypatch, owner, attr, when, params, layout, section="train_lstm") -> str:
    """Run the training stage with ``owner.attr`` raising :class:`_Killed` right after a call
    for which ``when(*args)`` holds (a kill at that point); then restore it. Returns the MLflow
    run id the killed stage left in ``models/<arch>/mlflow_run_id``."""
    from genreflow.pipeline.train import train_stage

    original = getattr(owner, attr)

    def dies(*args):
        original(*args)
        if when(*args):
            raise _Killed()

    monkeypatch.setattr(owner, attr, dies)
    with pytest.raises(_Killed):
        train_stage(params, section, layout, progress=False)
    monkeypatch.setattr(owner, attr, original)
    arch = getattr(params, section).arch
    return (layout.models_dir / arch / "mlflow_run_id").read_text().strip()


def test_killed_stage_resumes_same_mlflow_run(
    tiny, tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    from mlflow.tracking import MlflowClient

    import genreflow.pipeline.train as stage_mod
    from genreflow.tracking.epoch_log import EpochLogger

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    layout = _sharing_data(tiny_repo, tmp_path / "repo2")
    params = tiny.params(epochs=3)

    run_id = _killed(
        monkeypatch, EpochLogger, "__call__", lambda _, m: m.epoch == 2, params, layout
    )
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FAILED"
    assert _metric_steps(client, run_id, "val_clip_accuracy") == [1, 2]
    assert not (layout.models_dir / "crnn" / "run.json").exists()

    summary = stage_mod.train_stage(params, "train_lstm", layout, progress=False)
    assert summary["run_id"] == run_id
    assert client.get_run(run_id).data.tags["resumed_from_epoch"] == "2"  # MLflow, not run.json
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("train_loss", "val_loss", "val_clip_accuracy"):
        assert _metric_steps(client, run_id, key) == [1, 2, 3], key
    runs = client.search_runs([client.get_run(run_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    with (layout.reports_dir / "training" / "crnn.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]

    resumed_files = {p: (layout.root / p).read_bytes() for p in CONTENT_FILES}

    # a finished run is never resumed: a forced re-run starts a new run
    again = stage_mod.train_stage(params, "train_lstm", layout, progress=False)
    assert again["run_id"] != run_id
    assert _metric_steps(client, again["run_id"], "val_clip_accuracy") == [1, 2, 3]
    assert (layout.models_dir / "crnn" / "mlflow_run_id").read_text().strip() == again["run_id"]
    # another run id, no resume: run.json and the curve are the same bytes all the same
    assert {p: (layout.root / p).read_bytes() for p in CONTENT_FILES} == resumed_files


def test_stage_killed_at_its_first_checkpoint_resumes_the_same_mlflow_run(
    tiny, tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    """Killed the moment epoch 1's checkpoint is written (before the epoch is logged): the
    run id file already names the run, so the re-run resumes it instead of leaving a second,
    orphaned run (the race a SIGKILLed torchrun rank hit on a loaded CI machine)."""
    from mlflow.tracking import MlflowClient

    import genreflow.pipeline.train as stage_mod
    import genreflow.training.loop as loop_mod

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    layout = _sharing_data(tiny_repo, tmp_path / "repo3")
    params = tiny.params(epochs=2)
    run_id = _killed(
        monkeypatch, loop_mod, "save_checkpoint", lambda *_: True, params, layout, "train_cnn"
    )
    client = MlflowClient()
    assert _metric_steps(client, run_id, "val_clip_accuracy") == []  # epoch 1 not logged yet

    summary = stage_mod.train_stage(params, "train_cnn", layout, progress=False)
    assert summary["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.data.tags["resumed_from_epoch"] == "1"
    assert _metric_steps(client, run_id, "val_clip_accuracy") == [1, 2]  # epoch 1 from the ckpt
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [run_id]


def test_train_stage_rejects_store_made_with_other_features(
    tiny, tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    from genreflow.pipeline.train import train_stage

    tiny.use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    params = replace(tiny.params(), features=replace(tiny.features, n_mels=32))
    with pytest.raises(ValueError, match=r"meta\.json.*dvc repro spectrogramize"):
        train_stage(params, "train_cnn", tiny_repo, progress=False)
