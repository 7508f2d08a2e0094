"""End to end: all six stages through `dvc repro` in a temporary copy of the repository.

The copy gets a tiny profile (10 genres x 3 clips x 5 s, tiny models, 2 epochs), so the
whole DAG runs in about a minute. The session fixture ``dvc_built`` builds everything once
(``test_experiments.py`` starts from a copy of it); tests that only read share that build,
and every test that changes something (params, code, the registry) works on its own copy of
the built repository (``built_copy``), so no test depends on another's order or leftovers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

ALL_STAGES = {"fetch", "validate", "spectrogramize", "train_cnn", "train_lstm", "evaluate"}

pytestmark = pytest.mark.integration


def edit_params(root: Path, **changes: Any) -> None:
    """Update sections (a dict of keys) or set top-level keys (any other value)."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def dvc(pipeline_kit):
    """``dvc(root, *args)``: the completed process; an AssertionError if dvc failed."""
    return pipeline_kit.dvc


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


@pytest.fixture(scope="module")
def repo(dvc_built) -> Path:
    """The session's ``dvc repro`` build (``dvc_built``): read here; the ``champion`` fixture
    promotes in it by hand, and tests that change anything take a ``built_copy``."""
    return dvc_built.root


@pytest.fixture(scope="module")
def first_run(dvc_built) -> subprocess.CompletedProcess:
    """The ``dvc repro`` that built ``repo``."""
    return dvc_built.repro


@pytest.fixture()
def built_copy(repo: Path, champion: str, tmp_path: Path, dvc) -> Path:
    """A private copy of the built repository (outputs, DVC cache, git, mlflow.db, with a
    champion), for a test that changes it. The copy's runs keep their artifacts in the
    original's mlruns/ (absolute URIs), which such tests only read."""
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    assert stages_run(dvc(copy, "repro")) == set()  # the copy is as built
    return copy


def _champion(client) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias("genre-classifier", "champion").version)
    except MlflowException:
        return None


@pytest.fixture(scope="module")
def champion(repo: Path, first_run, pipeline_kit) -> str:
    """The champion version. Three clips per genre give the gate too little evidence to beat
    the baseline, so a person would promote by hand, and so does this fixture."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    current = _champion(client)
    if current is not None:
        return current
    chosen = json.loads((repo / "reports/promotion.json").read_text())["decisions"][0]
    proc = subprocess.run(
        [str(pipeline_kit.venv_bin / "genreflow"), "promote", chosen["version"]],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=pipeline_kit.clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert _champion(client) == chosen["version"]
    return chosen["version"]


def test_repro_runs_all_six_stages_and_writes_outputs(repo, first_run):
    assert stages_run(first_run) == ALL_STAGES
    raw = pd.read_csv(repo / "data/raw/manifest.csv")
    assert len(raw) == 30 and set(raw.columns) >= {"path", "genre", "track_id", "bytes", "sha256"}
    validated = pd.read_csv(repo / "data/validated/manifest.csv")
    assert set(validated["split"]) == {"train", "val", "test"}
    assert validated["track_id"].is_unique
    assert (repo / "data/features/segments.npy").is_file()
    assert (repo / "reports/validation/summary.json").is_file()
    assert (repo / "reports/validation/data_docs").is_dir()
    for name in ("waveforms.png", "spectrograms_db.png", "mel_spectrograms.png"):
        assert (repo / "reports/figures" / name).is_file()
    for arch in ("cnn", "crnn"):
        assert (repo / f"models/{arch}/model.pt").is_file()
        rows = json.loads((repo / f"reports/evaluate/confusion_{arch}.json").read_text())
        assert len(rows) == int((validated["split"] == "test").sum())
        assert {"actual", "predicted"} <= set(rows[0])
        history = pd.read_csv(repo / f"reports/training/{arch}.csv")
        assert list(history["epoch"]) == [1, 2]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    for arch in ("cnn", "crnn"):  # the reported accuracy is the per-clip confusion rows'
        rows = json.loads((repo / f"reports/evaluate/confusion_{arch}.json").read_text())
        hits = np.mean([r["actual"] == r["predicted"] for r in rows])
        assert metrics[arch]["accuracy"] == pytest.approx(hits)
    for arch in ("cnn", "crnn", "baseline"):
        m = metrics[arch]
        assert m["accuracy_ci95_low"] <= m["accuracy"] <= m["accuracy_ci95_high"]
    # the tracking store is the absolute sqlite file at the copy's root
    assert (repo / "mlflow.db").is_file()


def test_mlflow_holds_both_runs_versions_and_champion(repo, first_run):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("genreflow")
    runs = client.search_runs([experiment.experiment_id])
    by_arch = {r.data.tags.get("arch"): r for r in runs}
    assert {"cnn", "crnn"} <= set(by_arch)
    for arch, section in (("cnn", "train_cnn"), ("crnn", "train_lstm")):
        run = by_arch[arch]
        assert run.data.params["epochs"] == "2" and run.data.params["section"] == section
        assert run.data.tags.get("dvc_stage") == section
        history = client.get_metric_history(run.info.run_id, "val_clip_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
    versions = client.search_model_versions("name='genre-classifier'")
    assert {v.tags.get("arch") for v in versions} == {"cnn", "crnn"}
    assert all(v.current_stage in (None, "None") for v in versions)  # no deprecated stages
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    chosen, other = promotion["decisions"]
    assert chosen["selected"] and other["decision"] == "not-selected"
    # the registry's alias agrees with what the report says happened
    champion = _champion(client)
    assert champion == promotion["champion_version"]
    assert (chosen["decision"] == "promoted") == (champion == chosen["version"])
    assert chosen["reference"] == "baseline" and chosen["evidence"]["n_clips"] == len(
        json.loads((repo / "reports/evaluate/confusion_cnn.json").read_text())
    )


def test_second_repro_runs_nothing(repo, first_run, dvc):
    assert stages_run(dvc(repo, "repro")) == set()


def test_metrics_and_plots_commands_work(repo, first_run, dvc):
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "accuracy" in shown
    dvc(repo, "plots", "show", "--json")


def test_no_train_serve_skew_for_the_champion(repo, champion):
    """The registry model fed raw test waveforms predicts what the feature path predicts."""
    import mlflow

    from genreflow.audio import load_mono
    from genreflow.features.store import FeatureStore
    from genreflow.serving.core import load_classifier
    from genreflow.training.clip_metrics import clip_logits
    from genreflow.training.loop import predict_segments

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    arch = client.get_model_version_by_alias("genre-classifier", "champion").tags["arch"]
    from genreflow.serving.served import ServedModel

    core = ServedModel.load("models:/genre-classifier@champion").core  # the exported core

    def served(waves: torch.Tensor) -> torch.Tensor:  # clip logits: mean of segment logits
        return core(waves)[0].mean(dim=1)

    store = FeatureStore.load(repo / "data/features")
    features, _, track_ids = store.split("test")
    classifier, _ = load_classifier(repo / f"models/{arch}/model.pt")
    ids, logits = clip_logits(predict_segments(classifier.eval(), features), track_ids)
    feature_path = dict(zip(ids, logits.argmax(1), strict=True))

    paths = store.index.drop_duplicates("track_id").set_index("track_id")["path"]
    sr = store.feature_params.sample_rate
    for track in ids:
        wave = load_mono(repo / paths[track], sr)
        with torch.inference_mode():
            served_logits = served(wave[None]).numpy()
        assert int(np.argmax(served_logits)) == int(feature_path[track]), track

    # a clip of exactly one segment is served too (the export must not freeze >= 2 segments)
    from genreflow.features.frontend import LogMelFrontend

    one = wave[: store.feature_params.segment_samples]
    expected = classifier(LogMelFrontend(store.feature_params).segments(one))
    with torch.inference_mode():
        assert torch.allclose(served(one[None]), expected.mean(0, keepdim=True), atol=1e-4)


def test_predict_command_uses_the_champion(repo, champion, pipeline_kit):
    validated = pd.read_csv(repo / "data/validated/manifest.csv")
    clip = validated[validated["split"] == "test"]["path"].iloc[0]
    proc = subprocess.run(
        [str(pipeline_kit.venv_bin / "genreflow"), "predict", clip, "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=pipeline_kit.clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    genres = yaml.safe_load((repo / "params.yaml").read_text())["data"]["genres"]
    assert answer["path"] == clip and answer["genre"] in genres
    assert abs(sum(answer["probabilities"].values()) - 1.0) < 1e-4
    missing = subprocess.run(
        [str(pipeline_kit.venv_bin / "genreflow"), "predict", "no/such.wav"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=pipeline_kit.clean_env(),
    )
    assert missing.returncode == 1 and "no/such.wav: no such file or folder" in missing.stderr


def test_manual_promote_and_rollback_move_the_alias(built_copy, pipeline_kit):
    from mlflow import MlflowClient

    repo = built_copy
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = client.get_model_version_by_alias("genre-classifier", "champion").version
    other = next(
        v.version
        for v in client.search_model_versions("name='genre-classifier'")
        if v.version != before
    )
    cli = [str(pipeline_kit.venv_bin / "genreflow")]
    env = pipeline_kit.clean_env()
    run = {"cwd": repo, "capture_output": True, "text": True, "timeout": 300, "env": env}
    promoted = subprocess.run([*cli, "promote", str(other)], **run)
    assert promoted.returncode == 0, promoted.stderr
    assert client.get_model_version_by_alias("genre-classifier", "champion").version == other
    rolled = subprocess.run([*cli, "rollback"], **run)
    assert rolled.returncode == 0, rolled.stderr
    assert client.get_model_version_by_alias("genre-classifier", "champion").version == before


def test_lstm_param_change_reruns_only_train_lstm_and_evaluate(built_copy, dvc):
    repo = built_copy
    edit_params(repo, train_lstm={"lr": 0.005})
    assert stages_run(dvc(repo, "repro")) == {"train_lstm", "evaluate"}


def test_features_param_change_skips_fetch_and_validate(built_copy, dvc):
    repo = built_copy
    edit_params(repo, features={"n_mels": 24})
    ran = stages_run(dvc(repo, "repro"))
    assert "spectrogramize" in ran
    assert not ran & {"fetch", "validate"}
    from genreflow.features.store import FeatureStore

    assert FeatureStore.load(repo / "data/features").features.shape[1] == 24


def changed_stages(dvc, root: Path) -> set[str]:
    """Stages ``dvc status`` reports as changed (their own deps, params or outs)."""
    out = dvc(root, "status", "--json").stdout
    return {name for name in json.loads(out or "{}") if not name.endswith(".dvc")}


@pytest.mark.parametrize(
    ("edited", "expected"),
    [
        ("src/genreflow/core/config.py", ALL_STAGES),
        ("src/genreflow/registry/decision.py", {"evaluate"}),
        ("src/genreflow/sources/manifest.py", {"fetch", "validate"}),
        (
            "src/genreflow/features/frontend.py",
            {"spectrogramize", "train_cnn", "train_lstm", "evaluate"},
        ),
    ],
)
def test_code_edits_mark_exactly_the_stages_that_run_them(built_copy, dvc, edited, expected):
    path = built_copy / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    assert changed_stages(dvc, built_copy) == expected


def test_runtime_knobs_rerun_nothing(built_copy, dvc):
    """Worker counts and the pin switch change speed, not this machine's results: no stage
    lists `runtime`."""
    edit_params(built_copy, runtime={"workers": 1, "pin_numerics": False})
    assert changed_stages(dvc, built_copy) == set()
    assert stages_run(dvc(built_copy, "repro")) == set()


def test_the_thread_count_is_part_of_the_recipe(built_copy, dvc):
    """`threads` changes float rounding, so every stage that computes with torch lists it."""
    edit_params(built_copy, threads=3)
    assert changed_stages(dvc, built_copy) == {"train_cnn", "train_lstm", "evaluate"}


def test_training_runs_record_the_runtime_knobs(repo, first_run):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("genreflow")
    runtime = yaml.safe_load((repo / "params.yaml").read_text())["runtime"]
    for run in client.search_runs([experiment.experiment_id]):
        assert run.data.tags["runtime.workers"] == str(runtime["workers"])
        assert run.data.tags["runtime.pin_numerics"] == str(runtime["pin_numerics"])


def _numerics_against_cnn(pipeline_kit, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(pipeline_kit.venv_bin / "genreflow"), "numerics", "--against", "cnn"],
        cwd=root,
        capture_output=True,
        text=True,
        env=pipeline_kit.clean_env(),
        timeout=300,
    )


def test_numerics_matches_the_environment_that_trained_the_model(repo, pipeline_kit):
    """The stage recorded its numeric environment on its MLflow run; this machine, pinned as
    the stages pin it, has the same recipe."""
    proc = _numerics_against_cnn(pipeline_kit, repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("same recipe: expect the same bytes")
    assert "<- differs" not in proc.stdout


def test_numerics_names_a_recipe_difference(built_copy, pipeline_kit):
    """Another thread count than the run that trained the model: the row is marked and the
    exit code says the bytes will differ."""
    edit_params(built_copy, threads=3)
    proc = _numerics_against_cnn(pipeline_kit, built_copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if "<- differs" in line]
    assert row.split()[:3] == ["*", "threads", "3"]
    assert "different recipe (threads)" in proc.stdout
