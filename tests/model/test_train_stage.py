"""train_stage: MLflow params/metrics/tags, model files, plots CSV, and resuming one run.

``make_tiny_repo`` (also imported by the evaluate and registry tests) builds a throw-away
repository: tiny WAVs whose genre is the direction of short frequency chirps (see ``_tone``),
a validated manifest, and a feature store computed by the real ``spectrogramize`` (so raw
waveforms and features agree). Both tiny networks classify every test clip correctly, while
the per-clip mean/std baseline is at chance, so a candidate can clear the baseline floor.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreflow.config import (
    AugmentParams,
    DataParams,
    EvaluateParams,
    FeatureParams,
    Params,
    TrainParams,
)
from genreflow.paths import Layout

GENRES = ("blues", "classical", "metal")
SPLITS = {"train": 8, "val": 5, "test": 5}
CLIP_S = 1.2
TINY_FEATURES = FeatureParams(
    sample_rate=8000,
    n_fft=256,
    hop_length=128,
    n_mels=16,
    f_min=0.0,
    f_max=4000.0,
    segment_s=0.3,
    segment_hop_s=0.15,
)  # 19 frames per segment, 7 segments per 1.2-s clip


NO_AUGMENT = AugmentParams(0, 0, 0, 0, 0.0, 0)


def tiny_train(arch: str, **overrides) -> TrainParams:
    cnn = arch == "cnn"
    base = TrainParams(
        arch=arch,
        epochs=8,
        batch_size=16,
        lr=0.01 if cnn else 0.05,  # the 10-weight-layer CNN without BatchNorm needs a low lr
        momentum=0.9,
        dropout=0.0,
        channels=(8, 8, 16, 16, 16) if cnn else (4, 8),  # the CNN has 5 conv blocks
        dense=(32, 32, 16, 16) if cnn else (16,),  # and 4 hidden dense layers
        lstm_hidden=8,
        lr_schedule="none",
        augment=NO_AUGMENT,  # the tiny segments are 19 frames: masks would erase them
        mixed_precision=False,
    )
    return replace(base, **overrides)


def tiny_params(**train_overrides) -> Params:
    return Params(
        seed=3,
        data=DataParams(genres=GENRES),
        features=TINY_FEATURES,
        train_cnn=tiny_train("cnn", **train_overrides),
        train_lstm=tiny_train("crnn", **train_overrides),
        evaluate=EvaluateParams(bootstrap_samples=200, bootstrap_seed=0, promotion_margin=0.0),
    )


# Each clip is a train of short chirps ("notes") with silent gaps between them: "blues"
# chirps only rise, "classical" chirps only fall, "metal" chirps alternate rise/fall. A
# falling chirp is a rising one reversed in time, the gaps are longer than the STFT window
# and a clip holds whole note pairs, so every genre has the same per-band log-mel mean and
# std: the mean/std baseline sits at chance, while the direction shows within one segment.
NOTES = {"blues": (False, False), "classical": (True, True), "metal": (False, True)}
NOTE_S = 0.2  # one chirp plus its gap; CLIP_S holds a whole number of note pairs
GAP_S = 0.045  # > n_fft / sample_rate (32 ms): no STFT frame sees two notes
FADE_S = 0.01


def _tone(genre: str, rng: np.random.Generator) -> np.ndarray:
    sr = TINY_FEATURES.sample_rate
    note, gap, fade = (int(round(s * sr)) for s in (NOTE_S, GAP_S, FADE_S))
    f_lo = rng.uniform(250.0, 350.0)
    octaves = rng.uniform(2.3, 2.7)
    amp = rng.uniform(0.2, 0.5)
    n_chirp = note - gap
    u = np.arange(n_chirp) / n_chirp
    freq = f_lo * 2.0 ** (octaves * u)
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade) ** 2
    env = np.ones(n_chirp)
    env[:fade], env[-fade:] = ramp, ramp[::-1]
    pair = []
    for falling in NOTES[genre]:
        phase = 2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi)
        chirp = amp * env * np.sin(phase)
        pair += [chirp[::-1] if falling else chirp, np.zeros(gap)]
    n = int(round(CLIP_S * sr))
    wave = np.tile(np.concatenate(pair), n // (2 * note) + 1)
    wave = np.roll(wave[:n], rng.integers(2 * note))
    return (wave + 0.02 * rng.standard_normal(n)).astype(np.float32)


def make_tiny_repo(root: Path) -> Layout:
    """WAVs + validated manifest + a real feature store under ``root``; returns its Layout."""
    from genreflow.features.stage import spectrogramize
    from genreflow.validation.decode_table import audio_hash

    layout = Layout.from_root(root)
    rng = np.random.default_rng(0)
    rows = []
    for genre in GENRES:
        for split, count in SPLITS.items():
            for k in range(count):
                track_id = f"{genre}.{split}{k}"
                rel = f"data/raw/{genre}/{track_id}.wav"
                path = layout.absolute(rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                wave = _tone(genre, rng)
                sf.write(path, wave, TINY_FEATURES.sample_rate, subtype="FLOAT")
                rows.append(
                    {
                        "track_id": track_id,
                        "genre": genre,
                        "split": split,
                        "path": rel,
                        "audio_sha256": audio_hash(wave),
                    }
                )
    layout.validated_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(layout.validated_manifest, index=False)
    spectrogramize(TINY_FEATURES, list(GENRES), layout, progress=False, figures=False)
    return layout


_TEMPLATE_DB: list[Path] = []


def empty_tracking_db(factory: pytest.TempPathFactory, target: Path) -> str:
    """Copy an empty, fully migrated ``mlflow.db`` to ``target``; returns its URI.

    Creating a store runs MLflow's ~50 schema migrations (seconds each time); one template
    per test session, copied, keeps every test on its own store without paying that again.
    """
    if not _TEMPLATE_DB:
        from mlflow.tracking import MlflowClient

        from genreflow.tracking import quiet_mlflow

        quiet_mlflow()
        db = factory.mktemp("mlflow-template") / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}").search_experiments()
        _TEMPLATE_DB.append(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE_DB[0], target)
    return f"sqlite:///{target.as_posix()}"


def use_tracking_db(
    monkeypatch: pytest.MonkeyPatch, directory: Path, factory: pytest.TempPathFactory
) -> str:
    """Point MLFLOW_TRACKING_URI at a fresh store in ``directory``; clear DVC's variables."""
    uri = empty_tracking_db(factory, directory / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return uri


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_tiny_repo(tmp_path_factory.mktemp("repo"))


def _metric_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_train_stage_logs_run_and_writes_outputs(
    tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from genreflow.models.serving import load_classifier
    from genreflow.tracking import TAG_FEATURES_DIGEST, TAG_MANIFEST_SHA, file_sha256
    from genreflow.training.stage import train_stage

    use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    monkeypatch.setenv("DVC_STAGE", "train_cnn")
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-exp")
    params = tiny_params()
    summary = train_stage(params, "train_cnn", tiny_repo, progress=False)

    model_dir = tiny_repo.models_dir / "cnn"
    run_json = json.loads((model_dir / "run.json").read_text())
    assert run_json == summary
    assert run_json["arch"] == "cnn" and run_json["model_uri"].startswith("models:/")
    assert run_json["tracking_uri"] == f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    assert (model_dir / "mlflow_run_id").read_text().strip() == run_json["run_id"]
    assert (model_dir / "checkpoint.pt").is_file()
    classifier, meta = load_classifier(model_dir / "model.pt")
    assert meta["genres"] == list(GENRES) and meta["feature_params"] == TINY_FEATURES

    with (tiny_repo.reports_dir / "training" / "cnn.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    epochs = list(range(1, 9))  # tiny_train: 8 epochs
    assert [int(r["epoch"]) for r in rows] == epochs
    assert {"train_loss", "val_loss", "val_accuracy", "val_clip_accuracy"} <= set(rows[0])

    client = MlflowClient()
    run = client.get_run(run_json["run_id"])
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
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_clip_accuracy"):
        assert _metric_steps(client, run.info.run_id, key) == epochs, key
    history = client.get_metric_history(run.info.run_id, "val_clip_accuracy")
    csv_clip = {int(r["epoch"]): float(r["val_clip_accuracy"]) for r in rows}
    assert {m.step: m.value for m in history} == pytest.approx(csv_clip)
    assert run.data.metrics["best_val_clip_accuracy"] == pytest.approx(
        run_json["best_val_clip_accuracy"]
    )
    # the logged model is the serving model, with a variable-length waveform signature
    from mlflow.models import get_model_info

    info = get_model_info(run_json["model_uri"])
    spec = info.signature.inputs.inputs[0]
    assert spec.shape == (-1, -1) and str(spec.type) == "float32"
    assert info.signature.outputs.inputs[0].shape == (-1, len(GENRES))


class _Killed(BaseException):
    """Stands in for the stage being killed mid-training."""


def test_killed_stage_resumes_same_mlflow_run(tiny_repo, tmp_path, tmp_path_factory, monkeypatch):
    from mlflow.tracking import MlflowClient

    from genreflow.training import stage as stage_mod
    from genreflow.training.epoch_log import EpochLogger

    use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    layout = Layout.from_root(tmp_path / "repo2")
    layout.root.mkdir()
    (layout.root / "data").symlink_to(tiny_repo.root / "data", target_is_directory=True)
    params = tiny_params(epochs=3)

    original = EpochLogger.__call__

    def dies_after_epoch_2(self, metrics):
        original(self, metrics)
        if metrics.epoch == 2:
            raise _Killed()

    monkeypatch.setattr(EpochLogger, "__call__", dies_after_epoch_2)
    with pytest.raises(_Killed):
        stage_mod.train_stage(params, "train_lstm", layout, progress=False)
    run_id = (layout.models_dir / "crnn" / "mlflow_run_id").read_text().strip()
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FAILED"
    assert _metric_steps(client, run_id, "val_clip_accuracy") == [1, 2]
    assert not (layout.models_dir / "crnn" / "run.json").exists()

    monkeypatch.setattr(EpochLogger, "__call__", original)
    summary = stage_mod.train_stage(params, "train_lstm", layout, progress=False)
    assert summary["run_id"] == run_id
    assert summary["resumed_from_epoch"] == 2
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("train_loss", "val_loss", "val_clip_accuracy"):
        assert _metric_steps(client, run_id, key) == [1, 2, 3], key
    runs = client.search_runs([client.get_run(run_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    with (layout.reports_dir / "training" / "crnn.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]

    # a finished run is never resumed: a forced re-run starts a new run
    again = stage_mod.train_stage(params, "train_lstm", layout, progress=False)
    assert again["run_id"] != run_id
    assert _metric_steps(client, again["run_id"], "val_clip_accuracy") == [1, 2, 3]


def test_train_stage_rejects_store_made_with_other_features(
    tiny_repo, tmp_path, tmp_path_factory, monkeypatch
):
    from genreflow.training.stage import train_stage

    use_tracking_db(monkeypatch, tmp_path, tmp_path_factory)
    params = replace(tiny_params(), features=replace(TINY_FEATURES, n_mels=32))
    with pytest.raises(ValueError, match=r"meta\.json.*dvc repro spectrogramize"):
        train_stage(params, "train_cnn", tiny_repo, progress=False)
