"""On-device batch augmentations for ``(B, n_mels, frames)`` dB spectrograms.

Besides SpecAugment-style masks, shifts and mixup, three augmentations imitate what real
recordings change and the front-end's loudness normalisation cannot undo: EQ, a lost top
octave and a noise floor. They act on the stored (normalised) features, so training stays
as fast as before; gain needs none, because the front-end already removes it.

Every random draw goes through an explicit ``torch.Generator`` living on the batch's device,
so augmentation needs no host round-trip per batch and its state can be checkpointed for an
exact resume. Masked or padded cells take the sample's mean dB, which the classifier's input
normalisation maps close to zero, instead of a constant that would look like loud sound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genreflow.core.config import AugmentParams


def _sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2), keepdim=True)


def _band_mask(
    batch: int, size: int, n_masks: int, max_width: int, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(batch, size)`` bool: the union of ``n_masks`` bands of width 0..max_width each."""
    max_width = min(max_width, size)
    u = torch.rand(2, batch, n_masks, generator=gen, device=device)
    widths = torch.floor(u[0] * (max_width + 1))
    starts = torch.floor(u[1] * (size - widths + 1))
    pos = torch.arange(size, device=device, dtype=u.dtype).view(1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
    return inside.any(dim=1)


def freq_mask(x: torch.Tensor, n_masks: int, max_width: int, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment frequency masking (per-sample random bands)."""
    if n_masks <= 0 or max_width <= 0:
        return x
    mask = _band_mask(x.shape[0], x.shape[1], n_masks, max_width, gen, x.device)
    return torch.where(mask.unsqueeze(2), _sample_mean(x), x)


def time_mask(x: torch.Tensor, n_masks: int, max_width: int, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment time masking (per-sample random spans of frames)."""
    if n_masks <= 0 or max_width <= 0:
        return x
    mask = _band_mask(x.shape[0], x.shape[2], n_masks, max_width, gen, x.device)
    return torch.where(mask.unsqueeze(1), _sample_mean(x), x)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """CIFAR-style shift: pad ``pad`` frames on both sides, crop back at a random offset."""
    if pad <= 0:
        return x
    b, f, t = x.shape
    fill = _sample_mean(x).expand(b, f, pad)
    padded = torch.cat([fill, x, fill], dim=2)
    offsets = torch.floor(torch.rand(b, generator=gen, device=x.device) * (2 * pad + 1)).long()
    idx = offsets.unsqueeze(1) + torch.arange(t, device=x.device).unsqueeze(0)
    return torch.gather(padded, 2, idx.unsqueeze(1).expand(b, f, t))


def sample_beta(alpha: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """One Beta(alpha, alpha) draw as a 1-element device tensor (ratio of two gammas)."""
    conc = torch.full((2,), float(alpha), device=device)
    g = torch._standard_gamma(conc, generator=gen)
    return (g[0] / g.sum()).reshape(1)


def mixup(
    x: torch.Tensor, targets: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each sample with a random partner: ``lam*a + (1-lam)*b`` for inputs and soft
    targets alike, ``lam ~ Beta(alpha, alpha)`` once per batch (Zhang et al., 2018).

    ``targets`` are one-hot (or already soft) ``(B, n_classes)`` rows.
    """
    if alpha <= 0:
        return x, targets
    lam = sample_beta(alpha, gen, x.device)
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    lam_x = lam.view(-1, *([1] * (x.dim() - 1)))
    mixed = lam_x * x + (1 - lam_x) * x[perm]
    soft = lam.view(-1, 1) * targets + (1 - lam.view(-1, 1)) * targets[perm]
    return mixed, soft


def _per_sample(
    batch: int, prob: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(batch, 1, 1)`` bool: which samples an augmentation applied with ``prob`` hits."""
    return (torch.rand(batch, generator=gen, device=device) < prob).view(batch, 1, 1)


def _peak(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(1, 2), keepdim=True)


def _floor(x: torch.Tensor) -> torch.Tensor:
    return x.amin(dim=(1, 2), keepdim=True)


def random_eq(x: torch.Tensor, max_db: float, gen: torch.Generator) -> torch.Tensor:
    """A smooth random EQ: a gain curve over the mel axis, the sum of a tilt and two slow
    cosines, within about ``+-max_db``, as different rooms, speakers and masterings give.
    The peak is put back where it was and nothing falls below the original floor, so the
    features keep the front-end's range."""
    if max_db <= 0:
        return x
    b, f, _ = x.shape
    pos = torch.linspace(-1.0, 1.0, f, device=x.device).view(1, f)
    coef = (torch.rand(b, 4, generator=gen, device=x.device) * 2 - 1) * max_db / 3
    phase = torch.rand(b, 1, generator=gen, device=x.device) * torch.pi
    curve = (
        coef[:, :1] * pos
        + coef[:, 1:2] * torch.cos(torch.pi * pos + phase)
        + coef[:, 2:3] * torch.cos(2 * torch.pi * pos + phase)
        + coef[:, 3:4]
    )
    out = x + curve.unsqueeze(2)
    out = out - (_peak(out) - _peak(x))
    return torch.maximum(out, _floor(x))


def band_limit(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """With probability ``prob``, silence every mel band above a random cutoff in the top
    quarter of the bands: what a 16 kHz source (nothing above 8 kHz) or a low-bitrate codec
    leaves of the top octave. Silenced bands take the sample's floor."""
    if prob <= 0:
        return x
    b, f, _ = x.shape
    hit = _per_sample(b, prob, gen, x.device)
    low = int(round(0.75 * f))
    cutoff = low + torch.floor(torch.rand(b, generator=gen, device=x.device) * (f - low))
    bands = torch.arange(f, device=x.device).view(1, f, 1)
    cut = hit & (bands >= cutoff.view(b, 1, 1))
    return torch.where(cut, _floor(x), x)


def add_noise_floor(
    x: torch.Tensor, prob: float, max_db: float, gen: torch.Generator
) -> torch.Tensor:
    """With probability ``prob``, add white noise in the power domain at a level drawn from
    ``[max_db - 30, max_db]`` dB relative to the sample's peak (white noise is about flat
    across slaney-normalised mel bands), with 1 dB of per-cell jitter."""
    if prob <= 0:
        return x
    hit = _per_sample(x.shape[0], prob, gen, x.device)
    level = _peak(x) + max_db - 30 * torch.rand(x.shape[0], 1, 1, generator=gen, device=x.device)
    noise = level + torch.randn(x.shape, generator=gen, device=x.device)
    to_nat = torch.log(torch.tensor(10.0, device=x.device)) / 10
    noisy = torch.logaddexp(x * to_nat, noise * to_nat) / to_nat
    return torch.where(hit, noisy, x)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(labels, n_classes).float()


def augment_batch(x: torch.Tensor, params: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Shift; what recordings change (EQ, band limit, noise floor); then frequency and time
    masks. Mixup is applied with the targets, separately. An augmentation switched off in
    params draws no random numbers, so the others' draws stay as they were."""
    x = random_crop(x, params.random_crop_frames, gen)
    x = random_eq(x, params.eq_db, gen)
    x = band_limit(x, params.band_limit_prob, gen)
    x = add_noise_floor(x, params.noise_prob, params.noise_db, gen)
    x = freq_mask(x, params.freq_masks, params.freq_mask_width, gen)
    return time_mask(x, params.time_masks, params.time_mask_width, gen)
