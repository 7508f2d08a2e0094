"""Signal-processing primitives of the synthetic corpus generator (pure numpy/scipy).

Everything here is vectorised per note or per bus, never per sample in Python, because the
default corpus (600 clips of 12 s) has to render in well under a minute on two cores. Nothing
draws random numbers on its own: callers pass a ``numpy.random.Generator`` so one clip's
output depends only on its seed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

TABLE_SIZE = 4096  # power of two: phase -> index is a mask
_TABLE_MASK = TABLE_SIZE - 1


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def harmonic_table(amps: np.ndarray) -> np.ndarray:
    """One period of ``sum_k amps[k-1] * sin(2 pi k x)``, peak-normalised.

    A wavetable built per note from the harmonics below Nyquist is band-limited by
    construction, so bright timbres do not alias however high the note.
    """
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    k = min(len(amps), TABLE_SIZE // 2 - 1)
    spec[1 : k + 1] = -0.5j * TABLE_SIZE * np.asarray(amps[:k], dtype=np.float64)
    table = np.fft.irfft(spec, n=TABLE_SIZE)
    peak = float(np.max(np.abs(table)))
    return (table / peak if peak > 0 else table).astype(np.float32)


def n_harmonics(f0: float, sr: int, cap: int = 60) -> int:
    """How many harmonics of ``f0`` fit below 0.45 * sr (at least one)."""
    return int(max(1, min(cap, (0.45 * sr) // max(f0, 1.0))))


@lru_cache(maxsize=8)
def _ramp(sr: int, dtype: str) -> np.ndarray:
    r = np.arange(16 * sr, dtype=dtype) / sr
    r.flags.writeable = False
    return r


def ramp(n: int, sr: int, dtype: str = "float32") -> np.ndarray:
    """``arange(n) / sr`` (read-only view of a cached ramp when it fits)."""
    full = _ramp(sr, dtype)
    return full[:n] if n <= len(full) else np.arange(n, dtype=dtype) / sr


def phase_of(freq: float | np.ndarray, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Phase in cycles (float64) of an oscillator following ``freq`` (scalar or per sample)."""
    if np.ndim(freq) == 0:
        return phase0 + float(freq) * ramp(n, sr, "float64")
    inc = np.asarray(freq, dtype=np.float64) / sr
    ph = np.cumsum(inc)
    ph -= inc[0]
    return ph + phase0


def table_index(phase: np.ndarray) -> np.ndarray:
    """Wavetable index of a phase in cycles (nearest sample, wrapped)."""
    return (phase * TABLE_SIZE).astype(np.int64) & _TABLE_MASK


def lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Nearest-sample wavetable read (4096-point tables make the error inaudible here)."""
    return table[table_index(phase)]


def envelope(
    n: int, sr: int, attack: float, decay: float, sustain: float, release: float
) -> np.ndarray:
    """Attack ramp x (sustain + (1 - sustain) * exp(-t/decay)) x linear release at the end."""
    t = ramp(n, sr)
    env = np.minimum(t * np.float32(1.0 / max(attack, 1e-4)), np.float32(1.0))
    env *= sustain + (1.0 - sustain) * np.exp(t * np.float32(-1.0 / max(decay, 1e-4)))
    r = min(n, int(release * sr))
    if r > 1:
        env[n - r :] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env.astype(np.float32, copy=False)


def vibrato(n: int, sr: int, rate: float, depth_semitones: float, delay: float) -> np.ndarray:
    """Frequency ratio curve for a delayed vibrato (1.0 where the vibrato has not started)."""
    t = ramp(n, sr)
    fade = np.clip((t - delay) / 0.25, 0.0, 1.0)
    semis = (depth_semitones / 12.0) * fade * np.sin((2 * np.pi * rate) * t)
    return np.exp2(semis.astype(np.float64))


@lru_cache(maxsize=256)
def _sos(kind: str, f1: float, f2: float, sr: int, order: int) -> np.ndarray:
    nyq = 0.5 * sr
    if kind == "band":
        lo, hi = max(f1, 20.0) / nyq, min(f2, 0.95 * nyq) / nyq
        return signal.butter(order, [lo, max(hi, lo * 1.05)], btype="bandpass", output="sos")
    wn = min(max(f1, 20.0), 0.95 * nyq) / nyq
    return signal.butter(order, wn, btype=kind, output="sos")


def lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    if cutoff >= 0.47 * sr:
        return x
    sos = _sos("lowpass", round(cutoff, 0), 0.0, sr, order)
    return signal.sosfilt(sos, x).astype(np.float32)


def highpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    sos = _sos("highpass", round(cutoff, 0), 0.0, sr, order)
    return signal.sosfilt(sos, x).astype(np.float32)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    sos = _sos("band", round(lo, 0), round(hi, 0), sr, order)
    return signal.sosfilt(sos, x).astype(np.float32)


def soft_clip(x: np.ndarray, drive: float) -> np.ndarray:
    """Overdrive: tanh saturation normalised so small signals keep unit gain-ish level."""
    if drive <= 1.0:
        return x
    return (np.tanh(drive * x) / np.tanh(drive)).astype(np.float32)


def add_at(out: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Mix ``sound`` into ``out`` at sample ``start``, clipped to the buffer bounds."""
    if start >= len(out) or start + len(sound) <= 0:
        return
    s0 = max(0, -start)
    a = max(0, start)
    b = min(len(out), start + len(sound))
    out[a:b] += gain * sound[s0 : s0 + (b - a)]


def reverb_ir(rng: np.random.Generator, sr: int, rt60: float, damping_hz: float) -> np.ndarray:
    """Exponentially decaying, low-passed noise: a cheap, convincing room/hall tail."""
    n = int(0.7 * min(rt60, 3.0) * sr)  # the tail below -42 dB adds nothing audible
    t = np.arange(n, dtype=np.float32) / sr
    ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * t / rt60).astype(np.float32)
    ir = lowpass(ir, damping_hz, sr, order=1)
    ir[: int(0.01 * sr)] *= np.linspace(0, 1, int(0.01 * sr), dtype=np.float32)  # pre-delay
    return ir / np.sqrt(np.sum(ir.astype(np.float64) ** 2) + 1e-12).astype(np.float32)


def convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return signal.oaconvolve(x, ir)[: len(x)].astype(np.float32)


def echo(x: np.ndarray, delay_samples: int, feedback: float, repeats: int = 5) -> np.ndarray:
    """Feedback delay line unrolled into a few shifted copies (dub echo, slap-back)."""
    y = x.copy()
    g = 1.0
    for i in range(1, repeats + 1):
        g *= feedback
        d = i * delay_samples
        if d >= len(x):
            break
        y[d:] += g * x[: len(x) - d]
    return y


def pink_spectrum(rng: np.random.Generator, n_bins: int, slope: float) -> np.ndarray:
    """Random complex spectrum with power ~ f^-slope (0 white, 1 pink, 2 brown)."""
    f = np.arange(n_bins, dtype=np.float32)
    f[0] = 1.0
    mag = f ** np.float32(-slope / 2.0)
    mag[0] = 0.0
    re = rng.standard_normal(n_bins, dtype=np.float32)
    im = rng.standard_normal(n_bins, dtype=np.float32)
    return mag * (re + 1j * im).astype(np.complex64)
