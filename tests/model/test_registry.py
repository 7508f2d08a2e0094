"""registry: the promotion rule, split hashes, and manual promote / rollback through aliases."""

from __future__ import annotations

import math

import pytest

# tests/model is on sys.path (pytest prepend import mode)
from test_train_stage import empty_tracking_db

from genreflow.paths import Layout
from genreflow.registry import (
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    RegistryError,
    decide_promotion,
    describe,
    hash_track_ids,
    promote,
    rollback,
)

NAME = "genre-classifier"


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promoted"),
    [
        (0.50, None, 0.01, True),  # no champion: promote
        (0.70, 0.60, 0.01, True),  # clear win
        (0.61, 0.60, 0.01, True),  # exactly the margin (float noise tolerated)
        (0.605, 0.60, 0.01, False),  # better, but by less than the margin
        (0.60, 0.60, 0.0, False),  # a tie never promotes, even with margin 0
        (0.55, 0.60, 0.0, False),  # worse
        (math.nan, 0.60, 0.01, False),  # a broken score never promotes
    ],
)
def test_decide_promotion(candidate, champion, margin, promoted):
    decision, reason = decide_promotion(candidate, champion, margin)
    assert decision is promoted
    assert reason  # every decision says why
    if champion is not None and not math.isnan(candidate):
        assert f"{champion:.4f}" in reason and f"{margin:.4f}" in reason


def test_split_hash_ignores_order_and_duplicates():
    a = hash_track_ids(["rock.1", "jazz.2", "pop.3"])
    assert a == hash_track_ids(["pop.3", "rock.1", "jazz.2", "rock.1"])
    assert a != hash_track_ids(["rock.1", "jazz.2"])


@pytest.fixture()
def registry(tmp_path, tmp_path_factory, monkeypatch):
    """Three versions of the model in a fresh store (model files are not needed for aliases)."""
    from mlflow.tracking import MlflowClient

    from genreflow.tracking import set_tracking

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = empty_tracking_db(tmp_path_factory, tmp_path / "mlflow.db")
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
    assert client.get_model_version(NAME, "3").tags["promotion_decision"] == "rolled-back"

    rollback(NAME, layout)
    assert (_alias(client, CHAMPION_ALIAS), _alias(client, PREVIOUS_ALIAS)) == ("1", None)
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(NAME, layout)
    assert _alias(client, CHAMPION_ALIAS) == "1"

    shown = describe(NAME, layout)
    assert shown["champion"] == "1" and shown["history"] == ["1"]
    assert [v["version"] for v in shown["versions"]] == ["1", "2", "3"]
    # aliases only: the deprecated stages are never set
    assert {str(v.current_stage) for v in client.search_model_versions(f"name = '{NAME}'")} <= {
        "None"
    }


def test_promote_unknown_version_fails(registry):
    from mlflow.exceptions import MlflowException

    layout, _ = registry
    with pytest.raises(MlflowException):
        promote(NAME, 99, layout)


def _candidate(tmp_path, arch, accuracy):
    from genreflow.registry import Candidate

    source = tmp_path / f"candidate-{arch}"
    source.mkdir(exist_ok=True)
    return Candidate(
        arch=arch,
        run_id=f"run-{arch}",
        model_uri=source.as_uri(),
        accuracy=accuracy,
        macro_f1=accuracy,
        git_commit="abc",
        genres=("blues", "jazz"),
        sample_rate=8000,
    )


def _clips(tmp_path, ids):
    from genreflow.registry import HeldOutClips

    return HeldOutClips(
        tuple(ids), tuple(tmp_path / f"{i}.wav" for i in ids), ("blues",) * len(ids)
    )


def test_candidates_against_a_champion_on_the_same_split(registry, tmp_path):
    from genreflow.registry import register_and_promote

    layout, client = registry
    clips = _clips(tmp_path, ["t1", "t2"])
    promote(NAME, 1, layout)
    client.set_model_version_tag(NAME, "1", "test_split_hash", clips.split_hash)
    client.set_model_version_tag(NAME, "1", "test_accuracy", "0.500000")

    decisions = register_and_promote(
        NAME,
        [_candidate(tmp_path, "cnn", 0.505), _candidate(tmp_path, "crnn", 0.9)],
        clips,
        margin=0.01,
        default_genres=("blues", "jazz"),
        default_sample_rate=8000,
        progress=False,
    )
    crnn, cnn = decisions  # best first
    assert crnn.promoted and crnn.champion_version == "1" and crnn.champion_score_source == "tag"
    assert crnn.champion_accuracy == pytest.approx(0.5)
    assert not cnn.promoted and cnn.champion_version == crnn.version  # vs. the new champion
    assert _alias(client, CHAMPION_ALIAS) == crnn.version
    assert _alias(client, PREVIOUS_ALIAS) == "1"
    tags = client.get_model_version(NAME, cnn.version).tags
    assert tags["promotion_decision"] == "rejected" and tags["arch"] == "cnn"
    assert tags["test_split_hash"] == clips.split_hash and tags["git_commit"] == "abc"
    assert float(tags["promotion_compared_with_score"]) == pytest.approx(0.9)


def test_unscorable_champion_on_another_split_is_not_replaced(registry, tmp_path):
    from genreflow.registry import register_and_promote

    layout, client = registry
    promote(NAME, 1, layout)  # version 1 has no loadable model files
    client.set_model_version_tag(NAME, "1", "test_split_hash", "another-split")
    (decision,) = register_and_promote(
        NAME,
        [_candidate(tmp_path, "cnn", 0.99)],
        _clips(tmp_path, ["t1"]),
        margin=0.01,
        default_genres=("blues", "jazz"),
        default_sample_rate=8000,
        progress=False,
    )
    assert not decision.promoted and "could not be scored" in decision.reason
    assert _alias(client, CHAMPION_ALIAS) == "1"
