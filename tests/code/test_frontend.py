"""The shared log-mel front-end: torchaudio-equivalent, batch-independent, segment geometry."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchaudio.transforms as T

from genreflow.core.config import FeatureParams
from genreflow.features.frontend import AMIN_DB, LogMelFrontend, n_segments

FP = FeatureParams(
    n_mels=32,
    n_fft=512,
    hop_length=128,
    f_max=8000.0,
    segment_s=0.5,
    segment_hop_s=0.25,
    sample_rate=16000,
)
ABSOLUTE = replace(FP, loudness="none")


def _tone(seconds: float, freq: float = 440.0, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return 0.3 * torch.sin(2 * torch.pi * freq * t)


def test_matches_torchaudio_melspectrogram_in_db():
    wave = torch.randn(2, 16000) * 0.1
    ref = T.AmplitudeToDB(stype="power", top_db=None)(
        T.MelSpectrogram(
            16000,
            n_fft=512,
            hop_length=128,
            n_mels=32,
            f_min=0.0,
            f_max=8000.0,
            norm="slaney",
            mel_scale="slaney",
        )(wave)
    ).clamp_min(AMIN_DB)
    out = LogMelFrontend(ABSOLUTE)(wave)
    assert out.shape == ref.shape
    # float16 rounding of dB values is the only difference
    assert torch.allclose(out, ref, atol=0.05)


def test_output_is_float16_exact_so_store_and_serving_agree():
    out = LogMelFrontend(FP)(torch.randn(8000) * 0.1)
    assert torch.equal(out, out.half().float())


def test_features_do_not_depend_on_the_batch():
    frontend = LogMelFrontend(FP)
    a, b = _tone(1.0, 440.0), _tone(1.0, 3000.0) * 10
    alone = frontend.segments(a)
    batched = frontend.segments(torch.stack([a, b]))[0]
    assert torch.equal(alone, batched)


@pytest.mark.parametrize("params", [FP, ABSOLUTE], ids=["segment_peak", "none"])
def test_segments_geometry_and_padding(params):
    frontend = LogMelFrontend(params)
    seg = frontend.segments(_tone(2.0))
    frames = 2 * 16000 // 128 + 1
    expected = n_segments(frames, FP.segment_frames, frontend.hop_frames)
    assert seg.shape == (expected, 32, FP.segment_frames)
    # the k-th segment is a window of the whole-clip spectrogram, normalised on its own
    whole = frontend.log_mel(_tone(2.0))
    k = 2
    start = k * frontend.hop_frames
    window = frontend.normalise(whole[:, start : start + FP.segment_frames])
    assert torch.equal(seg[k], window.half().float())
    # a clip shorter than a segment still gives one zero-padded segment
    short = frontend.segments(_tone(0.1))
    assert short.shape == (1, 32, FP.segment_frames)


def test_silence_is_floored_not_infinite():
    out = LogMelFrontend(ABSOLUTE)(torch.zeros(16000))
    assert torch.isfinite(out).all()
    assert float(out.min()) == AMIN_DB


def test_silent_segments_are_all_floor_when_normalised():
    seg = LogMelFrontend(FP).segments(torch.zeros(16000))
    assert torch.equal(seg, torch.full_like(seg, -FP.top_db))


def test_normalised_segments_peak_at_zero_and_floor_at_top_db():
    seg = LogMelFrontend(FP).segments(_tone(2.0) + 0.01 * torch.randn(32000))
    assert torch.equal(seg.amax(dim=(-2, -1)), torch.zeros(seg.shape[0]))
    assert float(seg.min()) >= -FP.top_db


def test_absolute_mode_keeps_the_old_features():
    """loudness: none is the front-end before normalisation existed: gain moves features."""
    frontend = LogMelFrontend(ABSOLUTE)
    wave = _tone(1.0)
    loud, quiet = frontend.segments(wave), frontend.segments(wave * 0.1)
    assert abs(float(loud.amax() - quiet.amax()) - 20.0) < 0.1


def test_louder_tone_raises_its_band():
    frontend = LogMelFrontend(ABSOLUTE)
    quiet, loud = frontend(_tone(1.0) * 0.1), frontend(_tone(1.0))
    band = int(np.argmax(loud.mean(-1).numpy()))
    assert float(loud[band].mean()) > float(quiet[band].mean()) + 15
