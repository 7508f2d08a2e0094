"""`genreflow predict` with a real logged model: a freshly initialised tiny CNN exported and
registered as the champion of a tiny repository (what it predicts is not the point here;
that the tool reports every file, once, in the promised format, is)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from genreflow.cli import app

NAME = "tiny-genres"
runner = CliRunner()
GOOD = ("a.flac", "b.wav", "sub/c.ogg", "sub/deep/d.wav")
BAD = "sub/bad.wav"
CLIP_S = 1.5


@dataclass(frozen=True)
class PredictRepo:
    root: Path
    audio: Path
    uri: str  # tracking URI of the repo's own mlflow.db
    genres: tuple[str, ...]


def _log_champion(params) -> None:
    """Export a freshly initialised tiny CNN the way training does; make it the champion."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from genreflow.models import build_classifier
    from genreflow.serving.export import log_serving_model

    f = params.features
    torch.manual_seed(0)
    classifier = build_classifier(
        params.train_cnn, f.n_mels, f.segment_frames, len(params.data.genres)
    )
    n = f.segment_samples + 2 * f.segment_hop_samples
    example = 0.1 * np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    with mlflow.start_run():
        info = log_serving_model(classifier, f, list(params.data.genres), example)
    version = mlflow.register_model(info.model_uri, NAME).version
    MlflowClient().set_registered_model_alias(NAME, "champion", version)


def _write_audio(audio: Path, sample_rate: int) -> None:
    rng = np.random.default_rng(1)
    for rel in GOOD:
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        wave = 0.1 * rng.standard_normal(int(CLIP_S * sample_rate)).astype(np.float32)
        sf.write(audio / rel, wave, sample_rate)
    (audio / BAD).write_text("not audio at all")
    (audio / "notes.txt").write_text("ignored: not an audio file name")


@pytest.fixture(scope="module")
def repo(tiny, tmp_path_factory: pytest.TempPathFactory) -> PredictRepo:
    from genreflow.core.config import to_dict
    from genreflow.core.paths import Layout
    from genreflow.tracking.store import configure_mlflow

    root = tmp_path_factory.mktemp("predictrepo")
    base = tiny.params()
    params = replace(base, tracking=replace(base.tracking, registered_model=NAME))
    (root / "params.yaml").write_text(yaml.safe_dump(to_dict(params)))
    (root / "dvc.yaml").write_text("stages: {}\n")
    uri = tiny.tracking_db(tmp_path_factory, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_STAGE", "DVC_EXP_NAME"):
            mp.delenv(var, raising=False)
        configure_mlflow(Layout.from_root(root), params.tracking.experiment)
        _log_champion(params)
    _write_audio(root / "audio", params.features.sample_rate)
    return PredictRepo(root, root / "audio", uri, tuple(params.data.genres))


@pytest.fixture()
def env(repo, monkeypatch) -> PredictRepo:
    """Run from the repo with its own mlflow.db (no env override): the default path."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(repo.root)
    return repo


def _predict(*args: str):
    return runner.invoke(app, ["predict", *args])


def test_table_reports_every_file_and_one_line_for_the_bad_one(env):
    result = _predict("audio", "--root", str(env.root))

    assert result.exit_code == 1
    rows = result.stdout.strip().splitlines()
    assert rows[0].split()[:2] == ["path", "genre"]
    assert [r.split()[0] for r in rows[1:]] == [
        f"audio/{rel}" for rel in sorted(GOOD + (BAD,)) if rel != BAD
    ]
    for row in rows[1:]:
        cells = row.split()
        assert cells[1] in env.genres and cells[2] == cells[1]  # the best genre leads the top 3
        assert row.endswith(f"{CLIP_S:.1f} s")
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert f"audio/{BAD}" in errors[0] and "not decodable audio" in errors[0]
    assert result.stderr.strip().splitlines()[-1] == "genreflow predict: 4 ok, 1 failed (5 inputs)"
    assert "notes.txt" not in result.output


def test_json_lines_parse_with_every_genre_summing_to_one(env):
    result = _predict("--json", "audio", "missing.wav", "--root", str(env.root))

    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # nothing else on stdout
    by_path = {line["path"]: line for line in lines}
    assert list(by_path) == [f"audio/{rel}" for rel in sorted(GOOD + (BAD,))] + ["missing.wav"]
    for rel in GOOD:
        line = by_path[f"audio/{rel}"]
        assert set(line) == {"path", "genre", "probabilities", "duration_s"}
        probs = line["probabilities"]
        assert set(probs) == set(env.genres)
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-6)
        assert line["genre"] == max(probs, key=probs.get) == next(iter(probs))
        assert line["duration_s"] == pytest.approx(CLIP_S, abs=1e-3)
    assert set(by_path[f"audio/{BAD}"]) == {"path", "error"}
    assert "not decodable" in by_path[f"audio/{BAD}"]["error"]
    assert "no such file" in by_path["missing.wav"]["error"]
    assert result.stderr.strip().splitlines()[-1].endswith("4 ok, 2 failed (6 inputs)")


def test_all_good_files_exit_zero(env):
    files = [f"audio/{rel}" for rel in GOOD[:2]]
    result = _predict(*files, "--json", "--root", str(env.root))

    assert result.exit_code == 0
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == files
    assert result.stderr.strip().splitlines()[-1].endswith("2 ok, 0 failed (2 inputs)")


def test_predictions_are_the_served_models(env):
    """The tool adds no decision of its own: its genre and probabilities are ServedModel's."""
    from genreflow.core.config import load_params
    from genreflow.core.paths import Layout
    from genreflow.serving.predict import analyse
    from genreflow.serving.served import ServedModel, champion_uri
    from genreflow.tracking.store import set_tracking

    layout = Layout.from_root(env.root)
    set_tracking(layout)
    served = ServedModel.load(champion_uri(load_params(layout.params)))
    result = _predict("--json", f"audio/{GOOD[0]}", "--root", str(env.root))
    line = json.loads(result.stdout)
    direct = analyse(served, Path(f"audio/{GOOD[0]}"))
    assert line["genre"] == direct.genre
    assert line["probabilities"] == pytest.approx(direct.probabilities, abs=1e-6)


def test_unknown_registered_name_is_named_with_what_to_run(env, tmp_path):
    """Another repo naming a model the store does not hold: one line names its URI."""
    params = yaml.safe_load((env.root / "params.yaml").read_text())
    params["tracking"]["registered_model"] = "nobody-registered-this"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "mlflow.db").write_bytes((env.root / "mlflow.db").read_bytes())

    result = _predict(f"{env.audio}/{GOOD[0]}", "--root", str(tmp_path))

    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "models:/nobody-registered-this@champion" in line
    assert "No champion yet" in line and "dvc repro" in line

    named = _predict(f"{env.audio}/{GOOD[0]}", "--root", str(tmp_path), "--name", NAME)
    assert named.exit_code == 0, named.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_unless_quiet(env, quiet):
    from genreflow.core.paths import Layout
    from genreflow.serving.predict import run_predict
    from genreflow.serving.served import ServedModel
    from genreflow.tracking.store import set_tracking

    set_tracking(Layout.from_root(env.root))
    served = ServedModel.load(f"models:/{NAME}@champion")
    out, err = io.StringIO(), _Terminal()

    summary = run_predict(served, [env.audio], quiet=quiet, out=out, err=err)

    assert (summary.ok, summary.failed, summary.exit_code) == (4, 1, 1)
    assert ("file/s" in err.getvalue() or "5/5" in err.getvalue()) is not quiet
    assert "5/5" not in out.getvalue()  # the bar never lands in the table
