"""The recording-like augmentations (EQ, band limit, noise floor) on normalised features."""

from dataclasses import replace

import pytest
import torch

from genreflow.core.config import AugmentParams
from genreflow.training.augment import (
    add_noise_floor,
    augment_batch,
    band_limit,
    freq_mask,
    mixup,
    random_crop,
    random_eq,
    time_mask,
)

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


# Each augmentation's "off" setting, as AugmentParams fields (masks go off by count or by width).
SWITCHES_OFF = {
    "random_crop": {"random_crop_frames": 0},
    "eq": {"eq_db": 0.0},
    "band_limit": {"band_limit_prob": 0.0},
    "noise_floor": {"noise_prob": 0.0},
    "freq_mask_count": {"freq_masks": 0},
    "freq_mask_width": {"freq_mask_width": 0},
    "time_mask_count": {"time_masks": 0},
    "time_mask_width": {"time_mask_width": 0},
}
ALL_OFF = AugmentParams(
    freq_masks=0,
    time_masks=0,
    random_crop_frames=0,
    eq_db=0.0,
    band_limit_prob=0.0,
    noise_prob=0.0,
    mixup_alpha=0.0,
)
ON = AugmentParams(freq_masks=2, time_masks=2, eq_db=6.0, band_limit_prob=1.0, noise_prob=1.0)


def _one_off(name: str) -> dict:
    """A call of the single augmentation ``name`` with its switch turned off."""
    off = replace(ON, **SWITCHES_OFF[name])
    return {
        "random_crop": lambda x, g: random_crop(x, off.random_crop_frames, g),
        "eq": lambda x, g: random_eq(x, off.eq_db, g),
        "band_limit": lambda x, g: band_limit(x, off.band_limit_prob, g),
        "noise_floor": lambda x, g: add_noise_floor(x, off.noise_prob, off.noise_db, g),
        "freq_mask_count": lambda x, g: freq_mask(x, off.freq_masks, off.freq_mask_width, g),
        "freq_mask_width": lambda x, g: freq_mask(x, off.freq_masks, off.freq_mask_width, g),
        "time_mask_count": lambda x, g: time_mask(x, off.time_masks, off.time_mask_width, g),
        "time_mask_width": lambda x, g: time_mask(x, off.time_masks, off.time_mask_width, g),
    }[name]


@pytest.mark.parametrize("name", sorted(SWITCHES_OFF))
def test_a_switched_off_augmentation_draws_nothing(name):
    """Switched off, an augmentation returns its input and leaves the generator exactly as it
    was, so switching one off (or adding a new one at 0) leaves every other draw, and so old
    runs and resumed checkpoints, unchanged."""
    x = _features()
    g = _gen(5)
    before = g.get_state()
    out = _one_off(name)(x, g)
    assert torch.equal(g.get_state(), before), f"{name} switched off drew random numbers"
    assert torch.equal(out, x)
    # and through augment_batch: everything else off too, this one off: nothing drawn
    g = _gen(5)
    assert torch.equal(augment_batch(x, replace(ALL_OFF, **SWITCHES_OFF[name]), g), x)
    assert torch.equal(g.get_state(), before)


@pytest.mark.parametrize("name", sorted(SWITCHES_OFF))
def test_each_switch_alone_turns_its_draws_on(name):
    """The converse, so the test above can fail: with only ``name``'s knobs at their ON values
    (everything else off), augment_batch does draw."""
    fields = {k: getattr(ON, k) for k in SWITCHES_OFF[name]}
    if name.endswith(("_count", "_width")):  # a mask needs both its count and its width
        stem = name.rsplit("_", 1)[0].replace("_mask", "")
        fields = {f"{stem}_masks": 2, f"{stem}_mask_width": getattr(ON, f"{stem}_mask_width")}
    g = _gen(5)
    before = g.get_state()
    augment_batch(_features(), replace(ALL_OFF, **fields), g)
    assert not torch.equal(g.get_state(), before)


def test_everything_switched_off_draws_nothing():
    """All augmentations off together (mixup too): identity, and the generator untouched, so
    its next draw is a fresh generator's first."""
    x, g = _features(), _gen(5)
    targets = torch.eye(x.shape[0])
    out = augment_batch(x, ALL_OFF, g)
    mixed, soft = mixup(out, targets, ALL_OFF.mixup_alpha, g)
    assert torch.equal(mixed, x) and torch.equal(soft, targets)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=_gen(5)))
