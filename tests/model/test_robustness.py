"""Robustness scores on the tiny trained models: reported everywhere, and gain-invariant.

The session's trained tiny repository (``trained_tiny``: both tiny candidates trained, then the
real ``evaluate`` stage with the repo's default ``evaluate.robustness``, every perturbation) is
read, never changed. The tiny front-end normalises
loudness (``features.loudness: segment_peak``, the default), so a gain that does not clip
must leave every prediction as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from genreflow.core.config import RobustnessParams
from genreflow.robustness.perturb import perturbations

ARCHS = ("cnn", "crnn")
NAMES = [p.name for p in perturbations(RobustnessParams())]
UNCLIPPED_GAINS = ["gain_-30db", "gain_-20db", "gain_-10db"]
# every test reads the shared store: MLflow names it for each (see trained_tiny_store)
pytestmark = pytest.mark.usefixtures("trained_tiny_store")


@pytest.fixture(scope="module")
def evaluated(trained_tiny):
    """The session's trained tiny repository (read only): both candidates evaluated by the real
    ``evaluate`` stage with the repo's default robustness settings."""
    params = trained_tiny.params
    assert params.features.loudness == "segment_peak"
    assert params.evaluate.robustness == RobustnessParams()
    metrics = json.loads(trained_tiny.layout.metrics.read_text())
    return trained_tiny.layout, trained_tiny.uri, params, metrics


def _run_id(layout, arch: str) -> str:
    return layout.run_id_file(arch).read_text().strip()


def test_metrics_json_has_every_perturbation_for_each_candidate(evaluated, tiny):
    _, _, _, metrics = evaluated
    n_test = len(tiny.genres) * tiny.splits["test"]
    for arch in ARCHS:
        robust = metrics[arch]["robustness"]
        assert robust["n_clips"] == n_test and robust["failed"] == 0
        for name in NAMES:
            assert set(robust[name]) == {"accuracy", "agreement"}
            assert 0.0 <= robust[name]["accuracy"] <= 1.0
            assert 0.0 <= robust[name]["agreement"] <= 1.0
        agreements = [robust[n]["agreement"] for n in NAMES]
        assert robust["worst_agreement"] == min(agreements)
        assert robust["mean_agreement"] == pytest.approx(np.mean(agreements))
        assert robust["worst_accuracy"] == min(robust[n]["accuracy"] for n in NAMES)
        # the clean files through the served path score as the feature path did (no skew)
        assert robust["clean_accuracy"] == pytest.approx(metrics[arch]["accuracy"])


def test_gain_that_does_not_clip_changes_no_prediction(evaluated):
    _, _, _, metrics = evaluated
    for arch in ARCHS:
        robust = metrics[arch]["robustness"]
        for name in UNCLIPPED_GAINS:
            assert robust[name]["agreement"] == 1.0, (arch, name, robust[name])
            assert robust[name]["accuracy"] == robust["clean_accuracy"]


def test_robustness_metrics_are_on_each_training_run(evaluated):
    from mlflow.tracking import MlflowClient

    layout, uri, _, metrics = evaluated
    client = MlflowClient(tracking_uri=uri)
    for arch in ARCHS:
        logged = client.get_run(_run_id(layout, arch)).data.metrics
        robust = metrics[arch]["robustness"]
        for name in NAMES:
            for score in ("accuracy", "agreement"):
                assert logged[f"robust.{name}.{score}"] == pytest.approx(robust[name][score])
        for key in ("clean_accuracy", "worst_agreement", "mean_agreement", "worst_accuracy"):
            assert logged[f"robust.{key}"] == pytest.approx(robust[key])


def test_dvc_metrics_show_lists_the_nested_scores(evaluated, tmp_path):
    """``reports/metrics.json`` as a DVC metrics file: nested keys show as dotted columns."""
    layout, _, _, _ = evaluated
    repo = tmp_path / "dvcrepo"
    (repo / "reports").mkdir(parents=True)
    (repo / "reports" / "metrics.json").write_bytes(layout.metrics.read_bytes())
    (repo / "dvc.yaml").write_text("metrics:\n  - reports/metrics.json\n")
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    shown = subprocess.run(
        [dvc, "metrics", "show"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    for arch in ARCHS:
        assert f"{arch}.robustness.worst_agreement" in shown
        for name in NAMES:
            assert f"{arch}.robustness.{name}.agreement" in shown


def test_score_served_subset_goes_through_the_served_model(evaluated, tiny, monkeypatch):
    """``max_clips`` spreads a subset over the genres; the scores come from real files."""
    from genreflow.features.store import FeatureStore
    from genreflow.pipeline.candidate_runs import candidate_run
    from genreflow.pipeline.held_out_clips import load_test_clips
    from genreflow.robustness.score import score_served
    from genreflow.serving.served import ServedModel

    layout, uri, _, metrics = evaluated
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    info = candidate_run("train_cnn", "cnn", layout, uri)  # the run's logged model, as evaluate
    served = ServedModel.load(info["model_uri"])
    clips = load_test_clips(FeatureStore.load(layout.features_dir), layout)
    settings = replace(
        RobustnessParams(), gains_db=(-20.0,), sample_rates=(), formats=("mp3",), max_clips=3
    )
    report = score_served(served, clips.paths, clips.genres, settings, progress=False)
    assert report.n_clips == 3
    assert set(report.scores) == {"gain_-20db", "stereo", "format_mp3", "noise_-40db"}
    assert report.scores["gain_-20db"].agreement == 1.0
    assert report.to_dict()["gain_-20db"] == {
        "accuracy": report.clean_accuracy,
        "agreement": 1.0,
    }
