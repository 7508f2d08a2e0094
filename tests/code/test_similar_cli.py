"""`genreflow similar` and `genreflow index` without a model: help, and the errors a user
meets first (no index built yet, no validated corpus) as one line with exit 1. The answers
of a real index are tested on a trained tiny model in tests/model/test_similarity.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genreflow.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture()
def bare_repo(tmp_path, monkeypatch) -> Path:
    """A repository root with the real params.yaml and nothing built."""
    shutil.copyfile(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.mark.parametrize("command", ["similar", "index"])
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_similar_help_names_its_options():
    out = runner.invoke(app, ["similar", "--help"]).output
    assert all(opt in out for opt in ("-k", "--json", "--root", "--index"))


def test_index_help_names_the_library_options():
    out = runner.invoke(app, ["index", "--help"]).output
    assert all(opt in out for opt in ("--name", "--list", "--json", "paths"))


def test_index_list_on_a_bare_repo_says_how_to_build_one(bare_repo):
    result = runner.invoke(app, ["index", "--list", "--root", str(bare_repo)])
    assert result.exit_code == 0, result.output
    assert "no indexes yet" in result.stdout and "--name NAME" in result.stdout


def _error_line(result, command: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith(f"genreflow {command}: error: ")
    return line


def test_similar_without_an_index_says_how_to_build_one(bare_repo):
    song = bare_repo / "song.wav"
    result = runner.invoke(app, ["similar", str(song), "--root", str(bare_repo)])
    line = _error_line(result, "similar")
    assert str(bare_repo / "models" / "similarity_index") in line
    assert "`genreflow index`" in line


def test_index_without_a_validated_corpus_names_the_manifest(bare_repo):
    result = runner.invoke(app, ["index", "--root", str(bare_repo), "-q"])
    line = _error_line(result, "index")
    assert str(bare_repo / "data" / "validated" / "manifest.csv") in line
    assert not (bare_repo / "models" / "similarity_index").exists()
