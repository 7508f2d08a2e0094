"""Decode, resample and cut audio into segment-aligned windows, with bounded memory.

A one-hour file is 80 M samples at 22,050 Hz and, through the CNN, gigabytes of activations
if scored in one piece. Serving reads it in blocks instead and scores it window by window,
and the windows are placed so that the sum over all of them equals the whole-file result:

- **Decoding** (:func:`file_blocks`): ``soundfile`` blocks, down-mixed to mono exactly as
  :func:`genreflow.audio.to_mono` does.
- **Resampling** (:func:`resampled_blocks`): torchaudio's sinc resampler is a strided
  convolution: output stride step ``q`` (``new'`` samples, rates reduced by their gcd) reads
  input ``[q*orig' - width, q*orig' + orig' + width)``. Each block is resampled with
  ``context`` extra input samples on both sides (a multiple of ``orig'``, at least the
  kernel's ``width``) and only the steps whose inputs lie inside are kept, so the output is
  the whole-file ``torchaudio.functional.resample`` output, block after block.
- **Windows** (:func:`segment_windows`): segment ``k`` of the front-end covers STFT frames
  ``[k*hop_frames, k*hop_frames + segment_frames)``, and frame ``j`` (``center=True``) reads
  samples ``[j*hop - n_fft//2, j*hop + n_fft - n_fft//2)``. A window that produces segments
  ``[k0, k1)`` starts ``context_segments`` segment hops before ``k0`` (so the reflect padding
  at its start touches only segments it drops) and ends where segment ``k1 - 1``'s last frame
  stops reading; the last window ends with the file, as the whole-file STFT does.

Only numpy, torch and torchaudio are used, so the same windows serve files (``genreflow
predict``) and waveforms already in memory (the MLflow pyfunc).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_BLOCK_FRAMES = 1 << 18  # source frames per soundfile read (6 s at 44.1 kHz)
LOWPASS_FILTER_WIDTH = 6  # torchaudio.functional.resample's default
ROLLOFF = 0.99  # torchaudio.functional.resample's default


@dataclass(frozen=True)
class SegmentGeometry:
    """How the front-end cuts samples into segments (the numbers of ``LogMelFrontend``)."""

    n_fft: int
    hop_length: int
    segment_samples: int
    segment_frames: int
    hop_frames: int

    @classmethod
    def of(cls, frontend: object) -> SegmentGeometry:
        """From a :class:`~genreflow.features.frontend.LogMelFrontend`."""
        return cls(
            n_fft=int(frontend.stft.n_fft),  # type: ignore[attr-defined]
            hop_length=int(frontend.hop_length),  # type: ignore[attr-defined]
            segment_samples=int(frontend.segment_samples),  # type: ignore[attr-defined]
            segment_frames=int(frontend.segment_frames),  # type: ignore[attr-defined]
            hop_frames=int(frontend.hop_frames),  # type: ignore[attr-defined]
        )

    @property
    def hop_samples(self) -> int:
        """Samples between the starts of two consecutive segments."""
        return self.hop_frames * self.hop_length

    @property
    def context_segments(self) -> int:
        """Segment hops of left context a window needs past the STFT's reflect padding."""
        return max(1, math.ceil((self.n_fft // 2) / self.hop_samples))

    def n_segments(self, n_samples: int) -> int:
        """Segments of a clip of ``n_samples`` (short clips are padded to one segment)."""
        n_frames = 1 + max(n_samples, self.segment_samples) // self.hop_length
        if n_frames <= self.segment_frames:
            return 1
        return 1 + (n_frames - self.segment_frames) // self.hop_frames

    def end_sample(self, k_end: int) -> int:
        """First sample that segments ``[0, k_end)`` do not read (exclusive end)."""
        last_frame = (k_end - 1) * self.hop_frames + self.segment_frames - 1
        return last_frame * self.hop_length + self.n_fft - self.n_fft // 2

    def start_sample(self, k0: int) -> int:
        """Where a window producing segments from ``k0`` on begins (a segment boundary)."""
        return max(0, k0 - self.context_segments) * self.hop_samples


@dataclass(frozen=True)
class Window:
    """One window of a clip: ``wave`` (mono, from a segment boundary), and which of the
    segments the front-end cuts from it are new: ``[skip, skip + count)``."""

    wave: np.ndarray
    skip: int
    count: int


def segment_windows(
    blocks: Iterable[np.ndarray], geometry: SegmentGeometry, window_segments: int
) -> Iterator[Window]:
    """Windows of at most ``window_segments`` new segments over mono ``blocks``.

    Together the windows yield every segment of the concatenated blocks exactly once, each
    computed from the same samples as in the whole clip. A clip of at most
    ``window_segments`` segments comes back as one window holding the whole clip (so a short
    clip costs no copying beyond the concatenation). Memory: one window plus one block.
    """
    if window_segments < 1:
        raise ValueError(f"window_segments must be >= 1, got {window_segments}")
    g = geometry
    pending: list[np.ndarray] = []  # blocks not yet joined into ``buf``
    available = 0  # global index one past the last sample received
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # global index of buf[0]
    k0 = 0  # next segment to produce
    for block in blocks:
        pending.append(np.asarray(block, dtype=np.float32))
        available += len(pending[-1])
        if available < g.end_sample(k0 + window_segments):
            continue  # join lazily: a short clip is joined once, at the end
        buf = np.concatenate([buf, *pending])
        pending = []
        while buf_start + len(buf) >= g.end_sample(k0 + window_segments):
            a, b = g.start_sample(k0), g.end_sample(k0 + window_segments)
            wave = buf[a - buf_start : b - buf_start]
            yield Window(wave, k0 - a // g.hop_samples, window_segments)
            k0 += window_segments
            cut = g.start_sample(k0) - buf_start
            buf, buf_start = buf[cut:].copy(), buf_start + cut
    buf = np.concatenate([buf, *pending]) if pending else buf
    total = buf_start + len(buf)
    if total == 0:
        return
    remaining = g.n_segments(total) - k0
    if remaining > 0:
        a = g.start_sample(k0)
        yield Window(buf[a - buf_start :], k0 - a // g.hop_samples, remaining)


def resample_kernel_reach(orig_freq: int, new_freq: int) -> tuple[int, int, int]:
    """``(orig', new', context)``: the rates reduced by their gcd and the input context (in
    source samples, a multiple of ``orig'``) that covers torchaudio's sinc kernel width."""
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))
    return orig, new, orig * (math.ceil(width / orig) + 1)


def resampled_blocks(
    blocks: Iterable[np.ndarray], orig_freq: int, new_freq: int
) -> Iterator[np.ndarray]:
    """Mono blocks at ``orig_freq`` -> blocks at ``new_freq`` whose concatenation equals
    ``torchaudio.functional.resample`` of the whole concatenated input (see module doc)."""
    if orig_freq == new_freq:
        yield from blocks
        return
    import torch
    import torchaudio.functional as AF

    orig, new, context = resample_kernel_reach(orig_freq, new_freq)

    def resample(x: np.ndarray) -> np.ndarray:
        out = AF.resample(torch.from_numpy(x), orig_freq=orig_freq, new_freq=new_freq)
        return out.numpy()

    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # source index of buf[0], a multiple of orig
    q0 = 0  # next output stride step
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        q1 = (buf_start + len(buf) - context) // orig  # steps whose inputs are all here
        if q1 <= q0:
            continue
        out = resample(buf[: q1 * orig + context - buf_start])
        base = buf_start // orig * new  # output index of out[0]
        yield out[q0 * new - base : q1 * new - base]
        q0 = q1
        cut = max(0, q0 * orig - context) - buf_start
        buf, buf_start = buf[cut:], buf_start + cut
    if len(buf) == 0:
        return
    out = resample(buf)
    base = buf_start // orig * new
    yield out[q0 * new - base :]


@dataclass
class DecodedLength:
    """Filled in by :func:`file_blocks` once the file is read: source frames and rate."""

    frames: int = 0
    sample_rate: int = 0

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def file_blocks(
    path: Path | str, length: DecodedLength, block_frames: int = DEFAULT_BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at its own rate; ``length`` records what was read.

    Down-mixing is ``to_mono``'s channel mean. A missing, empty or undecodable file, one that
    fails mid-way or one that holds no samples raises :class:`~genreflow.audio.AudioDecodeError`
    naming it: the checks are :func:`genreflow.audio.open_audio` and
    :func:`genreflow.audio.read_blocks`, the same ones every other reader of audio uses.
    """
    from genreflow.audio import open_audio, read_blocks

    with open_audio(path) as f:
        length.sample_rate = int(f.samplerate)
        for data in read_blocks(f, path, block_frames):
            length.frames += len(data)
            yield data[:, 0].copy() if data.shape[1] == 1 else data.T.mean(axis=0)
