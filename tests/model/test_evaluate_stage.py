"""evaluate_stage: reports, registration, promotion, the missing-run error, and no skew.

The session's trained tiny repository (both tiny candidates trained and evaluated once) is
copied for this module, whose tests read what that produced and may change the copy's store.
The tests that evaluate again do it in other repository roots (sharing the data through a
symlink) so they never change what the others read.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genreflow.core.paths import Layout

NAME = "genre-classifier"


def _point_mlflow(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def evaluated(trained_tiny, tmp_path_factory: pytest.TempPathFactory):
    """A private copy of the session's trained tiny repository and its store: these tests
    register versions, append decisions and move aliases there."""
    own = trained_tiny.copy(tmp_path_factory.mktemp("evalrepo") / "repo")
    return own.layout, own.uri, own.params, own.result


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
    other.root.mkdir(parents=True)
    (other.root / "data").symlink_to(layout.root / "data", target_is_directory=True)
    return other


def test_reports_metrics_registration_and_champion(env, tiny):
    layout, uri, params, result = env
    n_test = len(tiny.genres) * tiny.splits["test"]
    client = _point_mlflow(uri)
    metrics = json.loads((layout.reports_dir / "metrics.json").read_text())
    assert set(metrics) == {"cnn", "crnn", "baseline", "retrieval"}  # retrieval: similar songs
    for arch in ("cnn", "crnn"):
        m = metrics[arch]
        assert m["accuracy_ci95_low"] <= m["accuracy"] <= m["accuracy_ci95_high"]
        assert set(m["per_class"]) == set(tiny.genres) and 0.0 <= m["macro_f1"] <= 1.0
        rows = json.loads((layout.reports_dir / "evaluate" / f"confusion_{arch}.json").read_text())
        assert len(rows) == m["n_clips"] == n_test
        assert m["accuracy"] == pytest.approx(
            np.mean([r["actual"] == r["predicted"] for r in rows])
        )
        frame = pd.read_csv(layout.reports_dir / "evaluate" / f"confusion_{arch}.csv", index_col=0)
        assert int(frame.to_numpy().sum()) == n_test
        assert (layout.reports_dir / "evaluate" / f"confusion_{arch}.png").stat().st_size > 0
        # test metrics and confusion files went into the candidate's training run
        run_id = layout.run_id_file(arch).read_text().strip()
        run = client.get_run(run_id)
        assert run.data.metrics["test_accuracy"] == pytest.approx(m["accuracy"])
        names = {a.path for a in client.list_artifacts(run_id, "evaluate")}
        assert f"evaluate/confusion_{arch}.png" in names
    assert 0.0 <= metrics["baseline"]["accuracy"] <= 1.0

    promotion = json.loads((layout.reports_dir / "promotion.json").read_text())
    decisions = promotion["decisions"]
    chosen, other = decisions
    # selection reads validation only: the chosen one is the best by (val acc, val F1, name)
    key = {d["arch"]: (-d["val_accuracy"], -d["val_macro_f1"], d["arch"]) for d in decisions}
    assert chosen["arch"] == min(key, key=key.get) == promotion["selected"]
    assert chosen["selected"] and not other["selected"]
    assert other["decision"] == "not-selected" and not other["promoted"]
    # empty registry: the floor is the baseline of this run, by the paired test
    assert chosen["reference"] == "baseline" and chosen["decision"] == "promoted"
    ev = chosen["evidence"]
    assert ev["n_clips"] == n_test and ev["alpha"] == params.evaluate.promotion_alpha
    assert ev["candidate_accuracy"] == pytest.approx(metrics[chosen["arch"]]["accuracy"])
    assert ev["reference_accuracy"] == pytest.approx(metrics["baseline"]["accuracy"])
    assert ev["lower_bound"] > params.evaluate.promotion_margin
    assert ev["interval"][0] <= ev["difference"] <= ev["interval"][1]
    assert "lower bound" in chosen["rule"] and promotion["rule"] == chosen["rule"]
    assert promotion["champion_version"] == chosen["version"]
    log_lines = (layout.reports_dir / "promotion_log.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log_lines]
    assert [(e["version"], e["decision"]) for e in logged] == [
        (d["version"], d["decision"]) for d in decisions
    ]
    assert all(e["champion_after"] == chosen["version"] for e in logged)
    # DVC outputs hold content only: no time and no run id (MLflow keeps those, below)
    for entry in [*decisions, *logged]:
        assert not {"run_id", "time"} & set(entry)
    runs = {layout.run_id_file(a).read_text().strip() for a in ("cnn", "crnn")}
    for report in ("promotion.json", "promotion_log.jsonl"):
        text = (layout.reports_dir / report).read_text()
        assert not any(r in text for r in runs) and str(layout.root) not in text

    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == chosen["version"]
    assert champion.tags["arch"] == chosen["arch"]
    for d in decisions:
        mv = client.get_model_version(NAME, d["version"])
        assert mv.current_stage in (None, "None")  # aliases only, never the deprecated stages
        assert float(mv.tags["test_accuracy"]) == pytest.approx(metrics[d["arch"]]["accuracy"])
        assert float(mv.tags["macro_f1"]) == pytest.approx(metrics[d["arch"]]["macro_f1"])
        assert float(mv.tags["val_accuracy"]) == pytest.approx(d["val_accuracy"])
        assert mv.tags["test_split_hash"] == promotion["test_split_hash"]
        assert mv.tags["promotion_decision"] == d["decision"]
        assert mv.tags["promotion_reason"] == d["reason"]
        assert mv.tags["git_commit"]
        assert mv.tags["promotion_decided_at"]  # provenance lives in MLflow
    from genreflow.registry.aliases import decisions as decision_history
    from genreflow.retrain.links import version_runs

    source = version_runs(uri, NAME, [d["version"] for d in decisions])
    assert set(source.values()) == runs  # the runs, found from the versions promotion.json names
    history = decision_history(NAME)[-len(decisions) :]
    assert [(e["version"], e["run_id"]) for e in history] == [
        (d["version"], source[d["version"]]) for d in decisions
    ]
    assert all(e["time"] for e in history)
    # every training run logged the tracks it trained and was selected on
    from genreflow.tracking.training_tracks import load_training_tracks

    manifest = pd.read_csv(layout.validated_manifest)
    expected = set(
        manifest.loc[manifest["split"] != "test", ["track_id", "audio_sha256"]].itertuples(
            index=False, name=None
        )
    )
    for d in decisions:
        assert set(load_training_tracks(source[d["version"]])) == expected


def test_champion_from_registry_matches_feature_path(env):
    """No train/serve skew: the registered serving model on raw audio == the feature path."""
    import mlflow

    from genreflow.audio import load_mono
    from genreflow.features.store import FeatureStore
    from genreflow.serving.core import load_classifier
    from genreflow.training.clip_metrics import clip_logits
    from genreflow.training.loop import predict_segments

    layout, uri, params, _ = env
    client = _point_mlflow(uri)
    arch = client.get_model_version_by_alias(NAME, "champion").tags["arch"]
    from genreflow.serving.served import ServedModel

    core = ServedModel.load(f"models:/{NAME}@champion").core  # the exported torch core

    def served(waves: torch.Tensor) -> torch.Tensor:  # clip logits: mean of segment logits
        return core(waves)[0].mean(dim=1)

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
    probs = np.array([[p["probabilities"][g] for g in store.genres] for p in preds])
    expected = torch.softmax(torch.from_numpy(feature_logits).double(), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-4)


def test_rescoring_uses_the_served_path_and_matches_the_feature_path(env):
    """Re-scoring a champion goes through the served model on raw audio, clip by clip."""
    from genreflow.features.store import FeatureStore
    from genreflow.pipeline.held_out_clips import load_test_clips
    from genreflow.registry.rescore import served_correctness

    layout, uri, params, _ = env
    client = _point_mlflow(uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    clips = load_test_clips(FeatureStore.load(layout.features_dir), layout)
    correct, notes = served_correctness(
        f"models:/{NAME}/{champion.version}", clips.paths, clips.genres, progress=False
    )
    rows = json.loads(
        (layout.reports_dir / "evaluate" / f"confusion_{champion.tags['arch']}.json").read_text()
    )
    by_id = {r["track_id"]: r["actual"] == r["predicted"] for r in rows}
    assert correct == tuple(by_id[t] for t in clips.track_ids) and notes == []


def test_missing_run_names_the_fix(env, tiny, tmp_path, tmp_path_factory, monkeypatch):
    from genreflow.pipeline.candidate_runs import MissingRunError
    from genreflow.pipeline.evaluate import evaluate_stage

    layout, _, params, _ = env
    before = (layout.reports_dir / "metrics.json").read_bytes()
    fresh = tiny.tracking_db(tmp_path_factory, tmp_path / "fresh.db")  # mlflow.db replaced
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    with pytest.raises(MissingRunError) as err:
        evaluate_stage(params, layout, progress=False)
    msg = str(err.value)
    assert "models/cnn/mlflow_run_id" in msg and "does not hold it" in msg
    assert "dvc repro --force train_cnn" in msg and "dvc repro --no-run-cache" in msg
    assert (layout.reports_dir / "metrics.json").read_bytes() == before


def test_candidate_run_comes_from_mlflow_run_id(env):
    """run.json holds scores only; the run is mlflow_run_id's, the model URI that run's logged
    model, as MLflow records it (the run's model outputs)."""
    from genreflow.pipeline.candidate_runs import candidate_run

    layout, uri, _, _ = env
    client = _point_mlflow(uri)
    for section, arch in (("train_cnn", "cnn"), ("train_lstm", "crnn")):
        run_json = json.loads(layout.run_info(arch).read_text())
        assert not {"run_id", "model_uri", "tracking_uri", "resumed_from_epoch"} & set(run_json)
        found = candidate_run(section, arch, layout, uri)
        run_id = layout.run_id_file(arch).read_text().strip()
        assert found == {**run_json, "run_id": run_id, "model_uri": found["model_uri"]}
        outputs = client.get_run(run_id).outputs.model_outputs
        assert found["model_uri"] in {f"models:/{o.model_id}" for o in outputs}
        model = client.get_logged_model(found["model_uri"].removeprefix("models:/"))
        assert model.source_run_id == run_id


def test_missing_run_id_file_names_the_file_and_fix(env, tmp_path):
    import shutil

    from genreflow.pipeline.candidate_runs import MissingRunError
    from genreflow.pipeline.evaluate import evaluate_stage

    layout, _, params, _ = env
    other = _sibling_repo(layout, tmp_path)
    shutil.copytree(layout.models_dir, other.models_dir, symlinks=True)
    other.run_id_file("cnn").unlink()
    with pytest.raises(MissingRunError) as err:
        evaluate_stage(params, other, progress=False)
    msg = str(err.value)
    assert msg.startswith("models/cnn/mlflow_run_id: missing")
    assert "dvc repro --force train_cnn" in msg
    assert not other.metrics.exists()  # stopped before writing anything


def test_missing_run_json_names_the_stage(env, tmp_path):
    from genreflow.pipeline.evaluate import evaluate_stage

    layout, _, params, _ = env
    other = _sibling_repo(layout, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"run\.json.*dvc repro train_cnn"):
        evaluate_stage(params, other, progress=False)


def test_worse_candidates_are_not_promoted(env, tiny, tmp_path):
    """Untrained candidates (lr 0) lose to the champion, re-scored on the same raw clips."""
    from genreflow.pipeline.evaluate import evaluate_stage
    from genreflow.pipeline.train import train_stage

    layout, uri, _, _ = env
    client = _point_mlflow(uri)
    champion_before = client.get_model_version_by_alias(NAME, "champion")

    other = _sibling_repo(layout, tmp_path)
    bad = tiny.params(epochs=1, lr=0.0)
    train_stage(bad, "train_cnn", other, progress=False)
    train_stage(bad, "train_lstm", other, progress=False)
    result = evaluate_stage(bad, other, progress=False)

    chosen, not_chosen = result["promotion"]["decisions"]
    assert not_chosen["decision"] == "not-selected"
    assert chosen["decision"] == "rejected" and not chosen["promoted"]
    assert chosen["reference"] == "champion"
    assert chosen["reference_version"] == str(champion_before.version)
    assert chosen["evidence"]["difference"] < 0 and "does not clear" in chosen["reason"]
    assert chosen["evidence"]["reference_accuracy"] == pytest.approx(
        float(champion_before.tags["test_accuracy"])  # the re-score reproduces its test score
    )
    assert any("re-scored" in n for n in chosen["notes"])
    tags = client.get_model_version(NAME, chosen["version"]).tags
    assert tags["promotion_decision"] == "rejected"
    assert client.get_model_version_by_alias(NAME, "champion").version == champion_before.version
    written = json.loads((other.reports_dir / "promotion.json").read_text())
    assert written["champion_version"] == str(champion_before.version)


def _outputs(repo: Layout) -> dict[str, bytes]:
    """Every file evaluate wrote in ``repo`` (reports and the similarity index), by path."""
    files = [*repo.reports_dir.rglob("*"), *repo.similarity_index.rglob("*")]
    return {f.relative_to(repo.root).as_posix(): f.read_bytes() for f in files if f.is_file()}


def test_reevaluating_same_candidates_is_idempotent(env, tmp_path):
    """Evaluating the same models again adds no versions and leaves the champion alone; its
    reports come out byte for byte the same, and the decision log grows only by a decision
    that differs from its last block."""
    import shutil

    from genreflow.pipeline.evaluate import evaluate_stage

    layout, uri, params, first = env
    client = _point_mlflow(uri)
    versions_before = {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    champion_before = str(client.get_model_version_by_alias(NAME, "champion").version)

    other = _sibling_repo(layout, tmp_path)
    (other.root / "models").symlink_to(layout.models_dir, target_is_directory=True)
    other.reports_dir.mkdir(parents=True)
    shutil.copyfile(layout.promotion_log, other.promotion_log)  # the log is persistent
    logged_first = other.promotion_log.read_text().splitlines()
    evaluate_stage(params, other, progress=False)  # "already-champion" now: a new decision
    written = _outputs(other)
    again = evaluate_stage(params, other, progress=False)  # the same decisions again
    assert _outputs(other) == written  # reports, figures, metrics and the index, byte for byte

    versions_after = {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    assert versions_after == versions_before
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == champion_before
    by_version = {d["version"]: d for d in again["promotion"]["decisions"]}
    assert set(by_version) == {d["version"] for d in first["promotion"]["decisions"]}
    assert by_version[champion_before]["decision"] == "already-champion"
    assert {d["decision"] for d in by_version.values()} == {"already-champion", "not-selected"}
    assert not any(d["promoted"] for d in again["promotion"]["decisions"])
    assert again["metrics"] == first["metrics"]  # deterministic scores
    history = other.promotion_log.read_text().splitlines()
    # the first evaluation's block, then the one new block ("already-champion"), not two
    assert history[: len(logged_first)] == logged_first
    added = [json.loads(line) for line in history[len(logged_first) :]]
    assert added == [
        {"registered_model": NAME, "champion_after": champion_before, **d}
        for d in again["promotion"]["decisions"]
    ]


def _store_copy(uri: str, tmp_path: Path, monkeypatch) -> str:
    """A copy of the module's store (artifacts stay shared), so a test may move aliases."""
    import shutil

    from genreflow.tracking.store import sqlite_path

    db = tmp_path / "copy" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(sqlite_path(uri), db)
    copy = f"sqlite:///{db.as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy)
    return copy


def test_rollback_sticks_through_evaluate(env, tmp_path, monkeypatch):
    """After `rollback`, evaluating the same models again does not promote them back."""
    from genreflow.pipeline.evaluate import evaluate_stage
    from genreflow.registry.manual import promote, rollback

    layout, uri, params, first = env
    client = _point_mlflow(_store_copy(uri, tmp_path, monkeypatch))
    chosen, other = first["promotion"]["decisions"]
    repo = _sibling_repo(layout, tmp_path)
    (repo.root / "models").symlink_to(layout.models_dir, target_is_directory=True)
    promote(NAME, other["version"], repo)  # a human tries the other model ...
    promote(NAME, chosen["version"], repo)  # ... goes back, then rolls that back
    rollback(NAME, repo)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == other["version"]

    repo.reports_dir.mkdir(parents=True)
    repo.promotion_log.write_text(layout.promotion_log.read_text())  # the log is persistent
    logged_before = repo.promotion_log.read_text().splitlines()
    again = evaluate_stage(params, repo, progress=False)["promotion"]["decisions"][0]
    assert again["version"] == chosen["version"] and again["decision"] == "blocked"
    assert "rolled back" in again["reason"]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == other["version"]
    # a decision moved by hand since is a new decision: the log records it
    history = repo.promotion_log.read_text().splitlines()
    assert history[: len(logged_before)] == logged_before
    assert json.loads(history[len(logged_before)])["decision"] == "blocked"


def _evaluate_in_subprocess(root: Path, uri: str, params) -> subprocess.Popen:
    """``evaluate_stage(params, <root>)`` in a new process (``params`` passed as a pickle)."""
    params_file = root.with_name(f"{root.name}.params.pickle")  # beside the repository
    params_file.write_bytes(pickle.dumps(params))
    code = (
        "import pickle, sys;"
        "from pathlib import Path;"
        "from genreflow.pipeline.evaluate import evaluate_stage;"
        "from genreflow.core.paths import Layout;"
        "params = pickle.loads(Path(sys.argv[1]).read_bytes());"
        "evaluate_stage(params, Layout.from_root(sys.argv[2]), progress=False)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.Popen(
        [sys.executable, "-c", code, str(params_file), str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_evaluates_at_once_keep_every_decision(
    env, tiny, tmp_path, tmp_path_factory, monkeypatch
):
    """A weak and a strong pair of models evaluated concurrently into one fresh store: the
    strong one ends up champion, and the registry's histories lose no entry."""
    from genreflow.pipeline.train import train_stage
    from genreflow.registry.aliases import decisions, history, promotion_lock

    layout, _, params, _ = env
    uri = tiny.tracking_db(tmp_path_factory, tmp_path / "shared" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = _point_mlflow(uri)
    weak, strong = _sibling_repo(layout, tmp_path / "w"), _sibling_repo(layout, tmp_path / "s")
    for repo, p in ((weak, tiny.params(epochs=1, lr=0.0)), (strong, params)):
        train_stage(p, "train_cnn", repo, progress=False)
        train_stage(p, "train_lstm", repo, progress=False)

    # Hold the promotion lock while both start, so both reach read-decide-write together;
    # while it is held, neither may record a decision. Each registers its two candidates
    # before it asks for the lock, so four versions mean both are at (or just before) it.
    with promotion_lock(uri, NAME):
        procs = [_evaluate_in_subprocess(r.root, uri, tiny.params()) for r in (weak, strong)]
        deadline = time.monotonic() + 240
        while len(client.search_model_versions(f"name = '{NAME}'")) < 4:
            assert all(proc.poll() is None for proc in procs), procs[0].communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the evaluates never registered 4 versions"
            time.sleep(0.2)
        time.sleep(2.0)  # both are now waiting on the lock
        assert decisions(NAME) == [] and all(proc.poll() is None for proc in procs)
        assert not any(r.metrics.exists() for r in (weak, strong))  # written after deciding
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]

    made = {
        repo: json.loads((repo.reports_dir / "promotion.json").read_text())["decisions"]
        for repo in (weak, strong)
    }
    strong_chosen = made[strong][0]
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    assert champion == strong_chosen["version"]
    logged = decisions(NAME)
    all_versions = {d["version"] for ds in made.values() for d in ds}
    assert len(all_versions) == 4 and {e["version"] for e in logged} == all_versions
    assert len(logged) == 4  # two evaluates x two candidates, none lost
    promoted = [e["version"] for e in logged if e["decision"] == "promoted"]
    assert history(NAME) == promoted and history(NAME)[-1] == champion
