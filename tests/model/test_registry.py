"""registry: aliases, histories, manual promote / rollback, and the promotion orchestration.

Versions here point at empty directories (aliases need no model files); the per-clip
correctness the orchestration compares is its input, as evaluate computes it. Paths that need
a real served model (re-scoring a champion) are tested with trained models in
test_evaluate_stage.py.
"""

from __future__ import annotations

import pytest

from genreflow.core.paths import Layout
from genreflow.registry.aliases import (
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    RegistryError,
    decisions,
    history,
)
from genreflow.registry.manual import describe, promote, rollback
from genreflow.registry.promotion import (
    BLOCKED,
    NOT_SELECTED,
    PROMOTED,
    REJECTED,
    GateSettings,
    HeldOutClips,
    register_and_promote,
)
from genreflow.registry.versions import Candidate

NAME = "genre-classifier"
N_CLIPS = 40
GATE = GateSettings(margin=0.0, alpha=0.05, samples=500, seed=0)


@pytest.fixture()
def registry(tiny, tmp_path, tmp_path_factory, monkeypatch):
    """Three versions of the model in a fresh store (model files are not needed for aliases)."""
    from mlflow.tracking import MlflowClient

    from genreflow.tracking.store import set_tracking

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = tiny.tracking_db(tmp_path_factory, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    layout = Layout.from_root(tmp_path)
    set_tracking(layout)
    client = MlflowClient()
    client.create_registered_model(NAME)
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(3):
        client.create_model_version(NAME, source=source.as_uri())
    return layout, client


def _alias(client, alias):
    try:
        return str(client.get_model_version_by_alias(NAME, alias).version)
    except Exception:
        return None


def test_promote_and_rollback_walk_the_champion_history(registry):
    layout, client = registry
    with pytest.raises(RegistryError, match="no @champion"):
        rollback(NAME, layout)

    assert promote(NAME, 1, layout)["changed"]
    assert promote(NAME, 1, layout)["changed"] is False  # already champion: nothing to do
    assert promote(NAME, "2", layout) == {
        "model": NAME,
        "champion": "2",
        "previous_champion": "1",
        "changed": True,
    }
    promote(NAME, 3, layout, reason="reviewed by a human")
    assert (_alias(client, CHAMPION_ALIAS), _alias(client, PREVIOUS_ALIAS)) == ("3", "2")
    assert client.get_model_version(NAME, "3").tags["promotion_reason"].endswith("by a human")

    done = rollback(NAME, layout)
    assert done["champion"] == "2" and done["rolled_back_from"] == "3"
    assert (_alias(client, CHAMPION_ALIAS), _alias(client, PREVIOUS_ALIAS)) == ("2", "1")
    tags3 = client.get_model_version(NAME, "3").tags
    assert tags3["promotion_decision"] == "rolled-back" and tags3["rolled_back"] == "true"

    rollback(NAME, layout)
    assert (_alias(client, CHAMPION_ALIAS), _alias(client, PREVIOUS_ALIAS)) == ("1", None)
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(NAME, layout)
    assert _alias(client, CHAMPION_ALIAS) == "1"

    shown = describe(NAME, layout)
    assert shown["champion"] == "1" and shown["history"] == ["1"]
    assert [d["decision"] for d in shown["decisions"]] == [
        "manual-promotion",
        "manual-promotion",
        "manual-promotion",
        "rolled-back",
        "rolled-back",
    ]
    assert [v["version"] for v in shown["versions"]] == ["1", "2", "3"]
    # aliases only: the deprecated stages are never set
    assert {str(v.current_stage) for v in client.search_model_versions(f"name = '{NAME}'")} <= {
        "None"
    }


def test_promote_unknown_version_is_a_user_error(registry):
    layout, _ = registry
    with pytest.raises(RegistryError, match="no version 99"):
        promote(NAME, 99, layout)


def _correct(k: int, n: int = N_CLIPS) -> tuple[bool, ...]:
    return tuple(i < k for i in range(n))


def _candidate(tmp_path, arch, val, test_k, val_f1=None) -> Candidate:
    source = tmp_path / f"candidate-{arch}"
    source.mkdir(exist_ok=True)
    return Candidate(
        arch=arch,
        run_id=f"run-{arch}",
        model_uri=source.as_uri(),
        val_accuracy=val,
        val_macro_f1=val if val_f1 is None else val_f1,
        test_accuracy=test_k / N_CLIPS,
        test_macro_f1=test_k / N_CLIPS,
        test_correct=_correct(test_k),
        git_commit="abc",
        genres=("blues", "jazz"),
        sample_rate=8000,
    )


@pytest.fixture()
def clips(tmp_path) -> HeldOutClips:
    ids = [f"blues.{i:05d}" for i in range(N_CLIPS)]
    return HeldOutClips(
        tuple(ids),
        tuple(f"hash-{i}" for i in ids),
        tuple(tmp_path / f"{i}.wav" for i in ids),
        ("blues",) * N_CLIPS,
    )


def _promote_run(candidates, clips, baseline_k, uri):
    return register_and_promote(NAME, candidates, _correct(baseline_k), clips, GATE, uri, False)


def test_selection_reads_validation_never_test(registry, clips, tmp_path):
    """The CNN is better on test, the CRNN on validation: the CRNN goes to the gate."""
    layout, client = registry
    cnn = _candidate(tmp_path, "cnn", val=0.60, test_k=38)
    crnn = _candidate(tmp_path, "crnn", val=0.70, test_k=34)
    made = _promote_run([cnn, crnn], clips, baseline_k=20, uri=_uri())
    chosen, other = made
    assert (chosen.arch, chosen.selected, other.arch, other.selected) == (
        "crnn",
        True,
        "cnn",
        False,
    )
    assert other.decision == NOT_SELECTED and "selected on validation" in other.reason
    assert chosen.decision == PROMOTED and _alias(client, CHAMPION_ALIAS) == chosen.version


def test_floor_without_champion_needs_a_clear_win_over_the_baseline(registry, clips, tmp_path):
    layout, client = registry
    weak = _candidate(tmp_path, "cnn", val=0.9, test_k=22)  # 55% vs the baseline's 50%
    (made,) = _promote_run([weak], clips, baseline_k=20, uri=_uri())
    assert made.decision == REJECTED and made.reference == "baseline"
    assert made.evidence["difference"] == pytest.approx(0.05)
    assert made.evidence["lower_bound"] <= 0.0
    assert _alias(client, CHAMPION_ALIAS) is None

    strong = _candidate(tmp_path, "crnn", val=0.9, test_k=36)
    (made,) = _promote_run([strong], clips, baseline_k=20, uri=_uri())
    assert made.decision == PROMOTED and made.evidence["lower_bound"] > 0.0
    tags = client.get_model_version(NAME, made.version).tags
    for key in ("difference", "interval", "p_better", "n_clips", "rule", "alpha", "reference"):
        assert f"promotion_{key}" in tags, key
    assert tags["promotion_n_clips"] == str(N_CLIPS) and tags["promotion_reference"] == "baseline"
    assert tags["val_accuracy"] == "0.900000" and tags["test_split_hash"] == clips.split_hash
    assert [d["decision"] for d in decisions(NAME)] == [REJECTED, PROMOTED]


def test_the_same_run_again_is_already_champion(registry, clips, tmp_path):
    layout, client = registry
    cand = _candidate(tmp_path, "cnn", val=0.9, test_k=36)
    (first,) = _promote_run([cand], clips, baseline_k=20, uri=_uri())
    (again,) = _promote_run([cand], clips, baseline_k=20, uri=_uri())
    assert first.decision == PROMOTED and again.decision == "already-champion"
    assert again.version == first.version and history(NAME) == [first.version]


def test_rollback_sticks(registry, clips, tmp_path):
    """A rolled-back version is never auto-promoted again; a human can still promote it."""
    layout, client = registry
    cand = _candidate(tmp_path, "cnn", val=0.9, test_k=36)
    (made,) = _promote_run([cand], clips, baseline_k=20, uri=_uri())
    promote(NAME, 1, layout)  # a human moves champion away and back, then rolls back
    promote(NAME, made.version, layout)
    rollback(NAME, layout)
    assert _alias(client, CHAMPION_ALIAS) == "1"

    (again,) = _promote_run([cand], clips, baseline_k=20, uri=_uri())
    assert again.decision == BLOCKED and "rolled back" in again.reason
    assert _alias(client, CHAMPION_ALIAS) == "1"

    assert promote(NAME, made.version, layout)["changed"]  # by hand: allowed, mark cleared
    assert "rolled_back" not in client.get_model_version(NAME, made.version).tags


def test_champion_without_track_lists_is_not_rescored(registry, clips, tmp_path):
    layout, client = registry
    promote(NAME, 1, layout)  # version 1 has no run, so no train/val track list
    cand = _candidate(tmp_path, "cnn", val=0.99, test_k=40)
    (made,) = _promote_run([cand], clips, baseline_k=0, uri=_uri())
    assert made.decision == BLOCKED and "logged no train/val track list" in made.reason
    assert _alias(client, CHAMPION_ALIAS) == "1"


def test_champion_that_trained_on_test_tracks_is_not_rescored(registry, clips, tmp_path):
    """Champion v1's run trained on two of today's test tracks: no comparison, no promotion."""
    import mlflow
    import pandas as pd

    from genreflow.tracking.training_tracks import log_training_tracks

    layout, client = registry
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        {
            # blues.00003 by id; jazz.00099 is test track blues.00007's audio under another id
            "track_id": ["blues.00003", "jazz.00001", "jazz.00099"],
            "audio_sha256": ["x", "y", "hash-blues.00007"],
            "split": ["train", "val", "train"],
        }
    ).to_csv(manifest, index=False)
    with mlflow.start_run(experiment_id=client.create_experiment("lists")) as run:
        log_training_tracks(manifest)
    client.set_model_version_tag(NAME, "1", "run_id", run.info.run_id)
    promote(NAME, 1, layout)
    cand = _candidate(tmp_path, "cnn", val=0.99, test_k=40)
    (made,) = _promote_run([cand], clips, baseline_k=0, uri=_uri())
    assert made.decision == BLOCKED
    assert "2 of the 40 test tracks" in made.reason
    assert "blues.00003" in made.reason and "blues.00007" in made.reason
    assert _alias(client, CHAMPION_ALIAS) == "1"


def _uri() -> str:
    import os

    return os.environ["MLFLOW_TRACKING_URI"]
