"""On-device batch augmentations for ``(B, n_mels, frames)`` dB spectrograms.

Every random draw goes through an explicit ``torch.Generator`` living on the batch's device,
so augmentation needs no host round-trip per batch and its state can be checkpointed for an
exact resume. Masked or padded cells take the sample's mean dB, which the classifier's input
normalisation maps close to zero, instead of a constant that would look like loud sound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genreflow.config import AugmentParams


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


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(labels, n_classes).float()


def augment_batch(x: torch.Tensor, params: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Shift, then frequency and time masks (mixup is applied with the targets, separately)."""
    x = random_crop(x, params.random_crop_frames, gen)
    x = freq_mask(x, params.freq_masks, params.freq_mask_width, gen)
    return time_mask(x, params.time_masks, params.time_mask_width, gen)
