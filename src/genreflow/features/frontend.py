"""The one spectrogram front-end shared by training, evaluation and serving.

Training reads features that :class:`LogMelFrontend` wrote to the feature store; the
served model embeds the very same module and applies it to raw waveform. Both paths go
through :meth:`LogMelFrontend.segments`: one STFT over the whole clip, then the frames are
cut into overlapping segments. Overlapping segments therefore cost no extra FFTs, and a
segment's features never depend on the batch it sits in.

Loudness normalisation (``features.loudness: segment_peak``) happens here too, per segment:
each segment's dB values are taken relative to that segment's peak and floored ``top_db``
below it. A gain change shifts every dB value of a segment by the same amount, so it moves
neither the peak-relative values nor the floor: training and serving see the same features
for a file at any loudness (up to clipping, which changes the waveform itself). Per-segment
rather than per-clip keeps a segment's features independent of the rest of the file, so a
long file scored in windows gives the same segments as the whole file.
"""

from __future__ import annotations

import torch
import torchaudio.transforms as T
from torch import nn

from genreflow.core.config import FeatureParams

AMIN_DB = -100.0  # floor of the absolute dB scale (power 1e-10); avoids -inf on digital silence
# With peak-relative features the absolute floor must sit far below any segment's peak minus
# top_db, or a quiet file would hit it and stop being a shifted copy of the loud one.
AMIN_DB_RELATIVE = -200.0


def n_segments(n_frames: int, segment_frames: int, hop_frames: int) -> int:
    """How many segments :meth:`LogMelFrontend.segments` cuts from ``n_frames`` frames."""
    if n_frames <= segment_frames:
        return 1
    return 1 + (n_frames - segment_frames) // hop_frames


class LogMelFrontend(nn.Module):
    """Waveform ``(..., samples)`` -> log-mel dB ``(..., n_mels, frames)``, float32.

    Built from torchaudio's ``Spectrogram``, ``MelScale`` and ``AmplitudeToDB`` (the parts of
    ``MelSpectrogram``), with the power spectrum taken as ``re² + im²``, which is cheaper than
    ``abs() ** 2`` and numerically the same. The output is rounded through float16 because the
    feature store keeps float16: the classifier then sees bit-identical inputs whether features
    come from the store (training) or from this module (serving).
    """

    def __init__(self, params: FeatureParams) -> None:
        super().__init__()
        self.sample_rate = params.sample_rate
        self.hop_length = params.hop_length
        self.loudness = params.loudness
        self.top_db = float(params.top_db)
        self.segment_samples = params.segment_samples
        self.segment_frames = params.segment_frames
        self.hop_frames = max(1, int(round(params.segment_hop_samples / params.hop_length)))
        self.stft = T.Spectrogram(
            n_fft=params.n_fft, hop_length=params.hop_length, power=None, center=True
        )
        self.mel_scale = T.MelScale(
            n_mels=params.n_mels,
            sample_rate=params.sample_rate,
            f_min=params.f_min,
            f_max=params.f_max,
            n_stft=params.n_fft // 2 + 1,
            norm="slaney",
            mel_scale="slaney",
        )
        # The dB conversion is AmplitudeToDB(stype="power", top_db=None) written out, so the
        # floor can depend on the loudness mode. torchaudio's top_db clamps against the max
        # over the whole input, which would make one clip's features depend on the batch.
        self.floor_db = AMIN_DB if self.loudness == "none" else AMIN_DB_RELATIVE

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Absolute log-mel dB ``(..., n_mels, frames)`` in full float32 precision."""
        spec = torch.view_as_real(self.stft(wave.float()))
        power = spec[..., 0].square() + spec[..., 1].square()
        mel = self.mel_scale(power).clamp_min(10.0 ** (self.floor_db / 10.0))
        return 10.0 * torch.log10(mel)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Absolute log-mel dB, rounded like the feature store (figures use this)."""
        return _as_stored(self.log_mel(wave))

    def normalise(self, segments: torch.Tensor) -> torch.Tensor:
        """Per-segment loudness normalisation of ``(..., n_mels, frames)`` dB segments."""
        if self.loudness == "none":
            return segments
        peak = segments.amax(dim=(-2, -1), keepdim=True)
        relative = (segments - peak).clamp_min(-self.top_db)
        # A digitally silent segment has no level to be relative to: it is all floor.
        return torch.where(peak > self.floor_db, relative, torch.full_like(relative, -self.top_db))

    def segments(self, wave: torch.Tensor) -> torch.Tensor:
        """Clip(s) ``(..., samples)`` -> segments ``(..., n_segments, n_mels, segment_frames)``.

        A clip shorter than one segment is zero-padded to one segment; trailing frames that
        do not fill a whole segment are dropped. Training features and serving use this.
        """
        short = self.segment_samples - wave.shape[-1]
        if short > 0:
            wave = torch.nn.functional.pad(wave, (0, short))
        spec = self.log_mel(wave)  # (..., n_mels, frames)
        cut = spec.unfold(-1, self.segment_frames, self.hop_frames)  # (..., n_mels, n_seg, F)
        return _as_stored(self.normalise(cut.transpose(-3, -2)).contiguous())


def _as_stored(db: torch.Tensor) -> torch.Tensor:
    """Round through float16, the feature store's dtype: the classifier then sees
    bit-identical inputs whether features come from the store (training) or from the
    front-end (serving)."""
    return db.to(torch.float16).to(torch.float32)
