"""`genreflow predict` without a model: what it finds in files and folders, and where its
default model comes from. Predictions with a real logged model: tests/model/test_predict.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from genreflow.cli import app
from genreflow.serving.predict import InputFailure, discover, format_duration

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)
    return path


def test_folders_are_searched_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "music"
    audio = ("b.wav", "a.FLAC", "z/deep/c.ogg", "y/d.mp3", "y/e.au", "y/f.aiff")
    other = ("notes.txt", "cover.jpg", "y/playlist.m3u", ".hidden.wav", ".cache/g.wav")
    for rel in audio + other:  # discovery goes by name; decoding is the model's job
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()

    found = discover([root])

    rels = [p.relative_to(root).as_posix() for p in found]
    assert rels == ["a.FLAC", "b.wav", "y/d.mp3", "y/e.au", "y/f.aiff", "z/deep/c.ogg"]
    assert discover([root]) == found  # deterministic


def test_inputs_keep_their_order_and_each_file_is_found_once(tmp_path):
    one = _wav(tmp_path / "x" / "one.wav")
    _wav(tmp_path / "x" / "two.wav")
    text = tmp_path / "readme.txt"
    text.write_text("named explicitly: tried, whatever its extension")

    found = discover([text, tmp_path / "x", one])

    assert found == [text, one, tmp_path / "x" / "two.wav"]


def test_missing_path_and_folder_without_audio_are_failures_in_place(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no audio here")
    good = _wav(tmp_path / "good.wav")

    found = discover([tmp_path / "nope.wav", empty, good])

    assert found[2] == good
    missing, no_audio = found[0], found[1]
    assert isinstance(missing, InputFailure) and missing.path == str(tmp_path / "nope.wav")
    assert "no such file" in missing.reason
    assert isinstance(no_audio, InputFailure) and no_audio.path == str(empty)
    assert "no audio files" in no_audio.reason and "flac" in no_audio.reason


@pytest.mark.parametrize(
    ("seconds", "text"), [(1.5, "1.5 s"), (30.0, "30.0 s"), (208.0, "3:28"), (3600.0, "1:00:00")]
)
def test_durations_read_naturally(seconds, text):
    assert format_duration(seconds) == text


def _repo(tmp_path: Path, registered_model: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"]["registered_model"] = registered_model
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


@pytest.mark.parametrize("extra", [[], ["--name", "other-songs"]])
def test_default_model_comes_from_params_and_name_overrides_it(tmp_path, monkeypatch, extra):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    root = _repo(tmp_path, "my-songs")
    clip = _wav(tmp_path / "clip.wav")

    result = runner.invoke(app, ["predict", str(clip), "--root", str(root), *extra])

    assert result.exit_code == 1
    expected = "models:/other-songs@champion" if extra else "models:/my-songs@champion"
    assert expected in result.stderr
    assert "genre-classifier" not in result.stderr
    assert "no MLflow store" in result.stderr and "dvc repro" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (root / "mlflow.db").exists()  # a failed predict creates no empty store


def test_model_uri_and_name_together_are_rejected(tmp_path):
    result = runner.invoke(
        app, ["predict", str(tmp_path), "--model-uri", "models:/a@champion", "--name", "b"]
    )
    assert result.exit_code == 2
    assert "not both" in result.output
