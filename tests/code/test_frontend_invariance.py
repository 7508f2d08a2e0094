"""A gain change must not move the normalised features (``features.loudness: segment_peak``).

The front-end is shared by training and serving, so if ``segments(wave * g)`` equals
``segments(wave)`` the model's decision cannot depend on the file's level (short of clipping,
which changes the waveform). The absolute front-end (``loudness: none``) is checked to differ,
so these tests fail if the normalisation stops working rather than passing vacuously.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genreflow.core.config import FeatureParams, SyntheticParams
from genreflow.features.frontend import LogMelFrontend
from genreflow.sources.synthetic.corpus import render_clip

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]
NORMALISED = FeatureParams()  # the repo's front-end: 22.05 kHz, 96 mels, segment_peak
ABSOLUTE = replace(NORMALISED, loudness="none")
GAINS_DB = [-30.0, -20.0, -10.0, -6.0, -3.0, -0.5, 0.0]


def _music(genre: str) -> torch.Tensor:
    """A 6-s synthetic-corpus clip (three segments) holding half a second of digital silence."""
    wave = render_clip(genre, 0, SyntheticParams(duration_s=6.0, sample_rate=22050)).copy()
    wave[22050 : 22050 + 11025] = 0.0
    assert np.abs(wave).max() < 1.0  # no gain <= 0 dB can clip it
    return torch.from_numpy(wave)


def _float16_step(x: torch.Tensor) -> torch.Tensor:
    """One float16 ulp at each value's magnitude: how far two roundings of nearly equal
    float32 values can land apart."""
    return torch.from_numpy(np.spacing(x.abs().numpy().astype(np.float16)).astype(np.float32))


@pytest.fixture(scope="module", params=["classical", "metal"])
def music(request) -> torch.Tensor:
    return _music(request.param)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gain_db", GAINS_DB)
def test_gain_does_not_move_normalised_segments(music, device, gain_db):
    frontend = LogMelFrontend(NORMALISED).to(device)
    wave = music.to(device)
    gain = float(10 ** (gain_db / 20))
    ref = frontend.segments(wave).cpu()
    out = frontend.segments(wave * gain).cpu()
    assert out.shape == ref.shape and ref.shape[0] > 1
    step = torch.maximum(_float16_step(ref), _float16_step(out))
    diff = (out - ref).abs()
    assert bool((diff <= step).all()), (
        f"{gain_db} dB moved {int((diff > step).sum())} values, by up to {float(diff.max()):.3g} dB"
    )
    # and nearly all bit-identical: rounding only flips values sitting on a float16 boundary
    assert float((diff == 0).float().mean()) > 0.95


@pytest.mark.parametrize("gain_db", [-30.0, -10.0])
def test_the_absolute_front_end_moves_with_gain(music, gain_db):
    """The control: without normalisation the same gain shifts the features by its dB."""
    frontend = LogMelFrontend(ABSOLUTE)
    ref = frontend.segments(music)
    out = frontend.segments(music * float(10 ** (gain_db / 20)))
    loud = ref > ref.amax() - 40  # away from the -100 dB floor, the shift is the gain itself
    shift = (out - ref)[loud]
    assert float(shift.mean()) == pytest.approx(gain_db, abs=0.1)
    assert not torch.allclose(out, ref, atol=1.0)


def test_normalised_segments_are_peak_relative_and_floored(music):
    seg = LogMelFrontend(NORMALISED).segments(music)
    peaks = seg.amax(dim=(-2, -1))
    silent = (seg == -NORMALISED.top_db).all(dim=(-2, -1))  # the digital silence, if cut whole
    assert bool((peaks[~silent] == 0).all())
    assert float(seg.min()) >= -NORMALISED.top_db
