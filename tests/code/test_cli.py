"""The `genreflow` console script: help, and user errors as one clear line with exit 1."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from genreflow.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
COMMANDS = [
    "fetch",
    "validate",
    "spectrogramize",
    "train",
    "evaluate",
    "promote",
    "rollback",
    "registry",
    "predict",
    "ui",
]


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_bad_params_key_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  sourse: local\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result = runner.invoke(app, ["fetch", "--root", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert "unknown key(s) ['sourse']" in result.output


def test_missing_local_source_is_named(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="local", local={"path": "/nonexistent/gtzan.zip"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = runner.invoke(app, ["fetch", "--root", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert "/nonexistent/gtzan.zip" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data" / "raw").exists()


def test_unknown_model_is_rejected():
    result = runner.invoke(app, ["train", "transformer"])
    assert result.exit_code != 0
    assert "cnn or crnn" in result.output
