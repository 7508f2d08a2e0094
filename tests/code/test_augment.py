"""The recording-like augmentations (EQ, band limit, noise floor) on normalised features."""

from dataclasses import replace

import torch

from genreflow.core.config import AugmentParams
from genreflow.training.augment import add_noise_floor, augment_batch, band_limit, random_eq

TOP_DB = 80.0


def _features(batch: int = 6, mels: int = 32, frames: int = 40, seed: int = 0) -> torch.Tensor:
    """Peak-normalised dB features like the front-end's: peak 0, floor -TOP_DB."""
    g = torch.Generator().manual_seed(seed)
    x = -90 * torch.rand(batch, mels, frames, generator=g)
    x = x - x.amax(dim=(1, 2), keepdim=True)
    return x.clamp_min(-TOP_DB)


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_eq_keeps_peak_and_floor_and_changes_the_spectral_shape():
    x = _features()
    out = random_eq(x, 6.0, _gen())
    assert torch.allclose(out.amax(dim=(1, 2)), x.amax(dim=(1, 2)))
    assert bool((out >= x.amin(dim=(1, 2), keepdim=True) - 1e-6).all())
    band_shift = (out - x).mean(dim=2)  # (batch, mels): one gain per band
    assert float(band_shift.std(dim=1).mean()) > 0.3
    # the curve is smooth: neighbouring bands move together
    assert float(band_shift.diff(dim=1).abs().max()) < 3.0


def test_band_limit_floors_only_top_bands_of_hit_samples():
    x = _features(batch=200)
    out = band_limit(x, 0.5, _gen())
    changed = (out != x).any(dim=2)  # (batch, mels)
    hit = changed.any(dim=1)
    assert 0.3 < float(hit.float().mean()) < 0.7
    low = int(round(0.75 * x.shape[1]))
    assert not bool(changed[:, :low].any())  # never below the top quarter
    floors = x.amin(dim=(1, 2))
    for i in torch.nonzero(hit).flatten().tolist():
        first = int(torch.nonzero(changed[i]).min())
        assert torch.equal(out[i, first:], torch.full_like(out[i, first:], float(floors[i])))


def test_noise_floor_raises_quiet_cells_only():
    x = _features(batch=50)
    out = add_noise_floor(x, 1.0, -40.0, _gen())
    quiet = x < -75
    loud = x > -10
    assert float((out - x)[quiet].mean()) > 5  # quiet cells lifted to the noise level
    assert float((out - x)[loud].abs().max()) < 0.1  # loud cells unchanged


def test_switched_off_augmentations_draw_nothing():
    """New augmentations at 0 leave the masks' random draws, and so old runs, unchanged."""
    x = _features()
    old = AugmentParams(eq_db=0.0, band_limit_prob=0.0, noise_prob=0.0)
    g1, g2 = _gen(5), _gen(5)
    out = augment_batch(x, old, g1)
    expected = augment_batch(x, replace(old, eq_db=0.0), g2)
    assert torch.equal(out, expected)
    assert torch.equal(g1.get_state(), g2.get_state())
    g3 = _gen(5)
    augment_batch(x, AugmentParams(), g3)
    assert not torch.equal(g3.get_state(), g1.get_state())
