"""The champion moves, the similar-song index follows, DVC's record is kept: through
``genreflow promote``, ``rollback`` and ``index`` alike (all three are
:mod:`genreflow.pipeline.champion`); and ``evaluate`` writes ``reports/metrics.json`` once.

On a private copy of the session's trained tiny repository, made a DVC repository whose stage
``evaluate`` owns ``models/similarity_index`` (recorded in ``dvc.lock``), so each command's
"record it" step has something real to record.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

NAME = "genre-classifier"


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, check=True, capture_output=True, text=True
    )


def _dvc_clean(root: Path) -> bool:
    return json.loads(_dvc(root, "status", "--json").stdout or "{}") == {}


@pytest.fixture(scope="module")
def repo(trained_tiny, tmp_path_factory: pytest.TempPathFactory):
    """A private copy whose ``dvc.lock`` records the index evaluate built."""
    own = trained_tiny.copy(tmp_path_factory.mktemp("champion-move") / "repo")
    root = own.layout.root
    (root / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: 'true'\n    deps: [params.yaml]\n"
        "    outs: [models/similarity_index]\n"
    )
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "commit", "--force", "evaluate")
    assert _dvc_clean(root)
    return own


@pytest.fixture()
def env(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", repo.uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return repo


def _cli(*args: str):
    from typer.testing import CliRunner

    from genreflow.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout  # the answer; progress bars go to stderr


def _versions(repo) -> tuple[str, str]:
    chosen, other = (d["version"] for d in repo.result["promotion"]["decisions"])
    return chosen, other


def test_promote_rollback_and_index_all_rebuild_and_record_the_index(env):
    from genreflow.similarity.index import read_meta

    root = env.layout.root
    index = env.layout.similarity_index
    chosen, other = _versions(env)
    assert read_meta(index).version == chosen

    moved = json.loads(_cli("promote", other, "--root", str(root)))
    assert moved["champion"] == other and moved["similarity_index"]["rebuilt"]
    assert moved["similarity_index"]["dvc"].startswith("recorded in dvc.lock")
    assert read_meta(index).version == other and _dvc_clean(root)

    back = json.loads(_cli("rollback", "--root", str(root)))
    assert back["champion"] == chosen and back["similarity_index"]["version"] == chosen
    assert back["similarity_index"]["dvc"].startswith("recorded in dvc.lock")
    assert read_meta(index).version == chosen and _dvc_clean(root)

    # a champion moved behind the commands' back: `genreflow index` follows it the same way
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=env.uri, registry_uri=env.uri).set_registered_model_alias(
        NAME, "champion", other
    )
    try:
        lines = _cli("index", "--root", str(root), "-q").splitlines()
        assert f"version {other}" in lines[0]
        assert lines[-1].startswith("recorded in dvc.lock")
        assert read_meta(index).version == other and _dvc_clean(root)
    finally:
        MlflowClient(tracking_uri=env.uri, registry_uri=env.uri).set_registered_model_alias(
            NAME, "champion", chosen
        )
        _cli("index", "--root", str(root), "-q")


# --------------------------------------------------------------------------- metrics.json once
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class _DirWatch:
    """Linux inotify on one directory: the names written (closed after writing) or renamed
    into it, in order. Real kernel events, so every write of a file is seen, atomic or not."""

    def __init__(self, directory: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0:
            pytest.skip("no inotify here")
        mask = IN_CLOSE_WRITE | IN_MOVED_TO
        if self._libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            pytest.skip(f"cannot watch {directory}")

    def names(self) -> list[str]:
        data = b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        os.close(self.fd)
        found, at = [], 0
        while at < len(data):
            _, _, _, size = EVENT.unpack_from(data, at)
            at += EVENT.size
            found.append(data[at : at + size].rstrip(b"\0").decode())
            at += size
        return found


def test_evaluate_writes_metrics_json_once_with_every_score(env, tmp_path):
    """The file DVC reads as metrics is written once, complete (no interim version without
    ``retrieval`` that a crash in registration or indexing could leave behind)."""
    from genreflow.core.paths import Layout
    from genreflow.pipeline.evaluate import evaluate_stage

    # evaluate again in a sibling root sharing the data and trained models; its reports and
    # index start empty, so the shared repository stays as the other test left it
    sibling = Layout.from_root(tmp_path / "sibling")
    (sibling.root / "models").mkdir(parents=True)
    (sibling.root / "data").symlink_to(env.layout.root / "data", target_is_directory=True)
    for arch in ("cnn", "crnn"):
        (sibling.root / "models" / arch).symlink_to(
            env.layout.model_dir(arch), target_is_directory=True
        )
    sibling.reports_dir.mkdir(parents=True)
    watch = _DirWatch(sibling.reports_dir)

    result = evaluate_stage(env.params, sibling, progress=False)

    written = [n for n in watch.names() if n == "metrics.json"]
    assert written == ["metrics.json"]  # one rename onto it, no in-place write either
    on_disk = json.loads(sibling.metrics.read_text())
    assert set(on_disk) == {"cnn", "crnn", "baseline", "retrieval"}
    assert on_disk == json.loads(json.dumps(result["metrics"]))
