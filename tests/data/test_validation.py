"""The per-clip measurements, the container checks, and the reports the validate stage writes."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreflow.core.config import DataParams, Params, SplitParams, ValidateParams
from genreflow.core.paths import Layout
from genreflow.validation import ValidationFailed, validate
from genreflow.validation.container import truncation_reason
from genreflow.validation.decode_table import decode_table, inspect_clip

SR = 8000


def _sine(seconds: float, freq: float, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------ container checks
def test_truncation_reason_wav(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, _sine(1.0, 440), SR, subtype="PCM_16")
    assert truncation_reason(wav) is None
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:-1000])
    declared = SR * 2  # 1 s of 16-bit mono
    assert truncation_reason(cut) == (
        f"truncated: header declares {declared} bytes of audio data, file holds {declared - 1000}"
    )


def test_truncation_reason_au_and_other_files(tmp_path: Path) -> None:
    au = tmp_path / "a.au"
    sf.write(au, _sine(1.0, 440), SR, subtype="PCM_16", format="AU")
    assert truncation_reason(au) is None
    cut = tmp_path / "cut.au"
    cut.write_bytes(au.read_bytes()[:-500])
    assert truncation_reason(cut).startswith(f"truncated: header declares {SR * 2} bytes")
    flac = tmp_path / "a.flac"
    sf.write(flac, _sine(1.0, 440), SR)
    assert truncation_reason(flac) is None
    (tmp_path / "t.wav").write_text("RIFF but not really")
    assert truncation_reason(tmp_path / "t.wav") is None
    assert truncation_reason(tmp_path / "missing.wav") is None


# ------------------------------------------------------------------------ per-clip measurements
def test_inspect_clip_measures_level_clipping_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, _sine(2.0, 100, amp=0.5), SR, subtype="FLOAT")
    row = inspect_clip(path, "s.wav")
    assert row["decodable"] and row["decode_error"] is None
    assert row["duration_s"] == pytest.approx(2.0)
    assert (row["sample_rate"], row["channels"], row["frames"]) == (SR, 1, 2 * SR)
    assert row["rms_dbfs"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert row["clipping_ratio"] == 0.0

    stereo = tmp_path / "st.wav"
    left = np.full(1000, 1.0, np.float32)
    right = np.zeros(1000, np.float32)
    sf.write(stereo, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    row = inspect_clip(stereo, "st.wav")
    assert row["channels"] == 2
    assert row["clipping_ratio"] == pytest.approx(0.5)  # over all channels


def test_inspect_clip_counts_nonfinite_samples(tmp_path: Path) -> None:
    """NaN/inf are counted; level and clipping come from the finite samples only."""
    stereo = np.stack([_sine(1.0, 100, amp=0.5), _sine(1.0, 150, amp=0.5)], axis=1)
    stereo[[10, 20, 30], 0] = np.nan
    stereo[40, 1] = np.inf
    stereo[50, 0] = -np.inf
    sf.write(tmp_path / "mixed.wav", stereo, SR, subtype="FLOAT")
    row = inspect_clip(tmp_path / "mixed.wav", "mixed.wav")
    assert row["decodable"] and (row["nonfinite_samples"], row["nan_samples"]) == (5, 3)
    assert row["rms_dbfs"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)
    assert row["clipping_ratio"] == 0.0  # an inf is not "clipping"

    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    row = inspect_clip(tmp_path / "nan.wav", "nan.wav")
    assert (row["nonfinite_samples"], row["nan_samples"]) == (SR, SR)
    # Not measurable, so not "-inf dBFS" (which would read as silent).
    assert math.isnan(row["rms_dbfs"]) and math.isnan(row["clipping_ratio"])

    sf.write(tmp_path / "pcm.wav", _sine(1.0, 100), SR, subtype="PCM_16")
    assert inspect_clip(tmp_path / "pcm.wav", "pcm.wav")["nonfinite_samples"] == 0


def test_audio_hash_follows_samples_not_bytes(tmp_path: Path) -> None:
    pcm = (_sine(1.0, 300) * 32767).astype(np.int16)
    sf.write(tmp_path / "a.wav", pcm, SR, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", pcm, SR, subtype="PCM_16")  # same samples, other container
    sf.write(tmp_path / "c.wav", pcm // 2, SR, subtype="PCM_16")
    h = {n: inspect_clip(tmp_path / n, n)["audio_sha256"] for n in ("a.wav", "b.flac", "c.wav")}
    assert h["a.wav"] == h["b.flac"] != h["c.wav"]
    assert (tmp_path / "a.wav").read_bytes() != (tmp_path / "b.flac").read_bytes()


def test_inspect_clip_reports_checksum_mismatch_and_decode_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, _sine(1.0, 440), SR)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert inspect_clip(path, "x.wav", good)["checksum_error"] is None
    assert inspect_clip(path, "x.wav", "0" * 64)["checksum_error"].startswith("checksum mismatch")
    (tmp_path / "n.wav").write_text("not audio")
    row = inspect_clip(tmp_path / "n.wav", "data/raw/n.wav")
    assert not row["decodable"]
    assert row["decode_error"].startswith("not decodable audio (")
    assert str(tmp_path) not in row["decode_error"]  # the relative path, not the absolute one
    assert inspect_clip(tmp_path / "gone.wav", "gone.wav")["decode_error"] == "file not found"


# ------------------------------------------------------------------------ a small stage run
GENRES = ("a", "b", "c")


def _write_raw(root: Path, per_genre: dict[str, int], silent: str | None = None) -> None:
    raw = root / "data" / "raw"
    rows = []
    k = 0
    for genre, n in per_genre.items():
        (raw / genre).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            k += 1
            path = raw / genre / f"{genre}.{i:05d}.wav"
            wave = np.zeros(4 * SR, np.float32) if path.stem == silent else _sine(4.0, 90 + 13 * k)
            sf.write(path, wave, SR, subtype="PCM_16")
            data = path.read_bytes()
            rows.append(
                {
                    "path": path.relative_to(root).as_posix(),
                    "genre": genre,
                    "track_id": path.stem,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)


def _params(**validate_kwargs: object) -> Params:
    return Params(
        data=DataParams(source="synthetic", genres=GENRES),
        validate=ValidateParams(**validate_kwargs),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("small")
    # With the default split seed the 11 accepted track ids hash to train 6, val 2, test 3: every
    # split is non-empty, so the stage passes (tests/code/test_split.py pins the rule itself).
    _write_raw(root, {"a": 4, "b": 4, "c": 4}, silent="b.00002")
    layout = Layout.from_root(root)
    summary = validate(_params(), layout, progress=False)
    return layout, summary


def test_reports_agree_with_the_table(small_run) -> None:
    layout, summary = small_run
    reports = layout.validation_reports
    clips = pd.read_csv(reports / "clips.csv")
    manifest = pd.read_csv(layout.validated_manifest)
    saved = json.loads((reports / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary.to_dict()))

    assert summary.n_files == len(clips) == 12
    assert summary.n_quarantined == int((clips["status"] == "quarantined").sum()) == 1
    assert summary.n_accepted == len(manifest) == 11
    assert summary.quarantine_share == pytest.approx(1 / 12, abs=1e-6)
    assert summary.per_split == manifest["split"].value_counts().to_dict()
    assert summary.per_split == {"train": 6, "val": 2, "test": 3}
    for genre in GENRES:
        rows = manifest[manifest["genre"] == genre]
        assert summary.per_genre[genre]["accepted"] == len(rows)
        for split in ("train", "val", "test"):
            assert summary.per_genre[genre][split] == int((rows["split"] == split).sum())
    assert summary.scheme == "stratified" and summary.passed
    assert not summary.gx_success  # the silent clip fails an expectation

    gx = json.loads((reports / "gx_result.json").read_text())
    clip_result = gx["genreflow_clips"]
    assert clip_result["success"] is False
    failed = {
        r["expectation_config"]["meta"]["check"]: [
            item["path"] for item in r["result"]["unexpected_index_list"]
        ]
        for r in clip_result["results"]
        if not r["success"]
    }
    assert failed == {"not_silent": ["data/raw/b/b.00002.wav"]}
    assert gx["genreflow_class_balance"]["success"] is True
    silent = clips.set_index("path").loc["data/raw/b/b.00002.wav"]
    assert silent["reason"] == "silent: RMS -inf dBFS < -60"

    docs = reports / "data_docs"
    index = (docs / "index.html").read_text()
    assert "genreflow_clips" in index and "genreflow_class_balance" in index
    assert list(docs.glob("validations/genreflow_clips/**/*.html"))


def test_validated_manifest_is_deterministic(small_run, tmp_path: Path) -> None:
    layout, _ = small_run
    _write_raw(tmp_path, {"a": 4, "b": 4, "c": 4}, silent="b.00002")
    again = Layout.from_root(tmp_path)
    validate(_params(), again, progress=False, workers=1)
    assert again.validated_manifest.read_bytes() == layout.validated_manifest.read_bytes()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_gx_reports_are_content_only(small_run, tmp_path: Path, monkeypatch) -> None:
    """Same data, another directory, another moment and time zone: the same report bytes.

    gx_result.json and data_docs/ are DVC outputs; GX would put its run time, load time, random
    ids and page timestamps into them. The run is named after the raw manifest instead.
    """
    import time

    layout, _ = small_run
    _write_raw(tmp_path, {"a": 4, "b": 4, "c": 4}, silent="b.00002")
    again = Layout.from_root(tmp_path)
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        validate(_params(), again, progress=False, workers=1)
    finally:
        monkeypatch.undo()
        time.tzset()

    first, second = layout.validation_reports, again.validation_reports
    assert (second / "gx_result.json").read_bytes() == (first / "gx_result.json").read_bytes()
    docs = _tree_bytes(first / "data_docs")
    assert _tree_bytes(second / "data_docs") == docs
    # still says which data were validated, and nothing of the machine or the moment
    sha = hashlib.sha256(layout.raw_manifest.read_bytes()).hexdigest()
    run_dirs = {Path(name).parts[2] for name in docs if name.startswith("validations/")}
    assert run_dirs == {f"raw-manifest-sha256-{sha[:16]}"}
    pages = [body.decode() for name, body in docs.items() if name.endswith(".html")]
    text = (first / "gx_result.json").read_text() + "".join(pages)
    assert str(layout.root) not in text and str(again.root) not in text
    assert time.strftime("%Y%m%d") not in text and "ge_load_time" not in text


def test_parallel_and_serial_decoding_agree(small_run) -> None:
    layout, _ = small_run
    manifest = pd.read_csv(layout.raw_manifest)
    serial = decode_table(manifest, layout.root, workers=1, progress=False)
    parallel = decode_table(manifest, layout.root, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial["path"]) == sorted(manifest["path"])


def test_class_imbalance_fails_with_counts(tmp_path: Path) -> None:
    _write_raw(tmp_path, {"a": 6, "b": 6, "c": 2})
    layout = Layout.from_root(tmp_path)
    with pytest.raises(ValidationFailed) as info:
        validate(_params(class_balance_tolerance=0.5), layout, progress=False, workers=1)
    message = str(info.value)
    assert "classes are not balanced" in message
    assert "a=6, b=6, c=2" in message and "at least 3" in message
    assert not layout.validated_manifest.exists()
    summary = json.loads((layout.validation_reports / "summary.json").read_text())
    assert summary["class_balance_ok"] is False and summary["passed"] is False


def test_missing_or_malformed_raw_manifest(tmp_path: Path) -> None:
    layout = Layout.from_root(tmp_path)
    with pytest.raises(ValidationFailed, match="raw manifest not found"):
        validate(_params(), layout, progress=False)
    layout.raw_dir.mkdir(parents=True)
    layout.raw_manifest.write_text("path,genre\ndata/raw/a/x.wav,a\n")
    with pytest.raises(ValidationFailed, match=r"missing column\(s\) \['track_id', 'bytes'"):
        validate(_params(), layout, progress=False)


def test_empty_split_fails(tmp_path: Path) -> None:
    # Each track's split is a hash of its id, so which tiny corpus leaves a split empty is luck;
    # zero fractions leave val and test empty whatever the hash says.
    _write_raw(tmp_path, {"a": 2, "b": 2, "c": 2})
    params = Params(
        data=DataParams(source="synthetic", genres=GENRES),
        validate=ValidateParams(
            split=SplitParams(scheme="stratified", val_fraction=0.0, test_fraction=0.0)
        ),
    )
    with pytest.raises(ValidationFailed, match=r"split \['val', 'test'\] would be empty"):
        validate(params, Layout.from_root(tmp_path), progress=False, workers=1)
