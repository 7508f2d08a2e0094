"""Music theory for the synthetic corpus: scales, chords, progressions, the swung time grid,
voicings and a motif-based melody generator.

Melodies are built from a one-bar rhythmic motif that repeats with variation over a phrase,
and pitches move mostly by step, landing on chord tones on strong beats: enough structure
that the result is heard as a tune rather than random notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "pent_major": (0, 2, 4, 7, 9),
    "pent_minor": (0, 3, 5, 7, 10),
}

CHORDS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "9": (0, 4, 7, 10, 14),
    "m9": (0, 3, 7, 10, 14),
    "6": (0, 4, 7, 9),
    "sus4": (0, 5, 7),
    "dim": (0, 3, 6),
    "5": (0, 7),
}

# name -> (melody scale, [(root offset from key, quality), one per bar])
PROGRESSIONS: dict[str, tuple[str, tuple[tuple[int, str], ...]]] = {
    "blues12": (
        "blues",
        (
            (0, "7"),
            (5, "7"),
            (0, "7"),
            (0, "7"),
            (5, "7"),
            (5, "7"),
            (0, "7"),
            (0, "7"),
            (7, "7"),
            (5, "7"),
            (0, "7"),
            (7, "7"),
        ),
    ),
    "blues_minor": (
        "pent_minor",
        (
            (0, "m7"),
            (5, "m7"),
            (0, "m7"),
            (0, "m7"),
            (5, "m7"),
            (5, "m7"),
            (0, "m7"),
            (0, "m7"),
            (8, "7"),
            (7, "7"),
            (0, "m7"),
            (7, "7"),
        ),
    ),
    "rock_mixo": ("mixolydian", ((0, "maj"), (10, "maj"), (5, "maj"), (0, "maj"))),
    "rock_145": ("pent_major", ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj"))),
    "rock_minor": ("pent_minor", ((0, "min"), (8, "maj"), (10, "maj"), (0, "min"))),
    "pop_axis": ("major", ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj"))),
    "pop_vi": ("major", ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj"))),
    "pop_50s": ("major", ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj"))),
    "metal_aeolian": ("minor", ((0, "5"), (8, "5"), (10, "5"), (0, "5"))),
    "metal_phrygian": ("phrygian", ((0, "5"), (1, "5"), (0, "5"), (10, "5"))),
    "metal_harmonic": ("harmonic_minor", ((0, "5"), (0, "5"), (8, "5"), (7, "5"))),
    "country_145": ("pent_major", ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj"))),
    "country_long": (
        "major",
        (
            (0, "maj"),
            (0, "maj"),
            (5, "maj"),
            (5, "maj"),
            (7, "7"),
            (7, "7"),
            (0, "maj"),
            (0, "maj"),
        ),
    ),
    "disco_minor": ("dorian", ((0, "m7"), (0, "m7"), (5, "m7"), (5, "m7"))),
    "disco_25": ("major", ((2, "m7"), (7, "7"), (2, "m7"), (7, "7"))),
    "disco_maj7": ("major", ((0, "maj7"), (5, "maj7"), (0, "maj7"), (5, "maj7"))),
    "hiphop_minor": ("minor", ((0, "m7"), (8, "maj7"), (0, "m7"), (8, "maj7"))),
    "hiphop_dorian": ("dorian", ((0, "m9"), (5, "m7"), (0, "m9"), (5, "m7"))),
    "hiphop_loop": ("pent_minor", ((0, "m7"), (0, "m7"), (0, "m7"), (0, "m7"))),
    "reggae_14": ("major", ((0, "maj"), (5, "maj"), (0, "maj"), (5, "maj"))),
    "reggae_minor": ("dorian", ((0, "min"), (5, "min"), (0, "min"), (5, "min"))),
    "reggae_15": ("major", ((0, "maj"), (7, "maj"), (5, "maj"), (7, "maj"))),
    "jazz_251": ("major", ((2, "m7"), (7, "7"), (0, "maj7"), (9, "7"))),
    "jazz_turn": ("major", ((0, "maj7"), (9, "m7"), (2, "m7"), (7, "9"))),
    "jazz_minor": ("dorian", ((2, "m7b5"), (7, "7"), (0, "m7"), (0, "m7"))),
    "classical_cadence": ("major", ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj"))),
    "classical_circle": ("major", ((0, "maj"), (9, "min"), (2, "min"), (7, "7"))),
    "classical_minor": ("harmonic_minor", ((0, "min"), (5, "min"), (7, "7"), (0, "min"))),
    "classical_canon": (
        "major",
        (
            (0, "maj"),
            (7, "maj"),
            (9, "min"),
            (4, "min"),
            (5, "maj"),
            (0, "maj"),
            (5, "maj"),
            (7, "maj"),
        ),
    ),
}


@dataclass(frozen=True)
class Grid:
    """Tempo, meter and swing: maps (bar, sixteenth step) to seconds."""

    bpm: float
    beats: int  # beats per bar
    swing: float  # 0.5 straight; 2/3 triplet shuffle (where the off-eighth lands in a beat)
    swing16: float = 0.5  # 0.5 straight sixteenths; ~0.55-0.6 hip-hop swing

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        return self.beats * self.beat_s

    @property
    def steps(self) -> int:
        return 4 * self.beats

    def time(self, bar: float, step: float) -> float:
        beat, frac = divmod(step / 4.0, 1.0)
        if self.swing16 != 0.5:  # sixteenth swing inside each half beat
            half, hf = divmod(frac * 2.0, 1.0)
            s = self.swing16
            hf = hf / 0.5 * s if hf < 0.5 else s + (hf - 0.5) / 0.5 * (1 - s)
            f = (half + hf) / 2.0
        else:  # eighth swing: the off-eighth lands at ``swing`` of the beat
            s = self.swing
            f = frac / 0.5 * s if frac < 0.5 else s + (frac - 0.5) / 0.5 * (1 - s)
        return bar * self.bar_s + (beat + f) * self.beat_s


def voicing(root_pc: int, quality: str, center: int, n_max: int = 5) -> list[int]:
    """MIDI notes of a chord in close position around ``center`` (simple voice leading)."""
    notes = []
    for iv in CHORDS[quality][:n_max]:
        pc = (root_pc + iv) % 12
        cand = center - 6 + ((pc - (center - 6)) % 12)
        notes.append(cand)
    return sorted(set(notes))


def power_chord(root_pc: int, low: int) -> list[int]:
    root = low + ((root_pc - low) % 12)
    return [root, root + 7, root + 12]


def chord_pcs(root_pc: int, quality: str) -> list[int]:
    return [(root_pc + iv) % 12 for iv in CHORDS[quality]]


def scale_notes(key: int, scale: str, lo: int, hi: int) -> np.ndarray:
    pcs = {(key + s) % 12 for s in SCALES[scale]}
    return np.array([m for m in range(lo, hi + 1) if m % 12 in pcs])


RHYTHM_CELLS: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = {
    # (start step, length in steps) inside one 4/4 bar of 16 steps
    "sparse": (
        ((0, 6), (8, 6)),
        ((0, 4), (6, 2), (8, 8)),
        ((2, 4), (8, 4), (12, 4)),
        ((0, 12),),
        ((4, 4), (8, 8)),
    ),
    "medium": (
        ((0, 2), (2, 2), (4, 4), (8, 2), (10, 2), (12, 4)),
        ((0, 4), (4, 2), (6, 2), (8, 4), (12, 2), (14, 2)),
        ((0, 3), (3, 3), (6, 2), (8, 4), (12, 4)),
        ((2, 2), (4, 2), (6, 4), (10, 2), (12, 4)),
        ((0, 2), (2, 4), (6, 2), (8, 2), (10, 6)),
    ),
    "busy": (
        tuple((i, 1) for i in range(16)),
        tuple((i, 2) for i in range(0, 16, 2)),
        (
            (0, 1),
            (1, 1),
            (2, 2),
            (4, 1),
            (5, 1),
            (6, 2),
            (8, 1),
            (9, 1),
            (10, 1),
            (11, 1),
            (12, 2),
            (14, 2),
        ),
        (
            (0, 2),
            (2, 1),
            (3, 1),
            (4, 2),
            (6, 1),
            (7, 1),
            (8, 2),
            (10, 2),
            (12, 1),
            (13, 1),
            (14, 2),
        ),
    ),
    "rap": (
        (
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 2),
            (6, 1),
            (7, 1),
            (8, 1),
            (9, 1),
            (10, 2),
            (12, 1),
            (13, 1),
            (14, 1),
            (15, 1),
        ),
        (
            (0, 2),
            (2, 1),
            (3, 1),
            (4, 1),
            (5, 1),
            (6, 2),
            (8, 2),
            (10, 1),
            (11, 1),
            (12, 2),
            (14, 1),
            (15, 1),
        ),
        (
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 1),
            (6, 1),
            (7, 1),
            (8, 1),
            (9, 1),
            (10, 1),
            (11, 1),
            (12, 1),
            (14, 2),
        ),
    ),
}


@dataclass(frozen=True)
class MelNote:
    bar: int
    step: float
    length: float  # steps
    midi: int
    vel: float


def melody(
    rng: np.random.Generator,
    chords: list[tuple[int, str]],
    key: int,
    scale: str,
    register: tuple[int, int],
    density: str,
    start_bar: int,
    n_bars: int,
    steps_per_bar: int,
    motif: list[tuple[int, int]] | None = None,
    leap: float = 0.15,
) -> tuple[list[MelNote], list[tuple[int, int]]]:
    """A phrase over bars ``start_bar .. start_bar + n_bars``; returns notes and the motif.

    Passing the motif of an earlier phrase back in makes the tune repeat recognisably, as
    verses and hooks do.
    """
    lo, hi = register
    pool = scale_notes(key, scale, lo, hi)
    while len(pool) < 6:  # a narrow register (rap) still needs room to move
        lo, hi = lo - 1, hi + 1
        pool = scale_notes(key, scale, lo, hi)
    if motif is None:
        cells = RHYTHM_CELLS[density]
        motif = [c for c in cells[int(rng.integers(len(cells)))] if c[0] < steps_per_bar]
    cur = int(pool[int(np.clip(len(pool) // 2 + rng.integers(-2, 3), 0, len(pool) - 1))])
    out: list[MelNote] = []
    for b in range(n_bars):
        bar = start_bar + b
        root, quality = chords[bar % len(chords)]
        tones = set(chord_pcs((key + root) % 12, quality))
        rhythm = motif
        if b > 0 and rng.random() < 0.35:  # vary the motif: drop or split a note
            rhythm = [c for c in motif if rng.random() > 0.2] or motif
        for i, (step, length) in enumerate(rhythm):
            strong = step % 4 == 0
            if strong:
                cands = [m for m in pool if m % 12 in tones and abs(m - cur) <= 7]
                nxt = int(rng.choice(cands)) if cands else cur
            elif rng.random() < leap:
                nxt = int(rng.choice(pool))
            else:
                idx = int(np.searchsorted(pool, cur))
                idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2]), 0, len(pool) - 1))
                nxt = int(pool[idx])
            cur = nxt
            last = b == n_bars - 1 and i == len(rhythm) - 1
            ln = min(length * (2 if last else 1), steps_per_bar - step)
            vel = 0.75 + 0.25 * strong + rng.normal(0, 0.05)
            out.append(MelNote(bar, float(step), float(ln), cur, float(np.clip(vel, 0.3, 1.0))))
    return out, motif
