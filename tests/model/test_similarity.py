"""Similar-song search: retrieval metrics, the on-disk index and its model guard, and the
whole path on a trained tiny model (evaluate builds the index, `genreflow similar` answers,
promote / rollback rebuild it, a champion moved behind its back makes it refuse).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreflow.similarity.index import (
    CorruptIndexError,
    IndexMeta,
    MissingIndexError,
    SongIndex,
    StaleIndexError,
    read_meta,
    require_same_model,
    write_index,
)
from genreflow.similarity.metrics import (
    average_precision,
    precision_at_k,
    rank_by_cosine,
    retrieval_scores,
)


# --------------------------------------------------------------------------- metrics math
def test_precision_at_k_counts_the_first_k():
    assert precision_at_k(np.array([1, 0, 1, 1, 0, 1]), 5) == pytest.approx(3 / 5)
    assert precision_at_k(np.array([0, 0, 0, 0, 0, 1]), 5) == 0.0
    assert precision_at_k(np.array([1, 1]), 5) == 1.0  # a catalogue shorter than k
    with pytest.raises(ValueError):
        precision_at_k(np.array([1]), 0)


def test_average_precision_known_values():
    # relevant at ranks 1, 3 and 6: (1/1 + 2/3 + 3/6) / 3
    assert average_precision(np.array([1, 0, 1, 0, 0, 1])) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert average_precision(np.array([1, 1, 0, 0])) == 1.0
    assert average_precision(np.array([0, 0, 0, 1])) == pytest.approx(1 / 4)
    assert average_precision(np.array([0, 0])) is None  # undefined, not zero


def _unit(degrees: float) -> np.ndarray:
    r = np.deg2rad(degrees)
    return np.array([np.cos(r), np.sin(r)], dtype=np.float32)


def test_retrieval_scores_on_hand_made_vectors():
    """Unit vectors at known angles, so every ranking is known by hand."""
    cat_angles = [0, 10, 20, 80, 90, 100]
    cat_genres = ["a", "a", "a", "b", "b", "b"]
    catalogue = np.stack([_unit(d) for d in cat_angles])
    # 3 deg: a a a b b b (P@5 3/5, AP 1). 47 deg: a b a b a b, a "b" query (P@5 2/5,
    # AP (1/2 + 2/4 + 3/6) / 3 = 1/2). "c" is not in the catalogue: skipped, counted.
    queries = np.stack([_unit(3), _unit(47), _unit(50)])
    order = rank_by_cosine(queries, catalogue)
    assert [cat_angles[i] for i in order[0]] == [0, 10, 20, 80, 90, 100]
    assert [cat_angles[i] for i in order[1]] == [20, 80, 10, 90, 0, 100]
    scores = retrieval_scores(queries, ["a", "b", "c"], catalogue, cat_genres, k=5)
    assert scores.precision_at_k == pytest.approx((3 / 5 + 2 / 5) / 2)
    assert scores.mean_average_precision == pytest.approx((1.0 + 0.5) / 2)
    assert (scores.queries, scores.catalogue, scores.queries_without_relevant) == (2, 6, 1)
    assert scores.to_dict()["precision_at_5"] == pytest.approx(0.5)
    assert scores.to_dict()["map"] == pytest.approx(0.75)


def test_exact_ranking_matches_faiss_flat_ip():
    import faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(16)
    index.add(x[50:])
    _, ids = index.search(x[:50], 10)
    np.testing.assert_array_equal(rank_by_cosine(x[:50], x[50:])[:, :10], ids)


# --------------------------------------------------------------------------- the index on disk
WEIGHTS = "a" * 64  # the SHA-256 of the weights an index was built with
OTHER_WEIGHTS = "b" * 64


def _meta(**overrides) -> IndexMeta:
    base = IndexMeta(
        registered_model="genre-classifier",
        model_uri="models:/genre-classifier/3",
        version="3",
        weights_sha256=WEIGHTS,
        dim=2,
        count=6,
        index_type="flat",
        manifest_sha256="0" * 64,
        faiss_version="1.15.1",
        retrieval={"precision_at_5": 0.5, "map": 0.75, "k": 5},
    )
    return replace(base, **overrides)


def _catalogue(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "path": [f"data/raw/t{i}.wav" for i in range(n)],
            "genre": ["a", "a", "a", "b", "b", "b"][:n],
            "split": ["train"] * n,
        }
    )


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_index_round_trip(tmp_path, index_type):
    angles = [0, 10, 20, 80, 90, 100]
    vectors = np.stack([_unit(d) for d in angles])
    meta = _meta(index_type=index_type, hnsw_m=8 if index_type == "hnsw" else None)
    write_index(tmp_path / "idx", meta, vectors, _catalogue(6))
    loaded = SongIndex.load(tmp_path / "idx")
    assert loaded.meta == meta
    hits = loaded.search(_unit(12), k=3)
    assert [h.track_id for h in hits] == ["t1", "t2", "t0"]  # 2, 8 and 12 degrees away
    assert [h.rank for h in hits] == [1, 2, 3]
    expected = [1 - np.cos(np.deg2rad(d)) for d in (2, 8, 12)]
    np.testing.assert_allclose([h.distance for h in hits], expected, atol=1e-6)
    assert hits[0].to_dict() == {
        "rank": 1,
        "distance": hits[0].distance,
        "track_id": "t1",
        "genre": "a",
        "split": "train",
        "path": "data/raw/t1.wav",
    }
    assert len(loaded.search(_unit(12), k=50)) == 6  # k above the count: every song


def test_a_failed_write_keeps_the_old_index(tmp_path):
    vectors = np.stack([_unit(d) for d in (0, 10, 20, 80, 90, 100)])
    write_index(tmp_path / "idx", _meta(), vectors, _catalogue(6))
    with pytest.raises(ValueError, match="6 vectors but 5 catalogue rows"):
        write_index(tmp_path / "idx", _meta(version="4"), vectors, _catalogue(5))
    assert SongIndex.load(tmp_path / "idx").meta.version == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary left behind


def test_the_guard_refuses_vectors_of_another_model(tmp_path):
    meta = _meta()
    require_same_model(meta, tmp_path, "3", WEIGHTS)  # the same model: fine
    with pytest.raises(
        StaleIndexError,
        match=r"version 3, but the champion is version 4.*"
        r"rebuild with `genreflow index`",
    ):
        require_same_model(meta, tmp_path, "4", OTHER_WEIGHTS)
    # same version number, other weights (say, a recreated registry): refused too
    with pytest.raises(
        StaleIndexError,
        match=r"of another model \(weights sha256 bbbbbbbbbbbb, not weights sha256 aaaaaaaaaaaa\)",
    ):
        require_same_model(meta, tmp_path, "3", OTHER_WEIGHTS)


def _random_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_the_same_vectors_give_the_same_index_bytes(tmp_path, index_type):
    """The index is a DVC output: two builds of the same vectors are byte-identical, HNSW
    included (built on one thread, and faiss's thread count restored afterwards), and
    ``meta.json`` holds no build time or random model id."""
    import faiss

    from genreflow.similarity.index import INDEX_FILE, META_FILE, index_digest

    n = 1000
    vectors = _random_unit_vectors(n, 16)
    catalogue = pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "path": [f"data/raw/t{i}.wav" for i in range(n)],
            "genre": ["a", "b"] * (n // 2),
            "split": ["train"] * n,
        }
    )
    meta = _meta(index_type=index_type, hnsw_m=8 if index_type == "hnsw" else None, count=n, dim=16)
    threads = faiss.omp_get_max_threads()
    for name in ("one", "two"):
        write_index(tmp_path / name, meta, vectors, catalogue)
    assert faiss.omp_get_max_threads() == threads
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / INDEX_FILE).read_bytes() == (two / INDEX_FILE).read_bytes()
    assert index_digest(one) == index_digest(two) is not None
    written = json.loads((one / META_FILE).read_text())
    assert not {"created", "model_id"} & set(written) and written["weights_sha256"] == WEIGHTS
    write_index(tmp_path / "other", meta, _random_unit_vectors(n, 16, seed=1), catalogue)
    assert index_digest(tmp_path / "other") != index_digest(one)
    assert index_digest(tmp_path / "absent") is None


def test_missing_empty_and_inconsistent_indexes_are_user_errors(tmp_path):
    with pytest.raises(MissingIndexError, match="genreflow index"):
        SongIndex.load(tmp_path / "nothing")
    write_index(tmp_path / "empty", _meta(version=None, model_uri=None, count=0), None, None)
    assert read_meta(tmp_path / "empty").version is None
    with pytest.raises(MissingIndexError, match="had no champion"):
        SongIndex.load(tmp_path / "empty")
    vectors = np.stack([_unit(d) for d in (0, 10, 20, 80, 90, 100)])
    write_index(tmp_path / "bad", _meta(count=7), vectors, _catalogue(6))
    with pytest.raises(CorruptIndexError, match="meta says 7 x 2"):
        SongIndex.load(tmp_path / "bad")
    write_index(tmp_path / "ok", _meta(), vectors, _catalogue(6))
    with pytest.raises(StaleIndexError, match="3 dimensions, the index 2"):
        SongIndex.load(tmp_path / "ok").search(np.ones(3, dtype=np.float32) / np.sqrt(3), k=2)


# --------------------------------------------------------------------------- DVC's record
def _dvc_repo(root: Path) -> None:
    """A git + DVC repository whose stage ``evaluate`` writes the index directory."""
    import subprocess
    import sys

    (root / "make_index.sh").write_text(
        "mkdir -p models/similarity_index && cp dep.txt models/similarity_index/meta.json\n"
    )
    (root / "dep.txt").write_text("1\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: sh make_index.sh\n    deps: [dep.txt, make_index.sh]\n"
        "    outs: [models/similarity_index]\n"
    )
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=root, check=True)


def _dvc_clean(root: Path) -> bool:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True, text=True
    )
    return json.loads(out.stdout or "{}") == {}


def test_a_rebuilt_index_is_recorded_only_when_it_is_the_stage_s_one_change(tmp_path):
    from genreflow.core.paths import Layout
    from genreflow.pipeline.dvc_lock import record_rebuilt_index

    layout = Layout.from_root(tmp_path)
    assert "not a DVC repository" in record_rebuilt_index(layout)
    _dvc_repo(tmp_path)
    assert "already records" in record_rebuilt_index(layout)
    (layout.similarity_index / "meta.json").write_text("rebuilt by promote\n")  # as a hook does
    assert not _dvc_clean(tmp_path)
    assert record_rebuilt_index(layout).startswith("recorded in dvc.lock")
    assert _dvc_clean(tmp_path)  # the next `dvc repro` runs nothing
    # a changed input of the stage: committing would mark it as run, so it is left to repro
    (tmp_path / "dep.txt").write_text("2\n")
    (layout.similarity_index / "meta.json").write_text("rebuilt again\n")
    assert record_rebuilt_index(layout).startswith("not recorded in dvc.lock")
    assert not _dvc_clean(tmp_path)


# --------------------------------------------------------------------------- a trained tiny model
NAME = "genre-classifier"


def _client(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def evaluated(trained_tiny, tmp_path_factory: pytest.TempPathFactory):
    """A private copy of the session's trained tiny repository (evaluate built its index; its
    params.yaml is there, as promote / rollback read it to rebuild the index): these tests
    move the champion and rebuild the index."""
    own = trained_tiny.copy(tmp_path_factory.mktemp("simrepo") / "repo")
    return own.layout, own.uri, own.params, own.result


@pytest.fixture()
def env(evaluated, monkeypatch):
    layout, uri, params, result = evaluated
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return layout, uri, params, result


def _cli(*args: str):
    from typer.testing import CliRunner

    from genreflow.cli import app

    return CliRunner().invoke(app, list(args))


def _test_clip(layout) -> Path:
    manifest = pd.read_csv(layout.validated_manifest)
    return layout.absolute(manifest.loc[manifest["split"] == "test", "path"].iloc[0])


def test_evaluate_indexes_the_corpus_with_the_champion_and_scores_retrieval(env, tiny):
    layout, uri, params, result = env
    client = _client(uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    meta = read_meta(layout.similarity_index)
    n_clips = len(tiny.genres) * sum(tiny.splits.values())
    pinned = f"models:/{NAME}/{champion.version}"
    assert (meta.version, meta.model_uri) == (str(champion.version), pinned)
    assert meta.count == n_clips and meta.dim > 0 and meta.index_type == "flat"
    # content only: the weights' digest names the model, no build time, random id or path
    from genreflow.serving.served import ServedModel

    assert meta.weights_sha256 == ServedModel.load(pinned).weights_sha256
    raw = json.loads((layout.similarity_index / "meta.json").read_text())
    assert not {"created", "model_id"} & set(raw)
    for written_file in layout.similarity_index.iterdir():
        assert str(layout.root).encode() not in written_file.read_bytes(), written_file
    catalogue = pd.read_csv(layout.similarity_index / "catalogue.csv")
    assert list(catalogue.columns) == ["track_id", "path", "genre", "split"]
    assert len(catalogue) == n_clips

    written = json.loads(layout.metrics.read_text())["retrieval"]
    assert written == result["metrics"]["retrieval"]
    assert written["model_version"] == str(champion.version)
    n_test = len(tiny.genres) * tiny.splits["test"]
    assert (written["queries"], written["catalogue"]) == (n_test, n_clips - n_test)
    assert 0.0 <= written["map"] <= 1.0 and 0.0 <= written["precision_at_5"] <= 1.0
    # both tiny models classify every test clip right: their vectors group by genre
    assert written["precision_at_5"] > 0.8 and written["map"] > 0.6
    logged = client.get_run(champion.run_id).data.metrics
    assert logged["retrieval_precision_at_5"] == pytest.approx(written["precision_at_5"])
    assert logged["retrieval_map"] == pytest.approx(written["map"])


def _table_rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0].startswith("# ") and lines[1].split() == ["rank", "distance", "genre", "path"]
    return [line.split(maxsplit=3) for line in lines[2:]]


def test_similar_prints_a_table_and_json(env, tiny):
    layout, uri, params, _ = env
    champion = str(_client(uri).get_model_version_by_alias(NAME, "champion").version)
    clip = _test_clip(layout)
    table = _cli("similar", str(clip), "-k", "3", "--root", str(layout.root))
    assert table.exit_code == 0, table.output
    rows = _table_rows(table.stdout)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    distances = [float(r[1]) for r in rows]
    assert distances == sorted(distances) and all(0.0 <= d <= 2.0 for d in distances)
    assert all(r[2] in tiny.genres and Path(r[3]).is_file() for r in rows)
    assert f"model version {champion}" in table.stdout.splitlines()[0]

    as_json = _cli("similar", str(clip), "-k", "3", "--json", "--root", str(layout.root))
    assert as_json.exit_code == 0, as_json.output
    found = json.loads(as_json.stdout)
    assert found["query"] == str(clip) and found["model_version"] == champion
    hits = found["neighbours"]
    assert [(h["rank"], h["genre"], h["path"]) for h in hits] == [
        (int(r[0]), r[2], r[3]) for r in rows
    ]
    np.testing.assert_allclose([h["distance"] for h in hits], distances, atol=1e-4)
    assert {h["split"] for h in hits} <= {"train", "val", "test"}

    # a corpus song finds itself first: indexing and querying embed by one path
    manifest = pd.read_csv(layout.validated_manifest)
    row = manifest[manifest["split"] == "train"].iloc[0]
    self_hit = json.loads(
        _cli(
            "similar", str(layout.absolute(row["path"])), "--json", "--root", str(layout.root)
        ).stdout
    )["neighbours"]
    assert len(self_hit) == params.evaluate.search.k  # -k defaults from params
    assert self_hit[0]["track_id"] == row["track_id"] and self_hit[0]["distance"] < 1e-4


def _one_error_line(result, command: str = "similar") -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"genreflow {command}: error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_similar_errors_are_one_line(env, tmp_path):
    layout, _, _, _ = env
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio" * 10)
    assert str(bad) in _one_error_line(_cli("similar", str(bad), "--root", str(layout.root)))
    gone = tmp_path / "gone.ogg"
    assert str(gone) in _one_error_line(_cli("similar", str(gone), "--root", str(layout.root)))


def test_promote_and_rollback_rebuild_the_index(env):
    from genreflow.pipeline.champion import promote, rollback
    from genreflow.similarity.index import index_digest

    layout, uri, _, result = env
    chosen, other = (d["version"] for d in result["promotion"]["decisions"])
    assert read_meta(layout.similarity_index).version == chosen
    built_by_evaluate = index_digest(layout.similarity_index)

    moved = promote(NAME, other, layout)
    assert moved["changed"] and moved["similarity_index"]["rebuilt"]
    assert moved["similarity_index"]["version"] == other
    meta = read_meta(layout.similarity_index)
    assert meta.version == other and meta.model_uri == f"models:/{NAME}/{other}"
    found = _cli("similar", str(_test_clip(layout)), "--json", "--root", str(layout.root))
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["model_version"] == other

    again = promote(NAME, other, layout)  # already champion, index already its: kept
    assert not again["changed"] and not again["similarity_index"]["rebuilt"]

    back = rollback(NAME, layout)
    assert back["champion"] == chosen and back["similarity_index"]["rebuilt"]
    assert read_meta(layout.similarity_index).version == chosen
    # rebuilt for the same champion: the very bytes evaluate wrote (content, no build time)
    assert index_digest(layout.similarity_index) == built_by_evaluate


def test_an_index_of_other_weights_under_the_same_version_is_refused(env):
    """Same version number, other weights (a recreated registry, say): one line, the fix."""
    layout, _, _, _ = env
    meta_file = layout.similarity_index / "meta.json"
    saved = meta_file.read_bytes()
    raw = json.loads(saved)
    meta_file.write_text(json.dumps({**raw, "weights_sha256": OTHER_WEIGHTS}))
    try:
        line = _one_error_line(_cli("similar", str(_test_clip(layout)), "--root", str(layout.root)))
        assert f"version {raw['version']} of another model" in line
        assert "not weights sha256 bbbbbbbbbbbb" in line and "`genreflow index`" in line
    finally:
        meta_file.write_bytes(saved)


def test_a_champion_moved_behind_the_index_is_refused_until_rebuilt(env):
    layout, uri, _, result = env
    client = _client(uri)
    chosen, other = (d["version"] for d in result["promotion"]["decisions"])
    clip = str(_test_clip(layout))
    client.set_registered_model_alias(NAME, "champion", other)  # no hook ran
    try:
        line = _one_error_line(_cli("similar", clip, "--root", str(layout.root)))
        assert f"built with {NAME} version {chosen}, but the champion is version {other}" in line
        assert "`genreflow index`" in line

        rebuilt = _cli("index", "--root", str(layout.root), "-q")
        assert rebuilt.exit_code == 0, rebuilt.output
        assert f"version {other}" in rebuilt.output and "precision@5" in rebuilt.output
        assert read_meta(layout.similarity_index).version == other
        assert _cli("similar", clip, "--root", str(layout.root)).exit_code == 0
    finally:
        client.set_registered_model_alias(NAME, "champion", chosen)
        _cli("index", "--root", str(layout.root), "-q")
