"""Confusion rows, matrix CSV/JSON round-trips and the PNG figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from genreflow.core.config import GTZAN_GENRES
from genreflow.evaluation.confusion import (
    confusion_matrix_frame,
    confusion_rows,
    plot_confusion_png,
    write_confusion_csv,
    write_confusion_json,
)

GENRES = ["blues", "jazz", "rock"]
IDS = np.array(["b.0", "b.1", "j.0", "j.1", "r.0"])
Y_TRUE = np.array([0, 0, 1, 1, 2])
Y_PRED = np.array([0, 2, 1, 0, 2])


def test_rows_name_genres_per_clip() -> None:
    rows = confusion_rows(IDS, Y_TRUE, Y_PRED, GENRES)
    assert rows == [
        {"track_id": "b.0", "actual": "blues", "predicted": "blues"},
        {"track_id": "b.1", "actual": "blues", "predicted": "rock"},
        {"track_id": "j.0", "actual": "jazz", "predicted": "jazz"},
        {"track_id": "j.1", "actual": "jazz", "predicted": "blues"},
        {"track_id": "r.0", "actual": "rock", "predicted": "rock"},
    ]


def test_rows_json_round_trip(tmp_path: Path) -> None:
    rows = confusion_rows(IDS, Y_TRUE, Y_PRED, GENRES)
    path = tmp_path / "plots" / "confusion.json"
    write_confusion_json(path, rows)
    assert json.loads(path.read_text()) == rows
    assert [p.name for p in path.parent.iterdir()] == ["confusion.json"]  # no temp left over


def test_failed_json_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "confusion.json"
    with pytest.raises(TypeError):
        write_confusion_json(path, [{"actual": object()}])
    assert list(tmp_path.iterdir()) == []


def test_matrix_counts_and_csv_round_trip(tmp_path: Path) -> None:
    frame = confusion_matrix_frame(Y_TRUE, Y_PRED, [*GENRES, "metal"])
    expected = [
        # blues jazz rock metal  (predicted)
        [1, 0, 1, 0],  # blues
        [1, 1, 0, 0],  # jazz
        [0, 0, 1, 0],  # rock
        [0, 0, 0, 0],  # metal: absent, still listed
    ]
    assert frame.to_numpy().tolist() == expected
    assert list(frame.index) == list(frame.columns) == [*GENRES, "metal"]
    path = tmp_path / "confusion.csv"
    write_confusion_csv(path, frame)
    back = pd.read_csv(path, index_col=0)
    assert back.index.name == "actual"
    assert list(back.index) == list(back.columns) == [*GENRES, "metal"]
    assert back.to_numpy().tolist() == expected


def test_rows_and_matrix_agree() -> None:
    rows = confusion_rows(IDS, Y_TRUE, Y_PRED, GENRES)
    frame = confusion_matrix_frame(Y_TRUE, Y_PRED, GENRES)
    from_rows = pd.crosstab(
        pd.Categorical([r["actual"] for r in rows], categories=GENRES),
        pd.Categorical([r["predicted"] for r in rows], categories=GENRES),
        dropna=False,
    )
    assert from_rows.to_numpy().tolist() == frame.to_numpy().tolist()


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="5 track ids, 4 true labels"):
        confusion_rows(IDS, Y_TRUE[:4], Y_PRED[:4], GENRES)
    with pytest.raises(ValueError, match="y_pred has label 3 outside 0..2"):
        confusion_matrix_frame(Y_TRUE, np.array([0, 0, 1, 1, 3]), GENRES)


@pytest.mark.parametrize("normalize", [True, False])
def test_png_is_written_and_sane(tmp_path: Path, normalize: bool) -> None:
    genres = list(GTZAN_GENRES)
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(10), 29)
    y_pred = np.where(rng.random(y_true.size) < 0.6, y_true, rng.integers(0, 10, y_true.size))
    y_true[y_true == 9] = 8  # an empty row must not produce NaN shading
    frame = confusion_matrix_frame(y_true, y_pred, genres)
    backend = matplotlib.get_backend()
    path = tmp_path / "figures" / "confusion.png"
    plot_confusion_png(path, frame, "CNN, GTZAN filtered test split", normalize=normalize)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert 600 <= height <= 3000 and 600 <= width <= 3000
    assert image.std() > 0.05  # not a blank canvas
    assert matplotlib.get_backend() == backend  # the process-wide backend is left alone
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]


def test_importing_the_package_does_not_load_pyplot() -> None:
    code = (
        "import sys, genreflow.evaluation, genreflow.evaluation.confusion; "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_png_bytes_depend_on_the_matrix_only(tmp_path: Path) -> None:
    """The figure is a DVC output: the same matrix renders to the same bytes, with no tool
    version (matplotlib's "Software" chunk) or time in them."""
    frame = confusion_matrix_frame(Y_TRUE, Y_PRED, GENRES)
    for name in ("a.png", "b.png"):
        plot_confusion_png(tmp_path / name, frame, "CNN")
    data = (tmp_path / "a.png").read_bytes()
    assert data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data and b"tIME" not in data and b"Matplotlib" not in data
    plot_confusion_png(tmp_path / "c.png", confusion_matrix_frame(Y_TRUE, Y_TRUE, GENRES), "CNN")
    assert (tmp_path / "c.png").read_bytes() != data
