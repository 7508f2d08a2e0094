"""Plant one of each data fault in a tiny raw directory and check the validate stage catches it.

Every fault gets its own file; the assertions name the exact reason a user would read in
``quarantine.csv``, and that ``data/raw`` is byte-for-byte unchanged afterwards. Each Great
Expectations clip check has at least one planted file that only it catches.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreflow.core.config import DataParams, Params, SplitParams, ValidateParams
from genreflow.core.paths import Layout
from genreflow.validation import ValidationFailed, validate

SR = 8000
GENRES = ("blues", "classical", "rock")


def _tone(seconds: float, freq: float, seed: int, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(0.0, 0.02, t.size)
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _write_manifest(root: Path) -> None:
    raw = root / "data" / "raw"
    rows = []
    for f in sorted(p for p in raw.rglob("*") if p.is_file() and p.name != "manifest.csv"):
        data = f.read_bytes()
        rows.append(
            {
                "path": _rel(f, root),
                "genre": f.parent.name,
                "track_id": f.name.rsplit(".", 1)[0],
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)


def _tree_hashes(directory: Path) -> dict[str, str]:
    return {
        _rel(p, directory): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# path relative to data/raw -> (expected status, substring of the expected reason)
EXPECTED = {
    "blues/blues.00090.wav": ("quarantined", "not decodable audio ("),
    "classical/classical.00091.wav": (
        "quarantined",
        # 8 s x 8 kHz x 2 bytes declared; half of the 44-byte header + data is left, minus header
        "truncated: header declares 128000 bytes of audio data, file holds 63978",
    ),
    "rock/rock.00092.wav": ("quarantined", "empty file (0 bytes)"),
    "blues/blues.00093.wav": ("quarantined", "not decodable audio ("),
    "classical/classical.00094.wav": ("quarantined", "silent: RMS -inf dBFS < -60"),
    "rock/rock.00095.wav": ("quarantined", "clipped: "),
    "blues/blues.00096.wav": ("accepted", ""),
    "rock/rock.00097.wav": ("quarantined", "duplicate of data/raw/rock/rock.00000.wav"),
    "polka/polka.00000.wav": ("quarantined", "unknown genre 'polka' (not in data.genres)"),
    "classical/classical.00098.wav": ("quarantined", "non-finite samples: 12 NaN, 0 ±inf"),
    "blues/blues.00099.wav": ("quarantined", "non-finite samples: 0 NaN, 3 ±inf"),
    "blues/blues.00100.wav": ("quarantined", "too short: 1.50 s < min_duration_s 3 s"),
    "classical/classical.00101.wav": ("quarantined", "too long: 45.00 s > max_duration_s 40 s"),
    "rock/rock.00102.wav": ("quarantined", "unsupported sample rate 12000 Hz"),
    "blues/blues.00103.wav": ("quarantined", "too many channels: 3 > max_channels 2"),
    "classical/classical.00104.wav": ("quarantined", "checksum mismatch: file sha256 "),
}
N_QUARANTINED, N_FILES, N_ACCEPTED = 15, 28, 13  # 12 good clips + the stereo one are accepted
SHARE = N_QUARANTINED / N_FILES  # 53.6%: the module fixture allows 60%
RATES = "[8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]"  # ValidateParams default
# Format and integrity faults: kind -> (path, the GX check that flags it, the exact reason).
# A checksum reason quotes both hashes, so the test builds it from the file and the manifest.
GX_FAULTS = {
    "too_short": ("blues/blues.00100.wav", "duration", "too short: 1.50 s < min_duration_s 3 s"),
    "too_long": (
        "classical/classical.00101.wav",
        "duration",
        "too long: 45.00 s > max_duration_s 40 s",
    ),
    "sample_rate": (
        "rock/rock.00102.wav",
        "sample_rate",
        f"unsupported sample rate 12000 Hz (not in validate.sample_rates {RATES})",
    ),
    "channels": ("blues/blues.00103.wav", "channels", "too many channels: 3 > max_channels 2"),
    "checksum": ("classical/classical.00104.wav", "checksum", None),
}
# What each file really is, read back with soundfile: (seconds, sample rate, channels).
GX_FAULT_AUDIO = {
    "too_short": (1.5, SR, 1),
    "too_long": (45.0, SR, 1),
    "sample_rate": (4.0, 12000, 1),
    "channels": (4.0, SR, 3),
    "checksum": (4.0, SR, 1),
}
# Float WAVs with NaN or +-inf samples: (path, expected reason, its NaN and non-finite counts).
NONFINITE = {
    "nan": (
        "classical/classical.00098.wav",
        "non-finite samples: 12 NaN, 0 ±inf (float audio with NaN/inf values)",
        12,
        12,
    ),
    "inf": (
        "blues/blues.00099.wav",
        "non-finite samples: 0 NaN, 3 ±inf (float audio with NaN/inf values)",
        0,
        3,
    ),
}


def build_raw(root: Path) -> None:
    """Four good clips per genre plus one planted fault per row of :data:`EXPECTED`."""
    raw = root / "data" / "raw"
    for gi, genre in enumerate(GENRES):
        (raw / genre).mkdir(parents=True)
        for i in range(4):
            wave = _tone(4.0, 220.0 + 40 * i + 7 * gi, seed=10 * gi + i)
            sf.write(raw / genre / f"{genre}.{i:05d}.wav", wave, SR, subtype="PCM_16")
    rng = np.random.default_rng(0)

    # Corrupt: a RIFF/WAVE header followed by random bytes (like jazz.00054 in the Kaggle copy).
    (raw / "blues/blues.00090.wav").write_bytes(
        b"RIFF" + struct.pack("<I", 40000) + b"WAVE" + rng.bytes(40000)
    )
    # Truncated: an 8 s clip cut in half (still 4 s long, so only the header gives it away).
    full = root / "full.wav"
    sf.write(full, _tone(8.0, 330.0, seed=99), SR, subtype="PCM_16")
    data = full.read_bytes()
    (raw / "classical/classical.00091.wav").write_bytes(data[: len(data) // 2])
    full.unlink()
    # Zero bytes, and a text file named .wav.
    (raw / "rock/rock.00092.wav").write_bytes(b"")
    (raw / "blues/blues.00093.wav").write_text("this is a text file, not audio\n" * 20)
    # Digital silence; a sine driven 3x past full scale and clipped.
    sf.write(raw / "classical/classical.00094.wav", np.zeros(4 * SR, np.float32), SR)
    clipped = np.clip(_tone(4.0, 200.0, seed=5, amp=3.0), -1.0, 1.0)
    sf.write(raw / "rock/rock.00095.wav", clipped, SR, subtype="PCM_16")
    # Stereo 44.1 kHz: valid (resampling and down-mix happen later).
    stereo = np.stack([_tone(5.0, 440.0, 7, sr=44100), _tone(5.0, 550.0, 8, sr=44100)], axis=1)
    sf.write(raw / "blues/blues.00096.wav", stereo, 44100, subtype="PCM_16")
    # Duplicate: rock.00000's audio re-encoded as float WAV (different bytes, same samples).
    same, _ = sf.read(raw / "rock/rock.00000.wav", dtype="float32")
    sf.write(raw / "rock/rock.00097.wav", same, SR, subtype="FLOAT")
    # A genre folder that is not configured.
    (raw / "polka").mkdir()
    sf.write(raw / "polka/polka.00000.wav", _tone(4.0, 600.0, seed=3), SR, subtype="PCM_16")
    # Float WAVs that decode fine but hold NaN / +-inf: a normal tone, a few samples poisoned.
    with_nan = _tone(4.0, 260.0, seed=11)
    with_nan[np.arange(12) * 2000 + 5] = np.nan
    sf.write(raw / "classical/classical.00098.wav", with_nan, SR, subtype="FLOAT")
    with_inf = _tone(4.0, 270.0, seed=12)
    with_inf[[100, 9000, 30000]] = [np.inf, -np.inf, np.inf]
    sf.write(raw / "blues/blues.00099.wav", with_inf, SR, subtype="FLOAT")
    # Out of validate's bounds: 1.5 s and 45 s long (min 3 s, max 40 s here), a 12 kHz recording
    # (not in validate.sample_rates) and a 3-channel file (max_channels 2); all good audio.
    sf.write(raw / "blues/blues.00100.wav", _tone(1.5, 280.0, seed=13), SR, subtype="PCM_16")
    too_long = _tone(45.0, 290.0, seed=14)
    sf.write(raw / "classical/classical.00101.wav", too_long, SR, subtype="PCM_16")
    sf.write(raw / "rock/rock.00102.wav", _tone(4.0, 300.0, 15, sr=12000), 12000, "PCM_16")
    three = np.stack([_tone(4.0, f, 16 + k) for k, f in enumerate((310.0, 320.0, 340.0))], 1)
    sf.write(raw / "blues/blues.00103.wav", three, SR, subtype="PCM_16")
    # Changed after fetch: a good clip, recorded in the manifest below, then one bit flipped
    # in a sample in the middle (bit rot): still decodable, same length, other sha256.
    changed = raw / "classical/classical.00104.wav"
    sf.write(changed, _tone(4.0, 350.0, seed=17), SR, subtype="PCM_16")
    _write_manifest(root)
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))


#: The default max_duration_s (3600 s) accepts full-length tracks; a 40-s bound here keeps a
#: small planted file "too long" (tests/data/test_long_tracks.py checks the default passes it).
MAX_DURATION_S = 40.0


def make_params(max_share: float) -> Params:
    return Params(
        data=DataParams(source="local", genres=GENRES),
        validate=ValidateParams(
            max_duration_s=MAX_DURATION_S,
            max_quarantine_share=max_share,
            split=SplitParams(scheme="stratified"),
        ),
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("planted")
    build_raw(root)
    layout = Layout.from_root(root)
    before = _tree_hashes(layout.raw_dir)
    summary = validate(make_params(0.6), layout, progress=False)
    return layout, summary, before


def test_each_planted_fault_gets_its_reason(planted) -> None:
    layout, _, _ = planted
    clips = pd.read_csv(layout.validation_reports / "clips.csv", keep_default_na=False)
    by_path = clips.set_index("path")
    for rel, (status, reason) in EXPECTED.items():
        row = by_path.loc[f"data/raw/{rel}"]
        assert row["status"] == status, (rel, row["reason"])
        assert reason in row["reason"], (rel, row["reason"])
    # The truncated clip is 4 s long: the header check alone caught it.
    assert by_path.loc["data/raw/classical/classical.00091.wav", "reason"].count(";") == 0
    # The original of the duplicate stays.
    assert by_path.loc["data/raw/rock/rock.00000.wav", "status"] == "accepted"
    # The clipped share, measured independently of the stage.
    wave, _ = sf.read(layout.root / "data/raw/rock/rock.00095.wav", dtype="float32")
    share = np.mean(np.abs(wave) >= 0.999)
    assert by_path.loc["data/raw/rock/rock.00095.wav", "reason"] == (
        f"clipped: {100 * share:.1f}% of samples at full scale > 1%"
    )


def test_quarantine_csv_lists_exactly_the_faults(planted) -> None:
    layout, summary, _ = planted
    q = pd.read_csv(layout.validation_reports / "quarantine.csv")
    assert list(q.columns[:4]) == ["path", "genre", "track_id", "reason"]
    expected = {f"data/raw/{r}" for r, (s, _) in EXPECTED.items() if s == "quarantined"}
    assert set(q["path"]) == expected
    assert (q["status"] == "quarantined").all()
    assert summary.n_quarantined == len(expected) == N_QUARANTINED
    assert summary.n_files == N_FILES and summary.n_accepted == N_ACCEPTED
    assert summary.n_excluded == 0 and summary.passed
    assert summary.quarantine_share == round(SHARE, 6)


def test_validated_manifest_excludes_faults_and_keeps_stereo(planted) -> None:
    layout, _, _ = planted
    m = pd.read_csv(layout.validated_manifest)
    bad = {f"data/raw/{r}" for r, (s, _) in EXPECTED.items() if s == "quarantined"}
    assert not bad & set(m["path"])
    assert list(m["path"]) == sorted(m["path"])
    stereo = m.set_index("path").loc["data/raw/blues/blues.00096.wav"]
    assert (stereo["sample_rate"], stereo["channels"]) == (44100, 2)
    assert set(m["split"]) == {"train", "val", "test"}
    for col in ("path", "genre", "track_id", "split", "duration_s", "sample_rate", "sha256"):
        assert col in m.columns


@pytest.mark.parametrize("kind", sorted(NONFINITE))
def test_nonfinite_float_audio_gets_its_own_reason(planted, kind: str) -> None:
    layout, _, before = planted
    rel, reason, n_nan, n_nonfinite = NONFINITE[kind]
    path = layout.raw_dir / rel
    # The fault really is in the file: soundfile kept the NaN / inf samples.
    wave, _ = sf.read(path, dtype="float32")
    assert (int(np.isnan(wave).sum()), int((~np.isfinite(wave)).sum())) == (n_nan, n_nonfinite)

    clips = pd.read_csv(layout.validation_reports / "clips.csv", keep_default_na=False)
    row = clips.set_index("path").loc[f"data/raw/{rel}"]
    assert row["status"] == "quarantined"
    # Its own reason and nothing else: a NaN must not read as "silent", an inf not as "clipped".
    assert row["reason"] == reason
    assert "silent" not in row["reason"] and "clipped" not in row["reason"]
    assert (int(row["nan_samples"]), int(row["nonfinite_samples"])) == (n_nan, n_nonfinite)
    # Level and clipping are measured on the finite samples: a 0.3 tone, not silence or -inf.
    assert -15.0 < float(row["rms_dbfs"]) < -8.0 and float(row["clipping_ratio"]) == 0.0

    # Great Expectations, not Python code beside it, flagged exactly the two float files.
    gx = json.loads((layout.validation_reports / "gx_result.json").read_text())
    flagged = [
        item["path"]
        for r in gx["genreflow_clips"]["results"]
        if r["expectation_config"]["meta"]["check"] == "finite"
        for item in r["result"]["unexpected_index_list"]
    ]
    assert sorted(flagged) == sorted(f"data/raw/{r}" for r, *_ in NONFINITE.values())
    # And the raw file is byte-for-byte what the fetch stage recorded.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before[rel]
    manifest = pd.read_csv(layout.raw_manifest).set_index("path")
    assert before[rel] == manifest.loc[f"data/raw/{rel}", "sha256"]


def _gx_flagged(layout: Layout, check: str) -> tuple[bool, list[str]]:
    """The GX result for the clip expectation tagged ``check``: (success, paths it flagged)."""
    gx = json.loads((layout.validation_reports / "gx_result.json").read_text())
    (res,) = [
        r
        for r in gx["genreflow_clips"]["results"]
        if r["expectation_config"]["meta"]["check"] == check
    ]
    return res["success"], sorted(item["path"] for item in res["result"]["unexpected_index_list"])


@pytest.mark.parametrize("kind", list(GX_FAULTS))
def test_format_and_integrity_faults_get_their_reason(planted, kind: str) -> None:
    layout, summary, before = planted
    rel, check, reason = GX_FAULTS[kind]
    path = layout.raw_dir / rel
    key = f"data/raw/{rel}"
    recorded = pd.read_csv(layout.raw_manifest).set_index("path").loc[key, "sha256"]
    # The fault really is in the file, read back without the stage.
    info = sf.info(str(path))
    assert (info.duration, info.samplerate, info.channels) == GX_FAULT_AUDIO[kind]
    if kind == "checksum":
        # Bytes changed after the manifest recorded them.
        current = hashlib.sha256(path.read_bytes()).hexdigest()
        assert current != recorded
        reason = (
            f"checksum mismatch: file sha256 {current[:12]}... differs from the raw "
            f"manifest's {recorded[:12]}... (changed after fetch?)"
        )
    else:
        assert before[rel] == recorded

    # quarantine.csv gives exactly this reason and no other (the audio itself is fine).
    q = pd.read_csv(layout.validation_reports / "quarantine.csv").set_index("path")
    assert q.loc[key, "status"] == "quarantined"
    assert q.loc[key, "reason"] == reason
    # The per-clip table GX checked holds the measured values behind that reason.
    row = pd.read_csv(layout.validation_reports / "clips.csv").set_index("path").loc[key]
    measured = (float(row["duration_s"]), int(row["sample_rate"]), int(row["channels"]))
    assert measured == GX_FAULT_AUDIO[kind]
    assert (row["checksum_error"] == reason) == (kind == "checksum")

    # Great Expectations, not Python code beside it, flagged the file under this check.
    success, flagged = _gx_flagged(layout, check)
    assert not success
    same_check = sorted(f"data/raw/{r}" for r, c, _ in GX_FAULTS.values() if c == check)
    assert flagged == same_check

    # validate left the raw file byte-for-byte as it found it (planted change included).
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before[rel]


def test_raw_files_are_untouched(planted) -> None:
    layout, _, before = planted
    assert _tree_hashes(layout.raw_dir) == before


def test_share_threshold_fails_with_files_named(tmp_path: Path) -> None:
    build_raw(tmp_path)
    layout = Layout.from_root(tmp_path)
    before = _tree_hashes(layout.raw_dir)
    # A stale manifest from an earlier successful run must not survive a failed one.
    layout.validated_manifest.parent.mkdir(parents=True)
    layout.validated_manifest.write_text("path,genre,track_id,split\n")
    with pytest.raises(ValidationFailed) as info:
        validate(make_params(0.1), layout, progress=False, workers=1)
    message = str(info.value)
    assert f"{N_QUARANTINED} of {N_FILES} files quarantined ({SHARE:.1%})" in message
    assert "15 of 28 files quarantined (53.6%)" in message
    assert "max_quarantine_share (10.0%)" in message
    assert "data/raw/blues/blues.00090.wav: not decodable audio" in message
    assert f"... and {N_QUARANTINED - 8} more" in message  # the listing stops at 8 files
    assert "quarantine.csv" in message
    assert not layout.validated_manifest.exists()
    # The reports that help fix the data are still written.
    reports = layout.validation_reports
    assert len(pd.read_csv(reports / "quarantine.csv")) == N_QUARANTINED
    assert (reports / "gx_result.json").is_file()
    assert (reports / "data_docs" / "index.html").is_file()
    assert _tree_hashes(layout.raw_dir) == before


def _tone_at(rms_dbfs: float, freq: float, seconds: float = 4.0) -> np.ndarray:
    """A pure sine whose RMS is exactly ``rms_dbfs`` (a sine's RMS is its amplitude / sqrt 2)."""
    t = np.arange(int(seconds * SR)) / SR
    amp = np.sqrt(2.0) * 10.0 ** (rms_dbfs / 20.0)
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_rms_floor_quarantines_a_quiet_tone_and_keeps_a_soft_one(tmp_path: Path) -> None:
    """The ``min_rms_dbfs`` floor (-60 dBFS by default) is a level, not a test for digital
    silence: a real tone at -70 dBFS RMS is quarantined as silent, naming its level, while one
    at -50 dBFS passes. Only all-zero audio is planted above, which any floor catches."""
    assert ValidateParams().min_rms_dbfs == -60.0
    raw = tmp_path / "data" / "raw"
    for gi, genre in enumerate(GENRES):
        (raw / genre).mkdir(parents=True)
        for i in range(4):
            wave = _tone(4.0, 220.0 + 40 * i + 7 * gi, seed=10 * gi + i)
            sf.write(raw / genre / f"{genre}.{i:05d}.wav", wave, SR, subtype="PCM_16")
    # FLOAT WAVs keep the scaled samples exactly (16-bit would add quantisation noise).
    quiet, soft = "blues/blues.00200.wav", "classical/classical.00201.wav"
    sf.write(raw / quiet, _tone_at(-70.0, 330.0), SR, subtype="FLOAT")
    sf.write(raw / soft, _tone_at(-50.0, 370.0), SR, subtype="FLOAT")
    _write_manifest(tmp_path)
    layout = Layout.from_root(tmp_path)

    summary = validate(make_params(0.6), layout, progress=False, workers=1)

    assert summary.n_quarantined == 1 and summary.n_accepted == 13
    q = pd.read_csv(layout.validation_reports / "quarantine.csv").set_index("path")
    assert list(q.index) == [f"data/raw/{quiet}"]
    assert q.loc[f"data/raw/{quiet}", "reason"] == "silent: RMS -70.0 dBFS < -60"
    clips = pd.read_csv(layout.validation_reports / "clips.csv", keep_default_na=False)
    row = clips.set_index("path").loc[f"data/raw/{soft}"]
    assert row["status"] == "accepted" and row["reason"] == ""
    assert float(row["rms_dbfs"]) == pytest.approx(-50.0, abs=0.01)
    assert f"data/raw/{soft}" in set(pd.read_csv(layout.validated_manifest)["path"])
    # Great Expectations flagged the quiet tone under its level check, and only it.
    assert _gx_flagged(layout, "not_silent") == (False, [f"data/raw/{quiet}"])
