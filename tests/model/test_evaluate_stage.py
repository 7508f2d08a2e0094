"""evaluate_stage: reports, registration, promotion, the missing-run error, and no skew.

One module fixture trains both tiny candidates and evaluates them once; the tests read what
that produced. The tests that evaluate again do it in other repository roots (sharing the
data through a symlink) so they never change what the others read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

# tests/model is on sys.path (pytest prepend import mode)
from test_train_stage import GENRES, empty_tracking_db, make_tiny_repo, tiny_params

from genreflow.paths import Layout

NAME = "genre-classifier"


def _point_mlflow(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    from genreflow.evaluation.stage import evaluate_stage
    from genreflow.training.stage import train_stage

    root = tmp_path_factory.mktemp("evalrepo")
    uri = empty_tracking_db(tmp_path_factory, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
            mp.delenv(var, raising=False)
        layout = make_tiny_repo(root)
        params = tiny_params()
        train_stage(params, "train_cnn", layout, progress=False)
        train_stage(params, "train_lstm", layout, progress=False)
        result = evaluate_stage(params, layout, progress=False)
        yield layout, uri, params, result


@pytest.fixture()
def env(evaluated, monkeypatch):
    layout, uri, params, result = evaluated
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return layout, uri, params, result


def _sibling_repo(layout: Layout, tmp_path: Path) -> Layout:
    """A second repository root sharing the first one's data (not its models or reports)."""
    other = Layout.from_root(tmp_path / "sibling")
    other.root.mkdir()
    (other.root / "data").symlink_to(layout.root / "data", target_is_directory=True)
    return other


def test_reports_metrics_registration_and_champion(env):
    layout, uri, params, result = env
    client = _point_mlflow(uri)
    metrics = json.loads((layout.reports_dir / "metrics.json").read_text())
    assert set(metrics) == {"cnn", "crnn", "baseline"}
    for arch in ("cnn", "crnn"):
        m = metrics[arch]
        assert m["accuracy_ci95_low"] <= m["accuracy"] <= m["accuracy_ci95_high"]
        assert set(m["per_class"]) == set(GENRES) and 0.0 <= m["macro_f1"] <= 1.0
        rows = json.loads((layout.reports_dir / "evaluate" / f"confusion_{arch}.json").read_text())
        assert len(rows) == m["n_clips"] == 9
        assert m["accuracy"] == pytest.approx(
            np.mean([r["actual"] == r["predicted"] for r in rows])
        )
        frame = pd.read_csv(layout.reports_dir / "evaluate" / f"confusion_{arch}.csv", index_col=0)
        assert int(frame.to_numpy().sum()) == 9
        assert (layout.reports_dir / "evaluate" / f"confusion_{arch}.png").stat().st_size > 0
        # test metrics and confusion files went into the candidate's training run
        run_id = json.loads((layout.models_dir / arch / "run.json").read_text())["run_id"]
        run = client.get_run(run_id)
        assert run.data.metrics["test_accuracy"] == pytest.approx(m["accuracy"])
        names = {a.path for a in client.list_artifacts(run_id, "evaluate")}
        assert f"evaluate/confusion_{arch}.png" in names
    assert 0.0 <= metrics["baseline"]["accuracy"] <= 1.0

    promotion = json.loads((layout.reports_dir / "promotion.json").read_text())
    decisions = promotion["decisions"]
    assert [d["arch"] for d in decisions] == [
        d["arch"] for d in sorted(decisions, key=lambda d: -d["candidate_accuracy"])
    ]
    best, other = decisions
    assert best["promoted"] and best["decision"] == "promoted" and best["champion_version"] is None
    assert not other["promoted"] and other["decision"] == "rejected"
    assert other["champion_version"] == best["version"]
    assert other["champion_accuracy"] == pytest.approx(best["candidate_accuracy"])
    assert promotion["champion_version"] == best["version"]
    log_lines = (layout.reports_dir / "promotion_log.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log_lines]
    assert [(e["version"], e["decision"]) for e in logged] == [
        (d["version"], d["decision"]) for d in decisions
    ]
    assert all(e["time"] and e["champion_after"] == best["version"] for e in logged)

    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == best["version"]
    assert champion.tags["arch"] == best["arch"]
    for d in decisions:
        mv = client.get_model_version(NAME, d["version"])
        assert mv.current_stage in (None, "None")  # aliases only, never the deprecated stages
        assert float(mv.tags["test_accuracy"]) == pytest.approx(metrics[d["arch"]]["accuracy"])
        assert float(mv.tags["macro_f1"]) == pytest.approx(metrics[d["arch"]]["macro_f1"])
        assert mv.tags["test_split_hash"] == promotion["test_split_hash"]
        assert mv.tags["promotion_decision"] == d["decision"]
        assert mv.tags["promotion_reason"] == d["reason"]
        assert mv.tags["git_commit"]


def test_champion_from_registry_matches_feature_path(env):
    """No train/serve skew: the registered serving model on raw audio == the feature path."""
    import mlflow

    from genreflow.audio import load_mono
    from genreflow.features.store import FeatureStore
    from genreflow.models.serving import load_classifier
    from genreflow.training.clip_metrics import clip_logits
    from genreflow.training.loop import predict_segments

    layout, uri, params, _ = env
    client = _point_mlflow(uri)
    arch = client.get_model_version_by_alias(NAME, "champion").tags["arch"]
    served = mlflow.pytorch.load_model(f"models:/{NAME}@champion")

    store = FeatureStore.load(layout.features_dir)
    x, _, ids = store.split("test")
    classifier, _ = load_classifier(layout.models_dir / arch / "model.pt")
    clip_ids, feature_logits = clip_logits(predict_segments(classifier, x), ids)
    paths = store.index.drop_duplicates("track_id").set_index("track_id")["path"]
    with torch.no_grad():
        waves = torch.stack(
            [load_mono(layout.absolute(paths[t]), params.features.sample_rate) for t in clip_ids]
        )
        served_logits = served(waves).numpy()  # the whole test split as one batch
        one = served(waves[:1]).numpy()  # and a batch of one
    np.testing.assert_allclose(served_logits, feature_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one, feature_logits[:1], rtol=1e-4, atol=1e-4)
    assert (served_logits.argmax(1) == feature_logits.argmax(1)).all()

    # longer clips than the logged input example are accepted (variable-length signature)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    preds = pyfunc.predict(waves.numpy())
    np.testing.assert_allclose(np.asarray(preds), feature_logits, rtol=1e-4, atol=1e-4)


def test_champion_rescored_on_a_different_test_split(env):
    """A champion tagged with another split's hash is re-run on the current raw clips."""
    from genreflow.evaluation.stage import load_test_clips
    from genreflow.features.store import FeatureStore
    from genreflow.registry import HeldOutClips, champion_score

    layout, uri, params, _ = env
    client = _point_mlflow(uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    store = FeatureStore.load(layout.features_dir)
    clips = load_test_clips(store, layout)
    subset = HeldOutClips(clips.track_ids[:5], clips.paths[:5], clips.genres[:5])
    assert subset.split_hash != champion.tags["test_split_hash"]

    score, source, notes = champion_score(
        NAME, champion, subset, GENRES, params.features.sample_rate, progress=False
    )
    rows = json.loads(
        (layout.reports_dir / "evaluate" / f"confusion_{champion.tags['arch']}.json").read_text()
    )
    by_id = {r["track_id"]: r["actual"] == r["predicted"] for r in rows}
    assert source == "rescored" and notes
    assert score == pytest.approx(np.mean([by_id[t] for t in subset.track_ids]))

    same, source, _ = champion_score(
        NAME, champion, clips, GENRES, params.features.sample_rate, progress=False
    )
    assert source == "tag" and same == pytest.approx(float(champion.tags["test_accuracy"]))


def test_missing_run_names_the_fix(env, tmp_path, tmp_path_factory, monkeypatch):
    from genreflow.evaluation.stage import MissingRunError, evaluate_stage

    layout, _, params, _ = env
    before = (layout.reports_dir / "metrics.json").read_bytes()
    fresh = empty_tracking_db(tmp_path_factory, tmp_path / "fresh.db")  # mlflow.db replaced
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    with pytest.raises(MissingRunError) as err:
        evaluate_stage(params, layout, progress=False)
    msg = str(err.value)
    assert "models/cnn/run.json" in msg and "does not hold it" in msg
    assert "dvc repro --force train_cnn" in msg and "dvc repro --no-run-cache" in msg
    assert (layout.reports_dir / "metrics.json").read_bytes() == before


def test_missing_run_json_names_the_stage(env, tmp_path):
    from genreflow.evaluation.stage import evaluate_stage

    layout, _, params, _ = env
    other = _sibling_repo(layout, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"run\.json.*dvc repro train_cnn"):
        evaluate_stage(params, other, progress=False)


def test_worse_candidates_are_not_promoted(env, tmp_path):
    """Untrained candidates (lr 0) on the same split lose to the champion: no alias move."""
    from genreflow.evaluation.stage import evaluate_stage
    from genreflow.training.stage import train_stage

    layout, uri, _, _ = env
    client = _point_mlflow(uri)
    champion_before = client.get_model_version_by_alias(NAME, "champion")
    champ_acc = float(champion_before.tags["test_accuracy"])

    other = _sibling_repo(layout, tmp_path)
    bad = tiny_params(epochs=1, lr=0.0)
    train_stage(bad, "train_cnn", other, progress=False)
    train_stage(bad, "train_lstm", other, progress=False)
    result = evaluate_stage(bad, other, progress=False)

    decisions = result["promotion"]["decisions"]
    assert len(decisions) == 2
    for d in decisions:
        assert d["candidate_accuracy"] < champ_acc + bad.evaluate.promotion_margin
        assert not d["promoted"] and d["decision"] == "rejected"
        assert "does not beat" in d["reason"]
        assert d["champion_version"] == str(champion_before.version)
        assert d["champion_score_source"] == "tag"  # same test split: its tag is comparable
        assert d["champion_accuracy"] == pytest.approx(champ_acc)
        assert client.get_model_version(NAME, d["version"]).tags["promotion_decision"] == (
            "rejected"
        )
    assert client.get_model_version_by_alias(NAME, "champion").version == champion_before.version
    written = json.loads((other.reports_dir / "promotion.json").read_text())
    assert written["champion_version"] == str(champion_before.version)


def test_reevaluating_same_candidates_is_idempotent(env, tmp_path):
    """Evaluating the same models again adds no versions and leaves the champion alone."""
    from genreflow.evaluation.stage import evaluate_stage

    layout, uri, params, first = env
    client = _point_mlflow(uri)
    versions_before = {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    champion_before = str(client.get_model_version_by_alias(NAME, "champion").version)

    other = _sibling_repo(layout, tmp_path)
    (other.root / "models").symlink_to(layout.models_dir, target_is_directory=True)
    evaluate_stage(params, other, progress=False)
    again = evaluate_stage(params, other, progress=False)

    versions_after = {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    assert versions_after == versions_before
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == champion_before
    by_version = {d["version"]: d for d in again["promotion"]["decisions"]}
    assert set(by_version) == {d["version"] for d in first["promotion"]["decisions"]}
    assert by_version[champion_before]["decision"] == "already-champion"
    assert not any(d["promoted"] for d in again["promotion"]["decisions"])
    assert again["metrics"] == first["metrics"]  # deterministic scores
    history = (other.reports_dir / "promotion_log.jsonl").read_text().splitlines()
    assert len(history) == 4  # two evaluations, two decisions each: appended, not replaced
