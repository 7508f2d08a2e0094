"""Pitched instruments: harmonic spectra, envelopes and articulations of the synthetic corpus.

An instrument is a :class:`Timbre` (a recipe for a harmonic spectrum plus envelopes) played
by a :class:`Voice`, which renders one note at a time from band-limited wavetables (additive
synthesis via one small inverse FFT per pitch), FM pairs (electric piano, bells) or a
formant filter over a glottal-like source (the singer). Each clip jitters every timbre it
uses, so two clips of one genre never share exactly the same instruments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from genreflow.sources.synthetic import dsp

# Vowel formants (F1, F2, F3) in Hz for an adult male voice; scaled per singer.
VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),  # a
    (530.0, 1840.0, 2480.0),  # e
    (270.0, 2290.0, 3010.0),  # i
    (570.0, 840.0, 2410.0),  # o
    (300.0, 870.0, 2240.0),  # u
)


@dataclass(frozen=True)
class Timbre:
    """How one instrument sounds; every field is a plain number so clips can jitter it."""

    kind: str = "harm"  # harm | fm | voice
    slope: float = 1.0  # harmonic k has amplitude k**-slope
    even: float = 1.0  # gain on even harmonics (0.1: clarinet-like, hollow)
    pluck_pos: float = 0.0  # >0: comb notches of a string plucked/struck at this fraction
    partials: tuple[float, ...] = ()  # explicit harmonic amplitudes (organ drawbars)
    formants: tuple[tuple[float, float, float], ...] = ()  # (Hz, bandwidth Hz, gain)
    dark_k: float = 0.0  # >0: a second, darker table (harmonics fade by exp(-(k-1)/dark_k))
    bright_tau: float = 0.2  # seconds over which the bright table fades into the dark one
    attack: float = 0.005
    decay: float = 0.5
    sustain: float = 0.5
    release: float = 0.05
    decay_pitch: float = 0.0  # >0: decay shortens with pitch (strings, piano)
    vib_rate: float = 0.0
    vib_depth: float = 0.0  # semitones
    vib_delay: float = 0.15
    voices: int = 1  # ensemble: detuned copies
    detune: float = 0.0  # cents spread of the ensemble
    breath: float = 0.0  # noise share (breath, bow, pick)
    breath_band: tuple[float, float] = (1500.0, 6000.0)
    fm_ratio: float = 1.0
    fm_index: float = 0.0
    fm_decay: float = 0.3
    max_harm: int = 60
    formant_scale: float = 1.0  # singer / body size


BASE_TIMBRES: dict[str, Timbre] = {
    "piano": Timbre(
        slope=1.2,
        pluck_pos=0.12,
        dark_k=2.5,
        bright_tau=0.25,
        attack=0.002,
        decay=0.9,
        sustain=0.0,
        release=0.08,
        decay_pitch=0.6,
        max_harm=30,
    ),
    "epiano": Timbre(
        kind="fm",
        fm_ratio=1.0,
        fm_index=2.2,
        fm_decay=0.25,
        attack=0.002,
        decay=1.2,
        sustain=0.05,
        release=0.1,
        decay_pitch=0.4,
    ),
    "organ": Timbre(
        partials=(1.0, 0.8, 0.5, 0.6, 0.0, 0.4, 0.0, 0.3),
        attack=0.01,
        decay=1.0,
        sustain=1.0,
        release=0.05,
        vib_rate=6.5,
        vib_depth=0.04,
        vib_delay=0.0,
        breath=0.01,
    ),
    "clean_guitar": Timbre(
        slope=1.0,
        pluck_pos=0.2,
        dark_k=2.0,
        bright_tau=0.12,
        formants=((110.0, 60.0, 2.0), (220.0, 120.0, 1.0)),
        attack=0.002,
        decay=0.7,
        sustain=0.0,
        release=0.05,
        decay_pitch=0.5,
        max_harm=35,
    ),
    "acoustic_guitar": Timbre(
        slope=0.9,
        pluck_pos=0.15,
        dark_k=3.0,
        bright_tau=0.15,
        formants=((100.0, 50.0, 3.0), (250.0, 150.0, 1.5), (3000.0, 1500.0, 0.8)),
        attack=0.002,
        decay=0.9,
        sustain=0.0,
        release=0.05,
        decay_pitch=0.5,
        breath=0.03,
        breath_band=(3000.0, 8000.0),
    ),
    "dist_guitar": Timbre(
        slope=0.8,
        even=0.9,
        attack=0.004,
        decay=0.6,
        sustain=0.75,
        release=0.04,
        vib_rate=5.0,
        vib_depth=0.05,
        max_harm=40,
    ),
    "muted_guitar": Timbre(
        slope=1.1,
        pluck_pos=0.18,
        dark_k=1.5,
        bright_tau=0.04,
        attack=0.002,
        decay=0.07,
        sustain=0.0,
        release=0.02,
    ),
    "bass_finger": Timbre(
        slope=1.7,
        pluck_pos=0.25,
        dark_k=1.5,
        bright_tau=0.1,
        attack=0.004,
        decay=0.6,
        sustain=0.35,
        release=0.05,
        max_harm=20,
    ),
    "bass_synth": Timbre(
        slope=1.0,
        dark_k=1.2,
        bright_tau=0.1,
        attack=0.003,
        decay=0.3,
        sustain=0.7,
        release=0.04,
        max_harm=30,
    ),
    "bass_808": Timbre(slope=4.0, attack=0.003, decay=0.9, sustain=0.45, release=0.08, max_harm=6),
    "upright": Timbre(
        slope=2.0,
        pluck_pos=0.3,
        dark_k=1.2,
        bright_tau=0.08,
        attack=0.006,
        decay=0.35,
        sustain=0.05,
        release=0.05,
        max_harm=15,
    ),
    "bowed_bass": Timbre(
        slope=1.1,
        formants=((250.0, 150.0, 2.0),),
        attack=0.09,
        decay=1.0,
        sustain=0.9,
        release=0.12,
        vib_rate=5.0,
        vib_depth=0.1,
        voices=2,
        detune=6.0,
        breath=0.01,
        breath_band=(800.0, 3000.0),
        max_harm=30,
    ),
    "strings": Timbre(
        slope=1.0,
        formants=((300.0, 200.0, 1.5), (1000.0, 500.0, 1.0), (3000.0, 1500.0, 0.7)),
        attack=0.2,
        decay=1.0,
        sustain=0.9,
        release=0.25,
        vib_rate=5.5,
        vib_depth=0.12,
        voices=3,
        detune=9.0,
        breath=0.01,
        max_harm=40,
    ),
    "brass": Timbre(
        slope=0.9,
        formants=((1200.0, 900.0, 2.0),),
        attack=0.03,
        decay=0.4,
        sustain=0.8,
        release=0.06,
        vib_rate=5.0,
        vib_depth=0.05,
        voices=2,
        detune=5.0,
        breath=0.02,
        max_harm=30,
    ),
    "sax": Timbre(
        slope=0.9,
        even=0.8,
        formants=((600.0, 300.0, 2.0), (1500.0, 600.0, 1.5), (2800.0, 900.0, 0.6)),
        attack=0.03,
        decay=0.5,
        sustain=0.8,
        release=0.06,
        vib_rate=5.2,
        vib_depth=0.1,
        vib_delay=0.2,
        breath=0.06,
        max_harm=35,
    ),
    "flute": Timbre(
        slope=2.8,
        even=0.6,
        attack=0.06,
        decay=0.5,
        sustain=0.85,
        release=0.08,
        vib_rate=5.0,
        vib_depth=0.08,
        breath=0.12,
        breath_band=(1000.0, 8000.0),
    ),
    "clarinet": Timbre(
        slope=1.2,
        even=0.12,
        attack=0.04,
        decay=0.5,
        sustain=0.85,
        release=0.06,
        vib_rate=5.0,
        vib_depth=0.02,
        breath=0.04,
        max_harm=30,
    ),
    "fiddle": Timbre(
        slope=0.9,
        formants=((450.0, 250.0, 2.0), (2500.0, 1200.0, 1.2)),
        attack=0.05,
        decay=0.6,
        sustain=0.85,
        release=0.08,
        vib_rate=6.0,
        vib_depth=0.18,
        vib_delay=0.1,
        breath=0.03,
        breath_band=(2000.0, 7000.0),
    ),
    "steel_guitar": Timbre(
        slope=1.4,
        attack=0.02,
        decay=1.5,
        sustain=0.5,
        release=0.15,
        vib_rate=5.0,
        vib_depth=0.1,
        vib_delay=0.3,
        max_harm=30,
    ),
    "harmonica": Timbre(
        slope=0.8,
        even=0.6,
        formants=((1500.0, 800.0, 2.0),),
        attack=0.02,
        decay=0.4,
        sustain=0.8,
        release=0.05,
        vib_rate=6.0,
        vib_depth=0.1,
        breath=0.06,
        max_harm=30,
    ),
    "lead_synth": Timbre(
        slope=1.0,
        even=0.2,
        dark_k=4.0,
        bright_tau=0.3,
        attack=0.01,
        decay=0.4,
        sustain=0.7,
        release=0.08,
        vib_rate=5.5,
        vib_depth=0.12,
        vib_delay=0.2,
        voices=2,
        detune=10.0,
    ),
    "pad": Timbre(
        slope=1.6,
        attack=0.35,
        decay=1.0,
        sustain=0.9,
        release=0.4,
        voices=3,
        detune=12.0,
        max_harm=25,
    ),
    "bell": Timbre(
        kind="fm",
        fm_ratio=3.5,
        fm_index=3.0,
        fm_decay=0.4,
        attack=0.001,
        decay=1.5,
        sustain=0.0,
        release=0.2,
    ),
    "voice": Timbre(
        kind="voice",
        slope=1.1,
        attack=0.04,
        decay=0.5,
        sustain=0.85,
        release=0.08,
        vib_rate=5.5,
        vib_depth=0.15,
        vib_delay=0.18,
        breath=0.04,
        breath_band=(2000.0, 7000.0),
    ),
}


def jitter_timbre(t: Timbre, rng: np.random.Generator, amount: float = 1.0) -> Timbre:
    """A per-clip variant: same instrument family, different player/recording."""

    def mul(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi)) * amount))

    formants = tuple(
        (f * mul(0.8, 1.25), bw * mul(0.8, 1.25), g * mul(0.6, 1.6)) for f, bw, g in t.formants
    )
    return dataclasses.replace(
        t,
        slope=max(0.3, t.slope * mul(0.75, 1.3)),
        even=min(1.0, t.even * mul(0.7, 1.4)),
        pluck_pos=t.pluck_pos * mul(0.7, 1.4) if t.pluck_pos else 0.0,
        formants=formants,
        bright_tau=t.bright_tau * mul(0.6, 1.6),
        attack=t.attack * mul(0.6, 1.6),
        decay=t.decay * mul(0.6, 1.6),
        sustain=min(1.0, t.sustain * mul(0.8, 1.2)),
        vib_rate=t.vib_rate * mul(0.85, 1.15),
        vib_depth=t.vib_depth * mul(0.5, 1.5),
        detune=t.detune * mul(0.6, 1.5),
        breath=t.breath * mul(0.5, 2.0),
        fm_index=t.fm_index * mul(0.6, 1.5),
        fm_ratio=t.fm_ratio if t.fm_ratio == 1.0 else t.fm_ratio * mul(0.9, 1.1),
        formant_scale=t.formant_scale * mul(0.9, 1.2),
    )


class Voice:
    """Renders notes of one jittered timbre; caches wavetables per pitch within a clip."""

    def __init__(self, timbre: Timbre, sr: int, rng: np.random.Generator) -> None:
        self.t = timbre
        self.sr = sr
        self.rng = rng
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}
        self._noise: np.ndarray | None = None

    # ----------------------------------------------------------------- spectra
    def _amps(self, f0: float, vowel: int) -> np.ndarray:
        t = self.t
        nh = dsp.n_harmonics(f0, self.sr, t.max_harm)
        k = np.arange(1, nh + 1, dtype=np.float64)
        if t.partials:
            amps = np.zeros(nh)
            m = min(nh, len(t.partials))
            amps[:m] = t.partials[:m]
        else:
            amps = k ** (-t.slope)
            amps[1::2] *= t.even
        if t.pluck_pos > 0:
            amps *= 0.15 + np.abs(np.sin(np.pi * k * t.pluck_pos))
        freqs = k * f0
        forms = list(t.formants)
        if t.kind == "voice":
            forms = [
                (f * t.formant_scale, 60.0 + 0.06 * f, g)
                for f, g in zip(VOWELS[vowel], (12.0, 8.0, 4.0), strict=True)
            ]
        if forms:
            shape = np.full(nh, 0.3 if t.kind == "voice" else 1.0)
            for f, bw, g in forms:
                fs = f * (t.formant_scale if t.kind != "voice" else 1.0)
                shape += g / np.sqrt(1.0 + ((freqs - fs) / (0.5 * bw)) ** 2)
            amps = amps * shape
        return amps

    def _table(self, f0: float, vowel: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = (int(round(12 * np.log2(f0 / 440.0) * 4)), vowel)  # quarter-tone buckets
        hit = self._tables.get(key)
        if hit is None:
            amps = self._amps(f0, vowel)
            bright = dsp.harmonic_table(amps)
            dark = None
            if self.t.dark_k > 0:
                k = np.arange(len(amps), dtype=np.float64)
                dark = dsp.harmonic_table(amps * np.exp(-k / self.t.dark_k))
            hit = (bright, dark)
            self._tables[key] = hit
        return hit

    def _noise_buf(self) -> np.ndarray:
        if self._noise is None:
            lo, hi = self.t.breath_band
            raw = self.rng.standard_normal(self.sr).astype(np.float32)
            self._noise = dsp.bandpass(raw, lo, min(hi, 0.45 * self.sr), self.sr)
            self._noise /= np.std(self._noise) + 1e-9
            self._noise = np.concatenate([self._noise, self._noise])
        return self._noise

    # ----------------------------------------------------------------- notes
    def note(
        self,
        midi: float,
        dur: float,
        vel: float = 1.0,
        *,
        vowel: int = 0,
        glide: float = 0.0,
        glide_time: float = 0.06,
        bend: float = 0.0,
        bend_at: float = 0.3,
    ) -> np.ndarray:
        """One note of ``dur`` seconds (plus release tail) at MIDI pitch ``midi``.

        ``glide`` starts the note that many semitones off and slides in (slides, 808s,
        scoops); ``bend`` bends up by that many semitones after ``bend_at`` of the note.
        """
        t, sr = self.t, self.sr
        n = max(8, int((dur + t.release) * sr))
        f0 = float(dsp.midi_to_hz(midi))
        semis = None
        if glide or bend:
            tt = dsp.ramp(n, sr)
            semis = np.zeros(n, dtype=np.float32)
            if glide:
                semis += glide * np.exp(-tt / max(glide_time, 1e-3))
            if bend:
                start = bend_at * dur
                semis += bend * np.clip((tt - start) / 0.12, 0.0, 1.0)
        ratio = None
        if t.vib_depth > 0:
            ratio = dsp.vibrato(n, sr, t.vib_rate, t.vib_depth, t.vib_delay)
        if semis is not None:
            r2 = np.exp2(semis.astype(np.float64) / 12.0)
            ratio = r2 if ratio is None else ratio * r2
        freq = f0 if ratio is None else f0 * ratio

        decay = t.decay
        if t.decay_pitch > 0:
            decay = decay * (220.0 / f0) ** t.decay_pitch
            decay = float(np.clip(decay, 0.05, 4.0))
        env = dsp.envelope(n, sr, t.attack, decay, t.sustain, t.release)

        if t.kind == "fm":
            ph = dsp.phase_of(freq, n, sr, self.rng.uniform())
            tt = dsp.ramp(n, sr)
            index = t.fm_index * (0.2 + 0.8 * np.exp(-tt / t.fm_decay)) * (0.5 + 0.5 * vel)
            mod = np.sin(2 * np.pi * t.fm_ratio * ph).astype(np.float32)
            out = np.sin(2 * np.pi * ph + index * mod).astype(np.float32)
        else:
            bright, dark = self._table(f0, vowel)
            out = np.zeros(n, dtype=np.float32)
            nv = max(1, t.voices)
            for v in range(nv):
                cents = 0.0 if nv == 1 else t.detune * (2.0 * v / (nv - 1) - 1.0)
                fv = freq * 2.0 ** (cents / 1200.0)
                ph = dsp.phase_of(fv, n, sr, self.rng.uniform())
                if dark is not None:  # bright attack fading into a darker sustain (plucks)
                    w = np.exp(dsp.ramp(n, sr) * np.float32(-1.0 / max(t.bright_tau, 1e-3)))
                    idx = dsp.table_index(ph)
                    out += dark[idx] + w * (bright[idx] - dark[idx])
                else:
                    out += dsp.lookup(bright, ph)
            if nv > 1:
                out /= np.sqrt(nv)
        if t.breath > 0:
            buf = self._noise_buf()
            start = int(self.rng.integers(0, len(buf) // 2))
            if n <= len(buf) - start:
                out += (t.breath * 1.5) * buf[start : start + n]
            else:
                out += (t.breath * 1.5) * np.resize(buf[start:], n)
        return (out * env * vel).astype(np.float32)
