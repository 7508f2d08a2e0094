"""From a genre recipe to rendered instrument buses: plan, sections, grooves, parts.

A clip is planned once (:func:`draw_plan`: tempo, key, groove, bass line, harmony, comping,
leads, song structure, production), then arranged in phrases of a few seconds. Sections
alternate (verse/chorus, call/response, solo trading, dub drops, breakdowns, dynamics), so
cues that identify a style unfold over more than one 3-s window.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from genreflow.sources.synthetic import dsp
from genreflow.sources.synthetic import theory as th
from genreflow.sources.synthetic.drums import make_kit
from genreflow.sources.synthetic.instruments import BASE_TIMBRES, Voice, jitter_timbre
from genreflow.sources.synthetic.styles import (
    BORROW,
    BORROW_SCALE,
    GROUPS,
    NEIGHBOURS,
    RECIPES,
    REGISTERS,
    Recipe,
)

# Drum grooves: section variant -> voice -> 16-step (one 4/4 bar) pattern.
# Velocity letters: X 1.0, x 0.8, o 0.55, g 0.3 (ghost), . rest. 3/4 bars use the first 12.
GROOVES: dict[str, dict[str, dict[str, str]]] = {
    "none": {"A": {}, "B": {}},
    "rock": {
        "A": {"kick": "x.......x.x.....", "snare": "....X.......X...", "hat": "x.o.x.o.x.o.x.o."},
        "B": {"kick": "x.......x.x.....", "snare": "....X.......X...", "ride": "x.o.x.o.x.o.x.o."},
    },
    "rock_drive": {
        "A": {"kick": "x...x...x...x...", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
        "B": {
            "kick": "x...x...x.x.x...",
            "snare": "....X.......X...",
            "open_hat": "x.o.x.o.x.o.x.o.",
        },
    },
    "rock_half": {
        "A": {"kick": "x.........x.....", "snare": "........X.......", "hat": "x.x.x.x.x.x.x.x."},
        "B": {"kick": "x.......x.x.....", "snare": "....X.......X...", "ride": "x.o.x.o.x.o.x.o."},
    },
    "metal_double": {
        "A": {"kick": "xxxxxxxxxxxxxxxx", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
        "B": {"kick": "x.x.x.x.x.x.x.x.", "snare": ".x.x.x.x.x.x.x.x", "ride": "x.x.x.x.x.x.x.x."},
    },
    "metal_gallop": {
        "A": {"kick": "x.xxx.xxx.xxx.xx", "snare": "....X.......X...", "crash": "x...x...x...x..."},
        "B": {"kick": "x..x..x...x..x..", "snare": "........X.......", "crash": "x.......x......."},
    },
    "shuffle": {
        "A": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."},
        "B": {"kick": "x.....o.x.....o.", "snare": "....X.......X...", "ride": "x.o.x.o.x.o.x.o."},
    },
    "slow_blues": {
        "A": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."},
        "B": {"kick": "x.......x.......", "snare": "....x.......x...", "ride": "xgoxgoxgoxgoxgo."},
    },
    "boomchick": {
        "A": {"kick": "x.......x.......", "rim": "....x.......x...", "hat": "o.o.o.o.o.o.o.o."},
        "B": {"kick": "x.......x.......", "snare": "....X.......X...", "hat": "x.o.x.o.x.o.x.o."},
    },
    "train": {
        "A": {"kick": "x.......x.......", "snare": "g.o.x.o.g.o.x.o."},
        "B": {"kick": "x...x...x...x...", "snare": "o.o.X.o.o.o.X.o.", "hat": "x.x.x.x.x.x.x.x."},
    },
    "disco": {
        "A": {
            "kick": "x...x...x...x...",
            "snare": "....x.......x...",
            "hat": "x...x...x...x...",
            "open_hat": "..x...x...x...x.",
        },
        "B": {
            "kick": "x...x...x...x...",
            "snare": "....X.......X...",
            "hat": "xoxoxoxoxoxoxoxo",
            "open_hat": "..x...x...x...x.",
        },
    },
    "pop": {
        "A": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
        "B": {"kick": "x.....x.x.....x.", "snare": "....X.......X...", "hat": "xoxoxoxoxoxoxoxo"},
    },
    "pop_four": {
        "A": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
        "B": {
            "kick": "x...x...x...x...",
            "snare": "....X.......X...",
            "hat": "..x...x...x...x.",
            "shaker": "xoxoxoxoxoxoxoxo",
        },
    },
    "boombap": {
        "A": {"kick": "x......x..x.....", "snare": "....X.......X...", "hat": "x.o.x.o.x.o.x.oo"},
        "B": {
            "kick": "x.x.......x..x..",
            "snare": "....X.......X..g",
            "hat": "x.o.x.o.x.o.x.o.",
            "open_hat": "..............x.",
        },
    },
    "halftime": {
        "A": {"kick": "x.........x.....", "snare": "........X.......", "hat": "xoxoxoxoxoxoxoxo"},
        "B": {
            "kick": "x.....x...x.....",
            "snare": "........X.......",
            "hat": "x.x.x.x.x.x.x.x.",
            "open_hat": "......x.......x.",
        },
    },
    "one_drop": {
        "A": {"kick": "........x.......", "rim": "........x.......", "hat": "x.o.x.o.x.o.x.o."},
        "B": {
            "kick": "........x.......",
            "snare": "........X.......",
            "hat": "x.o.x.o.x.o.x.o.",
            "open_hat": "......x.......x.",
        },
    },
    "rockers": {
        "A": {"kick": "x...x...x...x...", "rim": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."},
        "B": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    },
    "steppers": {
        "A": {"kick": "x...x...x...x...", "rim": "........x.......", "hat": "x.o.x.o.x.o.x.o."},
        "B": {"kick": "x...x...x...x...", "snare": "........X.......", "hat": "xoxoxoxoxoxoxoxo"},
    },
    "jazz_swing": {
        "A": {"ride": "x...x.o.x...x.o.", "hat": "....x.......x...", "kick": "g...g...g...g..."},
        "B": {"ride": "X...x.o.X...x.o.", "hat": "....x.......x...", "kick": "g.......g......."},
    },
    "jazz_brush": {
        "A": {"snare": "o...o...o...o...", "hat": "....x.......x..."},
        "B": {"ride": "x...x.o.x...x.o.", "snare": "o...o...o...o...", "hat": "....x.......x..."},
    },
}
_VEL = {"X": 1.0, "x": 0.8, "o": 0.55, "g": 0.3}
_NO_FILL = {"none", "jazz_swing", "jazz_brush", "boombap", "halftime"}

GUITARS = {"dist_guitar", "clean_guitar", "muted_guitar", "acoustic_guitar"}


@dataclass(frozen=True)
class ClipPlan:
    """Every random musical decision of one clip, drawn before any sound is made."""

    genre: str
    origin: dict[str, str]  # component group -> genre whose recipe it came from
    bpm: float
    beats: int
    swing: float
    swing16: float
    humanize_ms: float
    groove: str
    kit: str
    bass_style: str
    bass_timbre: str
    progression: str
    comp_style: str
    comp_timbre: str
    drive: float
    vocal: bool
    vocal_style: str
    lead_style: str
    lead_timbre: str
    answer_style: str
    answer_timbre: str
    structure: str
    reverb: float
    room: float
    echo: bool
    lofi: bool
    snr_db: float
    mix: dict[str, float] = field(default_factory=dict)
    key: int = 0


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def draw_plan(genre: str, rng: np.random.Generator) -> ClipPlan:
    """Draw a clip's plan: each component group from ``genre`` or, sometimes, a neighbour."""
    p = BORROW * BORROW_SCALE.get(genre, 1.0)
    names = list(NEIGHBOURS[genre])
    weights = np.array([NEIGHBOURS[genre][n] for n in names])
    weights = weights / weights.sum()
    origin: dict[str, str] = {}
    src: dict[str, Recipe] = {}
    for g in GROUPS:
        if rng.random() < p:
            origin[g] = names[int(rng.choice(len(names), p=weights))]
        else:
            origin[g] = genre
        src[g] = RECIPES[origin[g]]

    t = src["tempo"]
    meters = np.array([w for _, w in t.meters])
    beats = t.meters[int(rng.choice(len(meters), p=meters / meters.sum()))][0]
    lead = src["lead"]
    prod = src["production"]
    comp = src["comp"]
    return ClipPlan(
        genre=genre,
        origin=origin,
        bpm=float(rng.uniform(*t.tempo)),
        beats=int(beats),
        swing=float(rng.uniform(*t.swing)),
        swing16=float(rng.uniform(*t.swing16)),
        humanize_ms=float(t.humanize_ms),
        groove=str(_pick(rng, src["drums"].grooves)),
        kit=str(_pick(rng, src["drums"].kits)),
        bass_style=str(_pick(rng, src["bass"].bass)),
        bass_timbre=str(_pick(rng, src["bass"].bass_timbres)),
        progression=str(_pick(rng, src["harmony"].progressions)),
        comp_style=str(_pick(rng, comp.comp)),
        comp_timbre=str(_pick(rng, comp.comp_timbres)),
        drive=float(np.exp(rng.uniform(np.log(comp.drive[0]), np.log(comp.drive[1])))),
        vocal=bool(rng.random() < lead.vocal),
        vocal_style=lead.vocal_style,
        lead_style=str(_pick(rng, lead.leads)),
        lead_timbre=str(_pick(rng, lead.lead_timbres)),
        answer_style=str(_pick(rng, lead.answers)),
        answer_timbre=str(_pick(rng, lead.answer_timbres)),
        structure=str(_pick(rng, src["structure"].structures)),
        reverb=float(rng.uniform(*prod.reverb)),
        room=float(rng.uniform(*prod.room)),
        echo=bool(rng.random() < prod.echo),
        lofi=bool(rng.random() < prod.lofi),
        snr_db=float(rng.uniform(*prod.snr_db)),
        mix=dict(prod.mix),
        key=int(rng.integers(12)),
    )


@dataclass
class Section:
    start_bar: int
    bars: int
    variant: str  # "A" | "B"
    drums: bool = True
    comp: str = "full"  # full | light | off
    pad_layer: bool = False
    main: tuple[float, float] | None = (0.0, 1.0)  # window as fractions of the section
    answer: tuple[float, float] | None = None
    intensity: tuple[float, float] = (1.0, 1.0)
    comp_echo: bool = False


def plan_sections(
    structure: str, n_bars: int, phrase_bars: int, rng: np.random.Generator
) -> list[Section]:
    """Cut the timeline into phrases and decide what plays in each (the long-range cues)."""
    out: list[Section] = []
    first_b = bool(rng.random() < 0.5)
    for i, start in enumerate(range(0, n_bars, phrase_bars)):
        v = "B" if (i % 2 == 1) != first_b else "A"
        s = Section(start, phrase_bars, v)
        if structure == "verse_chorus":
            s.comp = "light" if v == "A" else "full"
            s.intensity = (0.75, 0.75) if v == "A" else (1.0, 1.0)
            s.main = (0.0, 0.85)
        elif structure == "call_response":
            s.main, s.answer = (0.0, 0.5), (0.5, 1.0)
        elif structure == "trade":
            s.main, s.answer = ((0.0, 1.0), None) if v == "A" else (None, (0.0, 1.0))
        elif structure == "dub":
            if v == "B":
                s.comp, s.main, s.comp_echo = "light", None, True
        elif structure == "loop":
            s.main, s.answer = ((0.0, 1.0), None) if v == "A" else (None, (0.0, 0.9))
        elif structure == "breakdown":
            s.main, s.answer = ((0.0, 0.85), None) if v == "A" else (None, (0.0, 1.0))
        elif structure == "dynamics":
            s.drums = False
            s.main, s.answer = ((0.0, 0.9), None) if v == "A" else (None, (0.0, 0.9))
            s.intensity = (0.45, 1.0) if v == "A" else (1.0, 0.4)
        elif structure == "build":
            s.pad_layer = v == "B"
            s.main, s.answer = ((0.0, 0.85), None) if v == "A" else ((0.0, 0.5), (0.5, 1.0))
        out.append(s)
    return out


class Arranger:
    """Turns a :class:`ClipPlan` into per-bus audio (drums, bass, comp, lead, vocal)."""

    def __init__(self, plan: ClipPlan, rng: np.random.Generator, sr: int, seconds: float):
        self.p = plan
        self.rng = rng
        self.sr = sr
        self.grid = th.Grid(plan.bpm, plan.beats, plan.swing, plan.swing16)
        self.steps = self.grid.steps
        self.offset = float(rng.uniform(0.0, self.grid.bar_s))  # clips start off the downbeat
        self.n_bars = int(math.ceil((seconds + self.offset) / self.grid.bar_s)) + 1
        self.n = int((self.n_bars * self.grid.bar_s + 3.0) * sr)
        self.window = (self.offset, self.offset + seconds)
        phrase = int(np.clip(round(5.0 / self.grid.bar_s), 1, 4))
        self.phrase_bars = 4 if phrase == 3 else phrase
        self.sections = plan_sections(plan.structure, self.n_bars, self.phrase_bars, rng)
        scale, prog = th.PROGRESSIONS[plan.progression]
        self.scale = scale
        start = int(rng.integers(len(prog)))
        self.chords = [prog[(start + b) % len(prog)] for b in range(self.n_bars)]
        self.buses = {
            b: np.zeros(self.n, np.float32) for b in ("drums", "bass", "comp", "lead", "vocal")
        }

    # ------------------------------------------------------------------ helpers
    def t(self, bar: int, step: float) -> float:
        return self.grid.time(bar, step)

    def jitter(self) -> float:
        return float(self.rng.normal(0.0, self.p.humanize_ms / 1000.0))

    def audible(self, t0: float, dur: float) -> bool:
        return t0 < self.window[1] + 0.05 and t0 + dur + 1.0 > self.window[0]

    def put(self, bus: str, sound: np.ndarray, t0: float, gain: float = 1.0) -> None:
        dsp.add_at(self.buses[bus], sound, int(round(t0 * self.sr)), gain)

    def play(
        self, bus: str, voice: Voice, midi: float, t0: float, dur: float, vel: float, **kw: float
    ) -> None:
        if self.audible(t0, dur):
            self.put(bus, voice.note(midi, dur, vel, **kw), t0)

    def section_of(self, bar: int) -> Section:
        return self.sections[min(bar // self.phrase_bars, len(self.sections) - 1)]

    def intensity(self, sec: Section, bar: int, step: float) -> float:
        frac = ((bar - sec.start_bar) + step / self.steps) / sec.bars
        return sec.intensity[0] + (sec.intensity[1] - sec.intensity[0]) * frac

    def voice(self, name: str, amount: float = 0.7) -> Voice:
        return Voice(jitter_timbre(BASE_TIMBRES[name], self.rng, amount), self.sr, self.rng)

    def chord_at(self, bar: int) -> tuple[int, str]:
        off, q = self.chords[bar]
        return (self.p.key + off) % 12, q

    # ------------------------------------------------------------------ drums
    def drums(self) -> None:
        groove = GROOVES[self.p.groove]
        if self.p.groove == "none":
            if self.rng.random() < 0.3:  # an orchestral timpani accent at B sections
                kit = make_kit("acoustic", self.rng, self.sr, {"timpani"})
                for s in self.sections:
                    if s.variant == "B":
                        self.put("drums", kit["timpani"], self.t(s.start_bar, 0), 0.8)
            return
        needed = {d for v in groove.values() for d in v} | {"crash", "tom_hi", "tom_lo"}
        kit = make_kit(self.p.kit, self.rng, self.sr, needed)
        jazz = self.p.groove.startswith("jazz")
        for bar in range(self.n_bars):
            sec = self.section_of(bar)
            if not sec.drums:
                continue
            pats = groove[sec.variant]
            last = bar == sec.start_bar + sec.bars - 1
            fill = last and self.p.groove not in _NO_FILL and self.rng.random() < 0.6
            for drum, pat in pats.items():
                for step, ch in enumerate(pat[: self.steps]):
                    if ch == "." or (fill and step >= self.steps - 4):
                        continue
                    vel = _VEL[ch] * float(self.rng.uniform(0.85, 1.0))
                    self.put("drums", kit[drum], self.t(bar, step) + self.jitter(), vel)
            if jazz:  # snare comping: sparse ghost notes and accents
                for step in range(0, self.steps, 2):
                    if self.rng.random() < 0.18:
                        v = float(self.rng.uniform(0.2, 0.7))
                        self.put("drums", kit["snare"], self.t(bar, step) + self.jitter(), v)
            if fill:
                names = ("snare", "snare", "tom_hi", "tom_lo")
                for i, step in enumerate(range(self.steps - 4, self.steps)):
                    self.put(
                        "drums", kit[names[i]], self.t(bar, step) + self.jitter(), 0.6 + 0.1 * i
                    )
            if bar == sec.start_bar and sec.variant == "B" and not jazz:
                self.put("drums", kit["crash"], self.t(bar, 0) + self.jitter(), 0.8)

    # ------------------------------------------------------------------ bass
    def bass(self) -> None:
        style = self.p.bass_style
        v = self.voice(self.p.bass_timbre)
        rng = self.rng
        reggae_line = [(2, 2, 0), (4, 2, 0), (6, 1, 7), (8, 3, 12), (11, 1, 10), (14, 2, 7)]
        if rng.random() < 0.5:
            reggae_line = [(0, 3, 0), (3, 1, 0), (6, 2, 7), (10, 2, 5), (12, 2, 3), (14, 2, 7)]
        sparse = [(0, 6, 0), (7, 3, 0), (10, 5, 7 if rng.random() < 0.5 else 12)]
        prev = None
        for bar in range(self.n_bars):
            root, q = self.chord_at(bar)
            nroot, _ = self.chord_at(min(bar + 1, self.n_bars - 1))
            low = 33 + ((root - 33) % 12)  # root in A1..G#2
            third = 3 if "m" in q and q != "maj7" else 4
            S = self.steps
            notes: list[tuple[float, float, int, float]] = []  # step, length, midi, vel
            if style in ("root8", "eighths"):
                for s in range(0, S, 2):
                    m = low + (12 if style == "eighths" and s in (6, 14) else 0)
                    notes.append((s, 1.8, m, 0.9 if s % 4 == 0 else 0.75))
            elif style == "chug":
                notes = [(s, 0.9, low, 1.0 if s % 4 == 0 else 0.7) for s in range(S)]
            elif style == "root_fifth":
                if S == 12:
                    notes = [(0, 3.5, low, 0.9), (4, 3.5, low + 7, 0.7), (8, 3.5, low + 7, 0.7)]
                else:
                    notes = [(0, 7, low, 0.9), (8, 7, low + 7 - (12 if low > 38 else 0), 0.8)]
                    if rng.random() < 0.3:
                        notes = [
                            (0, 3.5, low, 0.9),
                            (4, 3.5, low + 7, 0.7),
                            (8, 3.5, low + 12, 0.8),
                            (12, 3.5, low + 7, 0.7),
                        ]
            elif style == "boogie":
                degs = (0, third, 7, 9, 10, 9, 7, third)
                notes = [(2 * i, 1.8, low + degs[i % 8], 0.85) for i in range(S // 2)]
            elif style == "walking":
                tones = [0, third, 7, 10 if q != "maj7" else 11, 12]
                cur = low
                for b in range(S // 4):
                    if b == 0:
                        m = low
                    elif b == S // 4 - 1:
                        target = 33 + ((nroot - 33) % 12)
                        m = target + (1 if rng.random() < 0.5 else -1)
                    else:
                        m = low + int(rng.choice(tones))
                        if abs(m - cur) > 7:
                            m -= 12 if m > cur else 0
                    notes.append((4 * b, 3.6, int(m), 0.85))
                    cur = m
            elif style == "octave":
                notes = [(s, 1.5, low + (12 if (s // 2) % 2 else 0), 0.85) for s in range(0, S, 2)]
            elif style == "funk":
                for s, oct_, vel in (
                    (0, 0, 1.0),
                    (3, 12, 0.6),
                    (6, 0, 0.8),
                    (7, 10, 0.5),
                    (10, 0, 0.9),
                    (12, 12, 0.6),
                    (14, 7, 0.7),
                ):
                    if s < S:
                        notes.append((s, 1.2, low + oct_, vel))
            elif style == "sub808":
                pos = [0, 7, 10] if rng.random() < 0.7 else [0, 10]
                pos = [s for s in pos if s < S]
                for i, s in enumerate(pos):
                    end = pos[i + 1] if i + 1 < len(pos) else S
                    notes.append((s, end - s - 0.3, low - 12 + (12 if low < 36 else 0), 1.0))
            elif style == "sparse":
                notes = [(s, ln, low + d, 0.9) for s, ln, d in sparse if s < S]
            elif style == "reggae":
                notes = [
                    (s, ln, low + (d if d != 10 or q != "maj" else 9), 0.9)
                    for s, ln, d in reggae_line
                    if s < S
                ]
            elif style == "pedal":
                notes = (
                    [(0, S - 0.5, low, 0.8)]
                    if rng.random() < 0.6
                    else [(0, S / 2 - 0.5, low, 0.8), (S / 2, S / 2 - 0.5, low + 7, 0.7)]
                )
            elif style == "arp_bass":
                degs = (0, 7, 12, 7)
                notes = [(4 * i, 3.5, low + degs[i % 4], 0.7) for i in range(S // 4)]
            for step, ln, m, vel in notes:
                t0 = self.t(bar, step) + self.jitter()
                dur = self.t(bar, step + ln) - self.t(bar, step)
                glide = 0.0
                if style == "sub808" and prev is not None and rng.random() < 0.4:
                    glide = float(prev - m)
                self.play("bass", v, m, t0, dur, vel, glide=glide, glide_time=0.05)
                prev = m

    # ------------------------------------------------------------------ comping
    def comp(self) -> None:
        style = self.p.comp_style
        v = self.voice(self.p.comp_timbre)
        pad = self.voice("strings" if self.rng.random() < 0.6 else "pad")
        rng = self.rng
        S = self.steps
        center = 55 if self.p.comp_timbre in GUITARS else 60
        jazz_rhythm = [(0, 3), (6, 2)] if rng.random() < 0.5 else [(2, 2), (10, 3)]
        loop_rhythm = [(0, 6), (6, 2), (10, 6)]
        for bar in range(self.n_bars):
            sec = self.section_of(bar)
            if sec.comp == "off":
                continue
            light = sec.comp == "light"
            root, q = self.chord_at(bar)
            chord = th.voicing(root, q, center, 4)
            hits: list[tuple[float, float, list[int], float]] = []  # step, len, notes, vel
            strum = 0.0
            if style in ("power8", "power_sustain", "chug"):
                pc = th.power_chord(root, 40)
                if style == "chug" and light:
                    hits = [(s, 0.6, pc[:2], 0.9 if s % 4 == 0 else 0.6) for s in range(S)]
                elif style == "chug" or (style == "power_sustain" and light):
                    hits = [(s, S / 2 - 0.3, pc, 0.9) for s in range(0, S, S // 2)]
                elif light:
                    hits = [(s, 0.9, pc[:2], 0.7) for s in range(0, S, 2)]
                else:
                    hits = [(s, 1.8, pc, 0.9) for s in range(0, S, 2)]
            elif style == "strum":
                pat = [(0, 1.0), (4, 0.8), (6, 0.6), (10, 0.6), (12, 0.8), (14, 0.6)]
                if light:
                    pat = [(0, 0.9), (8, 0.8)]
                full = sorted({*th.voicing(root, q, 52, 3), *th.voicing(root, q, 64, 3)})
                hits = [
                    (s, 3.5, full if i % 2 == 0 else full[::-1], vel)
                    for i, (s, vel) in enumerate(pat)
                    if s < S
                ]
                strum = 0.012
            elif style == "shuffle_comp":
                low = 40 + ((root - 40) % 12)
                hits = [
                    (s, 1.7, [low, low + (7 if (s // 4) % 2 == 0 else 9)], 0.8)
                    for s in range(0, S, 2)
                ]
            elif style == "comp_jazz":
                chord = th.voicing(root, q, 62, 5)[1:]  # rootless: the bass has the root
                rh = jazz_rhythm if rng.random() < 0.6 else [(int(rng.integers(0, S // 2)) * 2, 2)]
                hits = [(s, ln, chord, float(rng.uniform(0.5, 0.8))) for s, ln in rh if s < S]
            elif style == "pad":
                hits = [(0, S - 0.2, chord, 0.5 if light else 0.65)]
            elif style in ("arpeggio", "alberti"):
                tones = chord + [chord[0] + 12]
                order = (0, 2, 1, 2) if style == "alberti" else (0, 1, 2, 3, 2, 1)
                step_len = 2 if light or S == 12 else 1
                hits = [
                    (
                        s,
                        step_len * 1.5,
                        [tones[order[(s // step_len) % len(order)] % len(tones)]],
                        0.6,
                    )
                    for s in range(0, S, step_len)
                ]
            elif style == "block":
                every = 4 if light else 2
                hits = [(s, every - 0.3, chord, 0.7) for s in range(0, S, every)]
            elif style == "funk_scratch":
                hi = th.voicing(root, q, 67, 3)
                for s in range(S):
                    acc = s in (2, 6, 10, 14) or (s % 4 == 3 and rng.random() < 0.3)
                    if light and not acc:
                        continue
                    hits.append((s, 0.6, hi, 0.85 if acc else 0.3))
            elif style == "stabs":
                hits = [(s, 1.5, chord, 0.8) for s in (0, 6, 10) if s < S]
                if light:
                    hits = hits[:1]
            elif style == "skank":
                hi = th.voicing(root, q, 66, 3)
                hits = [(s, 1.0, hi, 0.8) for s in range(4, S, 8)]
                if not light and S == 16:
                    hits += [(s, 0.8, hi, 0.5) for s in (6, 14)]
            elif style == "bubble":
                hits = [
                    (s, 1.5, [chord[0]] if (s // 2) % 2 else chord[1:], 0.6) for s in range(2, S, 4)
                ]
                hits += [(s, 1.5, chord, 0.5) for s in range(0, S, 8)]
            elif style == "loop":
                hits = [(s, ln, chord, 0.65) for s, ln in loop_rhythm if s < S]
            for step, ln, notes, vel in hits:
                t0 = self.t(bar, step) + self.jitter()
                dur = self.t(bar, step + ln) - self.t(bar, step)
                g = vel * self.intensity(sec, bar, step) * (0.8 if light else 1.0)
                for i, m in enumerate(notes):
                    self.play("comp", v, m, t0 + i * strum, dur, g)
            if sec.pad_layer:
                for m in th.voicing(root, q, 64, 4):
                    self.play("comp", pad, m, self.t(bar, 0), self.grid.bar_s, 0.35)

    # ------------------------------------------------------------------ leads
    def _lead_part(
        self,
        style: str,
        timbre: str,
        bus: str,
        windows: list[tuple[int, float, float]],
        shift: int = 0,
    ) -> None:
        """Play ``style`` on ``timbre`` inside (section index, start frac, end frac) windows."""
        rng = self.rng
        is_voice = bus == "vocal"
        v = self.voice("voice" if is_voice else timbre)
        reg = REGISTERS.get("voice" if is_voice else timbre, (55, 79))
        if is_voice and rng.random() < 0.5:  # a higher (female) singer
            v.t = dataclasses.replace(v.t, formant_scale=v.t.formant_scale * 1.17)
            reg = (reg[0] + 7, reg[1] + 5)
        reg = (reg[0] + shift, reg[1] + shift)
        scale = self.scale
        density, leap = "medium", 0.15
        bend_p, glide_p, legato = 0.0, 0.0, 0.95
        if style == "lick":
            scale, density, bend_p = ("blues" if rng.random() < 0.5 else "pent_minor"), "busy", 0.3
        elif style == "shred":
            density, leap, bend_p = "busy", 0.05, 0.1
        elif style == "bebop":
            density, leap = "busy", 0.25
        elif style == "cantabile":
            density, legato = ("sparse" if rng.random() < 0.5 else "medium"), 1.1
        elif style == "hook":
            density = "medium"
        elif style == "stab_line":
            density, legato = "sparse", 0.3
        elif style == "rap":
            density, leap, legato = "rap", 0.0, 0.8
            reg = (reg[0], reg[0] + 9)
        elif style == "scream":
            density, leap, legato = "sparse", 0.1, 1.0
            reg = (reg[0] - 5, reg[0] + 7)
        if timbre in ("fiddle", "steel_guitar"):
            glide_p = 0.3
        motifs: dict[str, list[tuple[int, int]]] = {}
        S = self.steps
        for si, f0, f1 in windows:
            sec = self.sections[si]
            lo_step = f0 * sec.bars * S
            hi_step = f1 * sec.bars * S
            mkey = sec.variant
            notes, motif = th.melody(
                rng,
                self.chords,
                self.p.key,
                scale,
                reg,
                density,
                sec.start_bar,
                sec.bars,
                S,
                motifs.get(mkey),
                leap,
            )
            motifs.setdefault(mkey, motif)
            for nt in notes:
                pos = (nt.bar - sec.start_bar) * S + nt.step
                if not lo_step <= pos < hi_step or nt.bar >= self.n_bars:
                    continue
                t0 = self.t(nt.bar, nt.step) + self.jitter()
                dur = (self.t(nt.bar, nt.step + nt.length) - self.t(nt.bar, nt.step)) * legato
                vel = nt.vel * self.intensity(sec, nt.bar, nt.step)
                kw: dict[str, float] = {}
                if is_voice:
                    kw["vowel"] = int(rng.integers(5))
                    if style == "rap":
                        kw["glide"] = float(rng.uniform(-1.0, 2.5))
                        kw["glide_time"] = 0.08
                    elif rng.random() < 0.25:
                        kw["glide"] = -1.0
                if bend_p and rng.random() < bend_p:
                    kw["bend"] = float(rng.choice([1.0, 2.0]))
                if glide_p and rng.random() < glide_p:
                    kw["glide"] = float(rng.choice([-2.0, -1.0]))
                    kw["glide_time"] = 0.08
                self.play(bus, v, nt.midi, t0, max(dur, 0.05), vel, **kw)

    def leads(self) -> None:
        p = self.p
        main_w = [(i, *s.main) for i, s in enumerate(self.sections) if s.main]
        ans_w = [(i, *s.answer) for i, s in enumerate(self.sections) if s.answer]
        if p.vocal:
            style = {"rap": "rap", "scream": "scream"}.get(p.vocal_style, "melody")
            self._lead_part(style, "voice", "vocal", main_w)
        else:
            self._lead_part(p.lead_style, p.lead_timbre, "lead", main_w)
        self._lead_part(p.answer_style, p.answer_timbre, "lead", ans_w)

    def render(self) -> dict[str, np.ndarray]:
        self.drums()
        self.bass()
        self.comp()
        self.leads()
        return self.buses
