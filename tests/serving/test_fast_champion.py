"""The champion's local copy (genreflow.serving.fast_champion) serves what the registry says.

On a private copy of the session's trained tiny repository (both networks registered, one the
champion), with the real MLflow store and real files:

- the copy's answers equal the MLflow pyfunc's, bit for bit (genre, probabilities, vector,
  weights digest, version), and loading it imports neither MLflow nor ``torch.export``'s
  loader;
- a champion move, a damaged or edited copy, or other code makes the next start reload through
  MLflow and rewrite the copy, never serve the old one;
- ``genreflow predict`` answers with no copy (and writes one), and answers the same from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreflow.core.champion_uri import champion_uri
from genreflow.serving import fast_champion as fc
from support.tiny import pointed_at


@pytest.fixture()
def repo(trained_tiny, tmp_path, monkeypatch):
    """A private copy of the trained tiny repository, MLflow pointed at its store."""
    copy = trained_tiny.copy(tmp_path / "repo")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy.uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pointed_at(copy.uri):
        yield copy


def _name(repo) -> str:
    return repo.params.tracking.registered_model


def _clips(repo) -> list[Path]:
    return sorted((repo.layout.root / "data").rglob("*.wav"))[:4]


def _pyfunc(repo):
    from genreflow.serving.served import ServedModel

    return ServedModel.load(champion_uri(_name(repo)))


def _assert_same_answers(fast, slow, clips: list[Path]) -> None:
    assert (fast.version, fast.weights_sha256, fast.genres) == (
        slow.version,
        slow.weights_sha256,
        slow.genres,
    )
    for clip in clips:
        a, b = fast.analyse(clip), slow.analyse(clip)
        assert a.genre == b.genre
        assert list(a.probabilities.items()) == list(b.probabilities.items())  # bit for bit
        np.testing.assert_array_equal(a.embedding, b.embedding)


def _other_version(repo) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    current = client.get_model_version_by_alias(_name(repo), "champion").version
    versions = client.search_model_versions(f"name = '{_name(repo)}'")
    return next(str(v.version) for v in versions if str(v.version) != str(current))


def test_the_copy_answers_as_the_pyfunc_bit_for_bit(repo) -> None:
    assert fc.cached_champion(repo.layout, _name(repo)) is None  # no copy yet
    refreshed = fc.load_champion(repo.layout, _name(repo))  # through MLflow, writes the copy
    cached = fc.cached_champion(repo.layout, _name(repo))
    assert cached is not None
    manifest = json.loads((fc.cache_dir(repo.layout, _name(repo)) / fc.MANIFEST).read_text())
    assert manifest["verified"]["exact"] is True and manifest["verified"]["max_abs_diff"] == 0
    slow = _pyfunc(repo)
    assert cached.uri == slow.uri == champion_uri(_name(repo))
    assert cached.model_id == slow.model_id
    _assert_same_answers(cached, slow, _clips(repo))
    _assert_same_answers(refreshed, slow, _clips(repo)[:1])


def test_the_cached_start_imports_neither_mlflow_nor_the_export_loader(repo) -> None:
    fc.load_champion(repo.layout, _name(repo))
    code = (
        "import sys\n"
        "from genreflow.core.paths import Layout\n"
        "from genreflow.serving.fast_champion import cached_champion\n"
        f"s = cached_champion(Layout.from_root({str(repo.layout.root)!r}), {_name(repo)!r})\n"
        f"s.analyse({str(_clips(repo)[0])!r})\n"
        "print(s is not None, 'mlflow' in sys.modules, 'sympy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.split() == ["True", "False", "False"]


def test_a_new_champion_refreshes_the_copy(repo) -> None:
    from genreflow.registry.aliases import move_champion

    first = fc.load_champion(repo.layout, _name(repo))
    other = _other_version(repo)
    move_champion(_name(repo), other)
    assert fc.cached_champion(repo.layout, _name(repo)) is None  # the copy is the old version
    second = fc.load_champion(repo.layout, _name(repo))
    assert second.version == other != first.version
    assert second.weights_sha256 != first.weights_sha256
    manifest = json.loads((fc.cache_dir(repo.layout, _name(repo)) / fc.MANIFEST).read_text())
    assert manifest["version"] == other
    assert len(list(fc.cache_dir(repo.layout, _name(repo)).glob("weights-*.pt"))) == 1
    cached = fc.cached_champion(repo.layout, _name(repo))
    assert cached is not None
    _assert_same_answers(cached, _pyfunc(repo), _clips(repo)[:2])


def _weights_file(repo) -> Path:
    (path,) = fc.cache_dir(repo.layout, _name(repo)).glob("weights-*.pt")
    return path


def test_a_damaged_copy_is_refreshed_not_served(repo) -> None:
    fc.load_champion(repo.layout, _name(repo))
    weights = _weights_file(repo)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert fc.cached_champion(repo.layout, _name(repo)) is None
    fc.load_champion(repo.layout, _name(repo))
    assert fc.cached_champion(repo.layout, _name(repo)) is not None


def test_edited_weights_with_a_matching_file_hash_are_caught(repo) -> None:
    """Someone rewrites the copy's weights *and* its file hash: the weights digest, which the
    registry's core also gives, still tells."""
    import torch

    from genreflow.core.hashing import file_sha256

    fc.load_champion(repo.layout, _name(repo))
    weights = _weights_file(repo)
    payload = torch.load(weights, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel())
    payload["state_dict"][key] = payload["state_dict"][key] + 1.0
    torch.save(payload, weights)
    manifest_path = fc.cache_dir(repo.layout, _name(repo)) / fc.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["file_sha256"] = file_sha256(weights)
    manifest_path.write_text(json.dumps(manifest))
    assert fc.cached_champion(repo.layout, _name(repo)) is None
    _assert_same_answers(fc.load_champion(repo.layout, _name(repo)), _pyfunc(repo), [])


def test_other_code_or_another_model_under_the_same_number_is_not_served(repo) -> None:
    fc.load_champion(repo.layout, _name(repo))
    manifest_path = fc.cache_dir(repo.layout, _name(repo)) / fc.MANIFEST
    good = json.loads(manifest_path.read_text())
    for change in (
        {"code": {**good["code"], "torch": "0.0"}},
        {"source": "models:/m-someotherloggedmodel"},
        {"format": "genreflow-serving-cache/0"},
    ):
        manifest_path.write_text(json.dumps({**good, **change}))
        assert fc.cached_champion(repo.layout, _name(repo)) is None, change
    manifest_path.write_text(json.dumps(good))
    assert fc.cached_champion(repo.layout, _name(repo)) is not None


def _predict(repo, clip: Path, *extra: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("genreflow")
    cmd = [str(exe), "predict", str(clip), "--json", "--root", str(repo.layout.root), "-q"]
    cmd += extra
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=False)


def test_predict_answers_with_no_copy_and_the_same_from_it(repo) -> None:
    clip = _clips(repo)[0]
    assert not fc.cache_dir(repo.layout, _name(repo)).exists()
    first = _predict(repo, clip)
    assert first.returncode == 0, first.stderr
    assert (fc.cache_dir(repo.layout, _name(repo)) / fc.MANIFEST).is_file()
    second = _predict(repo, clip)
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    # the logged pt2 core through MLflow, in a child process as well: a process's own numeric
    # state (threads an earlier test set in this one, say) must not enter the comparison
    version = fc.sqlite_champion(repo.layout, _name(repo)).version
    pinned = f"models:/{_name(repo)}/{version}"
    through_mlflow = _predict(repo, clip, "--model-uri", pinned)
    assert through_mlflow.returncode == 0, through_mlflow.stderr
    assert json.loads(second.stdout) == json.loads(through_mlflow.stdout)


def test_the_registry_is_read_without_writing_it(repo) -> None:
    from genreflow.serving.registry_read import UnverifiableRegistry, alias_version

    db = repo.layout.root / "mlflow.db"
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    record = alias_version(db, _name(repo), "champion")
    assert record is not None and record.source.startswith("models:/m-")
    assert alias_version(db, _name(repo), "no-such-alias") is None
    assert alias_version(db, "no-such-model", "champion") is None
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
    with pytest.raises(UnverifiableRegistry):
        alias_version(repo.layout.root / "absent.db", _name(repo), "champion")
    assert not (repo.layout.root / "absent.db").exists()


def test_a_store_that_is_not_sqlite_is_never_trusted_without_mlflow(repo, monkeypatch) -> None:
    """An MLflow server's registry cannot be read with sqlite3: no copy is served without
    asking MLflow, even a copy that exists."""
    fc.load_champion(repo.layout, _name(repo))
    assert fc.cached_champion(repo.layout, _name(repo)) is not None
    # (MLflow itself exports the registry URI it was given to the environment: set both)
    for tracking in ("http://127.0.0.1:9", repo.uri):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:9")
        assert fc.cached_champion(repo.layout, _name(repo)) is None


def test_another_logged_model_by_uri_takes_the_mlflow_path(repo) -> None:
    """``--model-uri models:/NAME/N`` is not the champion: answered by the pyfunc, no copy."""
    from genreflow.core.champion_uri import champion_of

    version = _other_version(repo)
    assert champion_of(f"models:/{_name(repo)}/{version}") is None
    assert champion_of(champion_uri(_name(repo))) == _name(repo)
    exe = Path(sys.executable).with_name("genreflow")
    uri = f"models:/{_name(repo)}/{version}"
    cmd = [str(exe), "predict", str(_clips(repo)[0]), "--json", "--model-uri", uri, "-q"]
    cmd += ["--root", str(repo.layout.root)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=False)
    assert out.returncode == 0, out.stderr
    assert not fc.cache_dir(repo.layout, _name(repo)).exists()


def test_keeping_freed_memory_is_set_once_and_changes_no_answer() -> None:
    from genreflow.serving.runtime import retain_freed_memory

    first = retain_freed_memory()
    assert retain_freed_memory() is first
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert first is True


def test_a_cache_that_cannot_be_written_still_answers(repo) -> None:
    """A read-only checkout or a full disk: served through MLflow, no error."""
    repo.layout.serving_cache.parent.mkdir(parents=True, exist_ok=True)
    repo.layout.serving_cache.write_text("not a folder")
    served = fc.load_champion(repo.layout, _name(repo))
    assert served.version is not None
    _assert_same_answers(served, _pyfunc(repo), _clips(repo)[:1])
