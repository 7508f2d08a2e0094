"""A person's own library: `genreflow index PATH... --name NAME`, `similar --index NAME` and
`index --list`, on the session's trained tiny model.

What is checked is what a user relies on: every format `predict` accepts is indexed; a re-run
embeds only new or changed contents and drops removed files; a run killed (SIGKILL) or
interrupted (Ctrl-C) continues without embedding a finished file twice; a file already in the
library is recognised by its content and left out of its own answer; a champion change makes
queries refuse, naming the rebuild command, and the re-run re-embeds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.tiny import GENRES, pointed_at, tone

NAME = "mine"
FORMATS = (("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III"))
RATES = (8000, 22050, 44100, 16000)


def _cli(*args: str):
    from typer.testing import CliRunner

    from genreflow.cli import app

    return CliRunner().invoke(app, list(args))


def _write_library(folder: Path, per_genre: int = 2, seed: int = 7) -> list[Path]:
    """Clips of every tiny genre in every format and at several rates (one stereo), nested."""
    rng = np.random.default_rng(seed)
    written = []
    for g, genre in enumerate(GENRES):
        for i in range(per_genre):
            ext, subtype = FORMATS[(g * per_genre + i) % len(FORMATS)]
            rate = RATES[(g + i) % len(RATES)]
            wave = tone(genre, rng)
            wave = np.interp(
                np.arange(int(len(wave) * rate / 8000)) * 8000 / rate,
                np.arange(len(wave)),
                wave,
            ).astype(np.float32)
            if i == 1:
                wave = np.stack([wave, wave], axis=1)  # stereo
            path = folder / genre / f"{genre}_{i}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave, rate, subtype=subtype)
            written.append(path)
    return written


@pytest.fixture(scope="module")
def repo(trained_tiny, tmp_path_factory: pytest.TempPathFactory):
    """A private copy of the trained tiny repository (these tests move the champion)."""
    return trained_tiny.copy(tmp_path_factory.mktemp("library") / "repo")


@pytest.fixture()
def env(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", repo.uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    with pointed_at(repo.uri):
        yield repo


def _index(repo, *args: str):
    return _cli("index", *args, "--root", str(repo.layout.root), "-q")


def _summary(result) -> dict[str, int]:
    """The counts of the summary line (`... 3 embedded, 1 unchanged, 0 dropped, 0 failed`)."""
    line = [x for x in result.stdout.splitlines() if "embedded," in x][-1]
    parts = line.rsplit(";", 1)[-1].split(",")
    return {p.split()[1]: int(p.split()[0]) for p in parts}


def _similar(repo, file: Path, *args: str) -> dict:
    result = _cli("similar", str(file), "--json", "--root", str(repo.layout.root), *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _one_error(result, command: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [x for x in result.output.splitlines() if x.startswith(f"genreflow {command}: error")]
    assert len(errors) == 1, result.output
    return errors[0]


def _champion(repo) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=repo.uri, registry_uri=repo.uri)
    return str(
        client.get_model_version_by_alias(repo.params.tracking.registered_model, "champion").version
    )


def test_a_mixed_folder_is_indexed_once_and_searched(env, tmp_path):
    repo = env
    music = tmp_path / "music"
    files = _write_library(music)
    first = _index(repo, str(music), "--name", NAME)
    assert first.exit_code == 0, first.output
    assert _summary(first) == {"embedded": len(files), "unchanged": 0, "dropped": 0, "failed": 0}
    assert f"{len(files)} songs" in first.stdout and f"version {_champion(repo)}" in first.stdout

    again = _index(repo, "--name", NAME)  # the recorded folders
    assert _summary(again) == {"embedded": 0, "unchanged": len(files), "dropped": 0, "failed": 0}

    # a query from outside: neighbours are library files, nearest first, with their genres
    outside = tmp_path / "query.wav"
    sf.write(outside, tone("metal", np.random.default_rng(99)), 8000)
    found = _similar(repo, outside, "--index", NAME, "-k", "3")
    assert found["index"] == NAME and found["model_version"] == _champion(repo)
    hits = found["neighbours"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {h["path"] for h in hits} <= {str(f) for f in files}
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert hits[0]["genre"] == "metal" and "metal" in Path(hits[0]["path"]).name

    # a library file queried: recognised by content, its own entry left out
    own = files[0]
    answer = _similar(repo, own, "--index", NAME, "-k", str(len(files)))["neighbours"]
    assert str(own) not in {h["path"] for h in answer} and len(answer) == len(files) - 1
    # ... also under another name (same content): no entry of that content comes back
    renamed = tmp_path / "renamed" / own.name
    renamed.parent.mkdir()
    shutil.copy2(own, renamed)
    assert str(own) not in {
        h["path"] for h in _similar(repo, renamed, "--index", NAME)["neighbours"]
    }

    table = _cli("similar", str(outside), "--index", NAME, "--root", str(repo.layout.root))
    assert table.exit_code == 0 and f"in {NAME} (model version" in table.stdout.splitlines()[0]


def test_changes_are_embedded_removed_files_dropped_bad_files_one_line(env, tmp_path):
    repo = env
    music = tmp_path / "music"
    files = _write_library(music, seed=11)
    assert _index(repo, str(music), "--name", "edits").exit_code == 0

    changed, removed, moved = files[0], files[1], files[2]
    data, rate = sf.read(changed)
    sf.write(changed, data * 0.5, rate, subtype=sf.info(changed).subtype)  # new content
    removed.unlink()
    moved.rename(music / f"moved{moved.suffix}")  # same content, new path: not re-embedded
    copy = music / "copies" / files[3].name
    copy.parent.mkdir()
    shutil.copy2(files[3], copy)
    (music / "broken.mp3").write_bytes(b"ID3 not an mp3 at all" * 20)
    (music / "empty.wav").write_bytes(b"")

    result = _index(repo, "--name", "edits")
    assert result.exit_code == 1, result.output
    counts = _summary(result)
    # the changed file is the one new content; moved and copied ones reuse their vectors
    assert counts == {"embedded": 1, "unchanged": len(files) - 1, "dropped": 2, "failed": 2}
    errors = [x for x in result.stderr.splitlines() if x.startswith("genreflow index: error: ")]
    assert sorted(e.split(": ")[2] for e in errors) == sorted(
        [str(music / "broken.mp3"), str(music / "empty.wav")]
    )
    listed = {
        h["path"] for h in _similar(repo, files[4], "--index", "edits", "-k", "50")["neighbours"]
    }
    assert str(removed) not in listed and str(music / f"moved{moved.suffix}") in listed
    assert str(copy) in listed  # a copy of another file is its own entry


def _journal_count(directory: Path) -> int:
    db = directory / "journal.sqlite"
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return int(con.execute("SELECT COUNT(*) FROM songs").fetchone()[0])
    except sqlite3.Error:
        return 0


def _long_clip(path: Path, minutes: float) -> None:
    rng = np.random.default_rng(5)
    beat = np.concatenate([tone(g, rng) for g in GENRES])
    sr = 8000
    reps = int(minutes * 60 * sr / len(beat)) + 1
    sf.write(path, np.tile(beat, reps)[: int(minutes * 60 * sr)], sr, subtype="PCM_16")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_an_interrupted_run_resumes_without_embedding_twice(env, tmp_path, how):
    """Kill the run while it scores the last (long) file: every short file is committed; the
    re-run embeds only the long one."""
    repo = env
    name = f"killed-{how.name.lower()}"
    music = tmp_path / "music"
    short = _write_library(music, per_genre=4, seed=int(how))
    _long_clip(music / "zz_long.wav", minutes=40)
    directory = repo.layout.library_index(name)
    cmd = [
        sys.executable,
        "-m",
        "genreflow.cli",
        "index",
        str(music),
        "--name",
        name,
        "--root",
        str(repo.layout.root),
        "-q",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": repo.uri},
    )
    try:
        deadline = time.monotonic() + 300
        while _journal_count(directory) < len(short):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the short files were not embedded in time"
            time.sleep(0.01)
        proc.send_signal(how)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "genreflow index: interrupted" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    # the long one was not finished (if it was, the signal came too late: the log says)
    assert _journal_count(directory) == len(short), err
    listing = {
        r["name"]: r for r in map(json.loads, _index(repo, "--list", "--json").stdout.splitlines())
    }
    assert listing[name]["state"] == "interrupted"

    resumed = _index(repo, "--name", name)
    assert resumed.exit_code == 0, resumed.output
    assert _summary(resumed) == {"embedded": 1, "unchanged": len(short), "dropped": 0, "failed": 0}


def test_a_champion_change_refuses_queries_until_reindexed(env, tmp_path):
    from mlflow.tracking import MlflowClient

    repo = env
    music = tmp_path / "music"
    files = _write_library(music, seed=21)
    assert _index(repo, str(music), "--name", "moves").exit_code == 0
    name = repo.params.tracking.registered_model
    chosen, other = (d["version"] for d in repo.result["promotion"]["decisions"])
    client = MlflowClient(tracking_uri=repo.uri, registry_uri=repo.uri)
    client.set_registered_model_alias(name, "champion", other)
    try:
        query = files[0]
        line = _one_error(
            _cli("similar", str(query), "--index", "moves", "--root", str(repo.layout.root)),
            "similar",
        )
        assert f"version {chosen}, but the champion is version {other}" in line
        assert "`genreflow index --name moves`" in line

        redone = _index(repo, "--name", "moves")
        assert redone.exit_code == 0, redone.output
        assert f"version {chosen} -> {other}" in redone.stderr
        assert _summary(redone)["embedded"] == len(files)
        assert _similar(repo, query, "--index", "moves")["model_version"] == other
    finally:
        client.set_registered_model_alias(name, "champion", chosen)


def test_list_shows_the_indexes_sizes_and_models(env, tmp_path):
    repo = env
    music = tmp_path / "music"
    files = _write_library(music, per_genre=1, seed=31)
    assert _index(repo, str(music), "--name", "listed").exit_code == 0
    rows = {
        r["name"]: r for r in map(json.loads, _index(repo, "--list", "--json").stdout.splitlines())
    }
    assert rows["corpus"]["kind"] == "corpus" and rows["corpus"]["songs"] > 0
    mine = rows["listed"]
    assert mine["kind"] == "library" and mine["songs"] == len(files) and mine["state"] == "ready"
    assert mine["size_bytes"] > 0 and mine["version"] == _champion(repo)
    assert mine["roots"] == [str(music)] and mine["index_type"] == "flat"
    table = _index(repo, "--list").stdout.splitlines()
    assert table[0].split() == ["name", "kind", "songs", "size", "model", "index", "state"]
    assert any(line.split()[:3] == ["listed", "library", str(len(files))] for line in table)


def test_user_errors_are_one_line(env, tmp_path):
    repo = env
    root = str(repo.layout.root)
    line = _one_error(
        _cli("similar", str(tmp_path / "x.wav"), "--index", "nope", "--root", root), "similar"
    )
    assert (
        "no library index named 'nope'" in line and "genreflow index FOLDER... --name nope" in line
    )
    line = _one_error(_cli("index", str(tmp_path), "--name", "../up", "--root", root), "index")
    assert "cannot name a library" in line
    assert _cli("index", str(tmp_path), "--root", root).exit_code == 2  # paths need --name

    from genreflow.similarity.library import writer_lock

    music = tmp_path / "music"
    _write_library(music, per_genre=1, seed=41)
    directory = repo.layout.library_index("busy")
    with writer_lock(directory, "busy"):
        line = _one_error(_cli("index", str(music), "--name", "busy", "--root", root), "index")
    assert "another `genreflow index --name busy` is running" in line
