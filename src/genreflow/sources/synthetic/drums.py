"""Drum kits: one-shot samples synthesised per clip (pitch-swept sines, filtered noise, metal).

A kit is rendered once per clip with randomised tuning and decay, then every hit is a
scaled copy placed on the timeline, which keeps drums nearly free to render.
"""

from __future__ import annotations

import numpy as np

from genreflow.sources.synthetic import dsp

KIT_STYLES = ("acoustic", "metal", "disco", "808", "jazz", "reggae", "electronic", "brushes")


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / sr


def kick(
    rng: np.random.Generator,
    sr: int,
    f_hi: float,
    f_lo: float,
    sweep: float,
    decay: float,
    click: float,
) -> np.ndarray:
    n = int((decay * 5 + 0.02) * sr)
    t = _t(n, sr)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / sweep)
    ph = np.cumsum(freq / sr)
    body = np.sin(2 * np.pi * ph) * np.exp(-t / decay)
    nclick = int(0.004 * sr)
    clk = np.zeros(n, dtype=np.float32)
    clk[:nclick] = rng.standard_normal(nclick) * np.linspace(1, 0, nclick)
    clk = dsp.highpass(clk, 1500.0, sr)
    return (body + click * clk).astype(np.float32)


def snare(
    rng: np.random.Generator,
    sr: int,
    tone_hz: float,
    tone_decay: float,
    noise_decay: float,
    noise_lo: float,
    noise_hi: float,
    mix: float,
) -> np.ndarray:
    n = int(noise_decay * 5 * sr)
    t = _t(n, sr)
    tone = np.sin(2 * np.pi * tone_hz * t) + 0.5 * np.sin(2 * np.pi * tone_hz * 1.6 * t)
    tone *= np.exp(-t / tone_decay)
    nz = dsp.bandpass(rng.standard_normal(n).astype(np.float32), noise_lo, noise_hi, sr)
    nz *= np.exp(-t / noise_decay) / (np.std(nz[: max(1, int(0.02 * sr))]) + 1e-9)
    return ((1 - mix) * tone + mix * 0.6 * nz).astype(np.float32)


def clap(rng: np.random.Generator, sr: int, decay: float, center: float) -> np.ndarray:
    n = int((decay * 5 + 0.04) * sr)
    t = _t(n, sr)
    env = np.exp(-t / decay)
    for d in (0.0, 0.011, 0.022):
        i = int(d * sr)
        env[i : i + int(0.008 * sr)] += np.exp(-_t(int(0.008 * sr), sr) / 0.003)[: n - i]
    nz = dsp.bandpass(rng.standard_normal(n).astype(np.float32), center * 0.6, center * 1.8, sr)
    return (nz * env / (np.std(nz) + 1e-9) * 0.3).astype(np.float32)


def metal(
    rng: np.random.Generator, sr: int, decay: float, base: float, noise: float, hp: float
) -> np.ndarray:
    """Hi-hats and cymbals: six inharmonic square partials (808 style) plus noise."""
    n = int(min(decay * 4.0, 2.5) * sr)
    t = _t(n, sr)
    ratios = np.array([1.0, 1.342, 1.2312, 1.6532, 1.9523, 2.1523])
    x = np.zeros(n, dtype=np.float32)
    for r in ratios * base * rng.uniform(0.97, 1.03, size=6):
        x += (((r * t + rng.uniform()) % 1.0) < 0.5).astype(np.float32)
    x -= 3.0
    x = x / 6 + noise * rng.standard_normal(n).astype(np.float32)
    x = dsp.highpass(x, hp, sr, order=2)
    x *= np.exp(-t / decay)
    return (x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)


def rim(rng: np.random.Generator, sr: int, hz: float) -> np.ndarray:
    n = int(0.08 * sr)
    t = _t(n, sr)
    x = np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.012)
    x += (
        0.5
        * dsp.highpass(rng.standard_normal(n).astype(np.float32), 2000.0, sr)
        * np.exp(-t / 0.004)
    )
    return x.astype(np.float32)


def brush(rng: np.random.Generator, sr: int, length: float) -> np.ndarray:
    n = int(length * sr)
    t = _t(n, sr)
    env = np.minimum(t / (0.4 * length), 1.0) * np.exp(-t / (0.3 * length))
    nz = dsp.bandpass(rng.standard_normal(n).astype(np.float32), 1500.0, 7000.0, sr)
    return (nz * env / (np.std(nz) + 1e-9) * 0.35).astype(np.float32)


def make_kit(
    style: str, rng: np.random.Generator, sr: int, needed: set[str] | None = None
) -> dict[str, np.ndarray]:
    """The one-shots in ``needed`` (all when None); tuning and decays vary per clip.

    Only what a groove uses is synthesised (cymbals are the costly part); the random draws
    still happen in a fixed order for a given ``needed``, so a clip stays deterministic.
    """
    u = rng.uniform
    want = (lambda name: True) if needed is None else needed.__contains__

    def tom(hz: float) -> np.ndarray:
        return kick(rng, sr, hz * 1.5, hz, 0.03, u(0.12, 0.25), 0.2)

    kit: dict[str, np.ndarray] = {}
    if style == "808":
        kit["kick"] = kick(rng, sr, u(120, 180), u(40, 55), u(0.03, 0.06), u(0.15, 0.4), 0.1)
        kit["snare"] = clap(rng, sr, u(0.06, 0.15), u(1000, 1800))
        if want("hat"):
            kit["hat"] = metal(rng, sr, u(0.02, 0.05), u(300, 500), 0.3, u(6000, 8000))
        if want("open_hat"):
            kit["open_hat"] = metal(rng, sr, u(0.15, 0.3), u(300, 500), 0.3, u(6000, 8000))
    elif style == "electronic":
        kit["kick"] = kick(rng, sr, u(150, 250), u(45, 60), u(0.02, 0.04), u(0.12, 0.25), 0.4)
        kit["snare"] = snare(rng, sr, u(180, 240), 0.05, u(0.08, 0.15), 1000, 9000, u(0.6, 0.8))
        if want("hat"):
            kit["hat"] = metal(rng, sr, u(0.03, 0.06), u(350, 550), 0.6, u(7000, 9000))
        if want("open_hat"):
            kit["open_hat"] = metal(rng, sr, u(0.2, 0.35), u(350, 550), 0.6, u(6000, 8000))
    else:
        if style == "metal":
            kit["kick"] = kick(
                rng, sr, u(120, 170), u(50, 65), u(0.01, 0.02), u(0.06, 0.12), u(0.8, 1.5)
            )
            kit["snare"] = snare(rng, sr, u(200, 260), 0.04, u(0.1, 0.2), 800, 8000, 0.7)
        elif style == "jazz":
            kit["kick"] = kick(rng, sr, u(90, 120), u(60, 80), 0.03, u(0.1, 0.2), 0.1)
            kit["snare"] = snare(rng, sr, u(230, 300), 0.06, u(0.08, 0.15), 1500, 7000, 0.5)
        elif style == "brushes":
            kit["kick"] = kick(rng, sr, u(90, 120), u(55, 75), 0.03, u(0.1, 0.2), 0.05)
            kit["snare"] = brush(rng, sr, u(0.12, 0.25))
        elif style == "reggae":
            kit["kick"] = kick(rng, sr, u(90, 130), u(45, 60), 0.03, u(0.15, 0.3), 0.2)
            kit["snare"] = snare(rng, sr, u(300, 420), 0.05, u(0.05, 0.1), 1500, 8000, 0.45)
        elif style == "disco":
            kit["kick"] = kick(rng, sr, u(110, 160), u(50, 65), 0.025, u(0.1, 0.2), 0.4)
            kit["snare"] = snare(rng, sr, u(180, 230), 0.05, u(0.1, 0.18), 1000, 8000, 0.6)
        else:  # acoustic
            kit["kick"] = kick(
                rng, sr, u(100, 150), u(50, 65), u(0.02, 0.04), u(0.1, 0.25), u(0.3, 0.8)
            )
            kit["snare"] = snare(rng, sr, u(170, 230), 0.06, u(0.1, 0.25), 800, 8000, u(0.5, 0.75))
        if want("hat"):
            kit["hat"] = metal(rng, sr, u(0.03, 0.07), u(300, 450), u(0.5, 1.5), u(5000, 8000))
        if want("open_hat"):
            kit["open_hat"] = metal(rng, sr, u(0.2, 0.4), u(300, 450), u(0.5, 1.5), u(5000, 8000))
    if want("ride"):
        kit["ride"] = metal(rng, sr, u(0.4, 0.9), u(500, 700), u(0.3, 0.8), u(3000, 5000))
    if want("crash"):
        kit["crash"] = metal(rng, sr, u(0.6, 1.2), u(350, 500), u(1.5, 3.0), u(2500, 4000))
    if want("rim"):
        kit["rim"] = rim(rng, sr, u(350, 550))
    if want("tom_hi"):
        kit["tom_hi"] = tom(u(180, 240))
    if want("tom_lo"):
        kit["tom_lo"] = tom(u(90, 130))
    if want("shaker"):
        kit["shaker"] = brush(rng, sr, u(0.05, 0.09))
    if want("timpani"):
        kit["timpani"] = kick(rng, sr, u(100, 120), u(85, 100), 0.05, u(0.5, 1.0), 0.05)
    return kit
