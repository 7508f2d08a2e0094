"""Mixing and mastering of the synthetic corpus: bus gains, distortion, reverb, echo, EQ
tilt, band-limiting, noise and loudness.

Production randomness is what keeps genres from being separable by their average spectrum
alone: every clip gets its own mix balance, tilt, bandwidth, noise floor and level, much as
GTZAN's clips come from very different recordings.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from genreflow.sources.synthetic import dsp
from genreflow.sources.synthetic.arrange import GUITARS, ClipPlan

BUS_DB: dict[str, float] = {"drums": 0.0, "bass": -2.0, "comp": -4.0, "lead": -4.0, "vocal": -2.0}
REVERB_SEND: dict[str, float] = {"drums": 0.4, "bass": 0.05, "comp": 1.0, "lead": 1.0, "vocal": 1.0}
PEAK_MAX = 0.89  # -1 dBFS: far from full scale after 16-bit rounding


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def _norm(x: np.ndarray, target_rms: float = 0.1) -> np.ndarray:
    r = _rms(x)
    return x * (target_rms / r) if r > 1e-8 else x


def mix_buses(
    buses: dict[str, np.ndarray], plan: ClipPlan, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """Level, distort and echo each bus, then place them in one room; returns the mono mix."""
    out = np.zeros_like(next(iter(buses.values())))
    send = np.zeros_like(out)
    for name, x in buses.items():
        if _rms(x) < 1e-7:
            continue
        x = _norm(x)
        if name == "comp" and plan.comp_timbre in GUITARS and plan.drive > 1.0:
            x = dsp.lowpass(dsp.soft_clip(x * 3.0, plan.drive), rng.uniform(3500, 6000), sr)
            x = _norm(x)
        elif name == "lead" and "dist_guitar" in (plan.lead_timbre, plan.answer_timbre):
            x = _norm(dsp.lowpass(dsp.soft_clip(x * 3.0, max(plan.drive, 6.0)), 5000.0, sr))
        elif name == "vocal" and plan.vocal_style == "scream" and plan.vocal:
            x = _norm(dsp.soft_clip(x * 3.0, rng.uniform(4.0, 12.0)))
        if plan.echo and name in ("vocal", "comp"):  # dub / slap-back delay
            beat = 60.0 / plan.bpm
            x = dsp.echo(x, int(beat * rng.choice([0.75, 1.0, 1.5]) * sr), rng.uniform(0.3, 0.55))
        db = BUS_DB[name] + plan.mix.get(name, 0.0) + rng.normal(0.0, 2.0)
        g = 10.0 ** (db / 20.0)
        out += g * x
        send += g * REVERB_SEND[name] * x
    if plan.reverb > 0:
        ir = dsp.reverb_ir(rng, sr, plan.room, rng.uniform(2500, 7000))
        out += plan.reverb * 1.5 * dsp.convolve(send, ir)
    return out


def master(x: np.ndarray, plan: ClipPlan, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Glue compression, EQ tilt, bandwidth, noise floor and loudness of a cropped mix."""
    n = len(x)
    x = _norm(x, 0.1)
    # glue: gentle-to-heavy saturation ("loudness war") on a random share of clips
    x = dsp.soft_clip(x, float(rng.uniform(1.0, 4.0))) if rng.random() < 0.6 else x
    spec = sfft.rfft(x.astype(np.float32))
    f = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    fz = np.maximum(f, 20.0)
    octs = np.log2(fz / 1000.0)
    gain_db = rng.uniform(-1.0, 1.0) * octs  # tilt in dB per octave around 1 kHz
    for _ in range(int(rng.integers(0, 3))):  # random resonances / dips of the recording
        fc = np.exp(rng.uniform(np.log(80.0), np.log(8000.0)))
        gain_db += rng.uniform(-3.0, 3.0) * np.exp(-0.5 * (np.log2(fz / fc) / 0.6) ** 2)
    hp = rng.uniform(25.0, 60.0) if not plan.lofi else rng.uniform(60.0, 200.0)
    lp = rng.uniform(7000.0, 11000.0) if not plan.lofi else rng.uniform(4000.0, 8000.0)
    gain_db -= 12.0 * np.maximum(0.0, np.log2(hp / fz))  # 12 dB/oct low cut
    gain_db -= 18.0 * np.maximum(0.0, np.log2(fz / lp))  # 18 dB/oct high cut
    spec *= (10.0 ** (gain_db / 20.0)).astype(np.float32)
    # noise floor at a random SNR and colour
    snr = plan.snr_db - (rng.uniform(0.0, 8.0) if plan.lofi else 0.0)
    noise = dsp.pink_spectrum(rng, len(spec), float(rng.uniform(0.0, 1.8)))
    noise *= 10.0 ** (np.minimum(gain_db, 0.0) / 40.0)  # old gear band-limits its hiss too
    p_sig = np.sum(np.abs(spec) ** 2)
    p_noise = np.sum(np.abs(noise) ** 2) + 1e-12
    spec += noise * np.sqrt(p_sig / p_noise * 10.0 ** (-snr / 10.0))
    y = sfft.irfft(spec, n=n).astype(np.float32)
    if plan.lofi and rng.random() < 0.5:  # mains hum and vinyl crackle
        t = np.arange(n, dtype=np.float32) / sr
        hz = 50.0 if rng.random() < 0.5 else 60.0
        y += _rms(y) * rng.uniform(0.02, 0.1) * np.sin(2 * np.pi * hz * t).astype(np.float32)
        k = rng.random(n) < rng.uniform(2e-4, 1e-3)
        y += k.astype(np.float32) * rng.normal(0, 4.0 * _rms(y), n).astype(np.float32)
    return loudness(y, rng)


def loudness(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random level between -24 and -14 dBFS RMS, then a hard guarantee of headroom."""
    target = 10.0 ** (rng.uniform(-24.0, -14.0) / 20.0)
    y = y * (target / _rms(y))
    peak = float(np.max(np.abs(y)))
    if peak > PEAK_MAX:
        y = y * (PEAK_MAX / peak)
    return y.astype(np.float32)
