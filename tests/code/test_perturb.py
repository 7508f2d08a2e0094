"""Each robustness perturbation does what its name claims, measured on the file it writes.

Every check writes a real file with the perturbation and decodes it with
``genreflow.audio.read_audio`` (the served path's decoder), so it pins the file a model is
scored on, not an in-memory intermediate.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.audio import read_audio
from genreflow.core.config import ConfigError, RobustnessParams
from genreflow.robustness.perturb import (
    FORMATS,
    STEREO_DELAY_S,
    STEREO_LEVEL_DB,
    Perturbation,
    perturbations,
)

SR = 22050


def _clip(seconds: float = 1.0, amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """A (1, samples) clip: two tones and a little noise, peaking near ``amplitude``."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = 0.6 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t)
    x = x + 0.05 * rng.standard_normal(t.size)
    return (amplitude * x / np.abs(x).max())[None].astype(np.float32)


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


def _written(p: Perturbation, wave: np.ndarray, tmp: Path, seed: int = 0):
    path = p.write(wave, SR, tmp, "clip", seed)
    decoded, rate = read_audio(path)
    return path, decoded, rate


def _band_db(x: np.ndarray, rate: int, low: float, high: float) -> float:
    """Power in [low, high) Hz relative to the whole signal's power, in dB."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    band = power[(freqs >= low) & (freqs < high)].sum()
    return float(10 * np.log10(max(band, 1e-30) / power.sum()))


@pytest.mark.parametrize("db", [-30.0, -20.0, -10.0])
def test_gain_changes_the_level_by_its_decibels(tmp_path, db):
    wave = _clip()
    path, out, rate = _written(Perturbation("gain", db), wave, tmp_path)
    assert path.suffix == ".wav" and rate == SR and out.shape == wave.shape
    assert _rms_db(out) - _rms_db(wave) == pytest.approx(db, abs=0.05)
    np.testing.assert_allclose(out, wave * 10 ** (db / 20), atol=2 / 32768)  # 16-bit PCM


def test_plus_6_db_clips_at_full_scale(tmp_path):
    wave = _clip(amplitude=0.9)
    _, out, _ = _written(Perturbation("gain", 6.0), wave, tmp_path)
    assert np.abs(out).max() <= 1.0
    hot = np.abs(wave) * 10 ** (6 / 20) > 1.0
    assert hot.mean() > 0.01  # the case is real: some samples would exceed full scale
    np.testing.assert_allclose(np.abs(out[hot]), 1.0, atol=2 / 32768)  # flat-topped, not wrapped
    assert (np.sign(out[hot]) == np.sign(wave[hot])).all()
    np.testing.assert_allclose(out[~hot], wave[~hot] * 10 ** (6 / 20), atol=2 / 32768)
    assert _rms_db(out) - _rms_db(wave) < 6.0  # clipping loses level


def test_stereo_is_two_slightly_different_channels(tmp_path):
    wave = _clip()
    path, out, rate = _written(Perturbation("stereo"), wave, tmp_path)
    assert sf.info(str(path)).channels == 2 and out.shape == (2, wave.shape[1]) and rate == SR
    delay = int(round(STEREO_DELAY_S * SR))
    level = 10 ** (STEREO_LEVEL_DB / 20)
    np.testing.assert_allclose(out[0], wave[0], atol=2 / 32768)
    np.testing.assert_allclose(out[1, delay:], level * wave[0, :-delay], atol=2 / 32768)
    assert np.abs(out[0] - out[1]).max() > 0.05  # not a plain copy


def test_stereo_of_a_stereo_clip_starts_from_its_down_mix(tmp_path):
    wave = np.concatenate([_clip(seed=1), _clip(seed=2)])
    _, out, _ = _written(Perturbation("stereo"), wave, tmp_path)
    np.testing.assert_allclose(out[0], wave.mean(axis=0), atol=2 / 32768)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_sample_rate_writes_the_file_at_that_rate(tmp_path, rate):
    wave = _clip()
    path, out, got = _written(Perturbation("sample_rate", rate), wave, tmp_path)
    assert got == rate == sf.info(str(path)).samplerate
    assert out.shape[1] == pytest.approx(wave.shape[1] * rate / SR, abs=1)
    assert _rms_db(out) == pytest.approx(_rms_db(wave), abs=0.1)  # same level, new rate


def test_16_khz_keeps_nothing_above_8_khz(tmp_path):
    """A tone above the new Nyquist frequency is removed, not aliased; one below stays."""
    t = np.arange(SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 3000 * t) + 0.3 * np.sin(2 * np.pi * 10000 * t))[None]
    _, out, rate = _written(Perturbation("sample_rate", 16000), wave.astype(np.float32), tmp_path)
    assert rate == 16000
    assert _band_db(out[0], rate, 2900, 3100) > -3.5  # the 3 kHz tone: half the power
    assert _band_db(out[0], rate, 5900, 6100) < -60  # 10 kHz would alias to 6 kHz
    assert _rms_db(out) == pytest.approx(_rms_db(wave) - 3.01, abs=0.1)
    # the 22.05 kHz source had the 10 kHz tone (the check above would see a leak)
    assert _band_db(wave[0], SR, 9900, 10100) > -3.5


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_round_trips_through_the_served_decoder(tmp_path, fmt):
    wave = _clip()
    path, out, rate = _written(Perturbation("format", fmt), wave, tmp_path)
    container, subtype = FORMATS[fmt]
    info = sf.info(str(path))
    assert path.suffix == f".{fmt}" and (info.format, info.subtype) == (container, subtype)
    assert rate == SR and out.shape == wave.shape
    if fmt in ("wav", "flac"):  # lossless 16-bit
        np.testing.assert_allclose(out, wave, atol=2 / 32768)
    else:  # lossy, but the same music
        assert np.corrcoef(out[0], wave[0])[0, 1] > 0.95
        assert _rms_db(out) == pytest.approx(_rms_db(wave), abs=1.0)


def test_noise_is_at_its_level_and_seeded(tmp_path):
    wave = _clip()
    p = Perturbation("noise", -40.0)
    (_, a, _), (_, b, _), (_, c, _) = (_written(p, wave, tmp_path, seed) for seed in (5, 5, 6))
    assert _rms_db(a - wave) == pytest.approx(-40.0, abs=0.2)  # re full scale (RMS of 1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noise = (a - wave)[0]
    assert _band_db(noise, SR, 0, SR / 4) == pytest.approx(-3.0, abs=0.5)  # white: flat


def test_perturbations_follow_the_params_and_are_valid_mlflow_names():
    from mlflow.utils.validation import validate_param_and_metric_name

    names = [p.name for p in perturbations(RobustnessParams())]
    assert names == [
        "gain_-30db",
        "gain_-20db",
        "gain_-10db",
        "gain_6db",
        "stereo",
        "sr_16000",
        "sr_44100",
        "sr_48000",
        "format_wav",
        "format_flac",
        "format_ogg",
        "format_mp3",
        "noise_-40db",
    ]
    assert all(validate_param_and_metric_name(f"robust.{n}.agreement") for n in names)
    fewer = RobustnessParams(gains_db=(), sample_rates=(), formats=("ogg",), stereo=False)
    assert [p.name for p in perturbations(fewer)] == ["format_ogg", "noise_-40db"]


def test_a_perturbation_listed_twice_is_a_config_error():
    with pytest.raises(ConfigError, match=r"evaluate.robustness: \['gain_6db'\]"):
        perturbations(replace(RobustnessParams(), gains_db=(6.0, 6)))


def test_long_ogg_is_written_without_crashing(tmp_path):
    """libsndfile's Vorbis encoder segfaults on one write of > ~2**21 frames; a full-length
    track re-encoded to OGG must still work. Run in a child so a crash fails only this test."""
    import subprocess
    import sys

    code = (
        "import numpy as np, pathlib\n"
        "from genreflow.robustness.perturb import write_audio\n"
        "from genreflow.audio import read_audio\n"
        "w = (0.1 * np.random.default_rng(0).standard_normal((1, 48000 * 50))).astype('float32')\n"
        f"p = write_audio(pathlib.Path({str(tmp_path / 'long.ogg')!r}), w, 48000, 'ogg')\n"
        "x, sr = read_audio(p)\n"
        "assert sr == 48000 and x.shape[1] == 48000 * 50, x.shape\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
