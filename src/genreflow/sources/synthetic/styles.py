"""Genre recipes of the synthetic corpus and the confusion graph that blends them.

Each GTZAN genre is a :class:`Recipe`: ranges and menus for tempo/meter/swing, groove, bass
line, harmony, comping, leads, song structure and production. A clip draws one option per
component group; with probability :data:`BORROW` (scaled per genre) a group is drawn from a
*neighbouring* genre instead. The neighbours follow the confusions reported on real GTZAN
(rock/metal/country/blues, disco/pop, hiphop/reggae, jazz/blues), so the corpus is hard in
the same places real music is, and no single component identifies a genre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Probability that one component group of a clip comes from a neighbouring genre.
# Tuned with bench/calibrate_synthetic.py so clip-level log-mel statistics give ~50-75%.
BORROW = 0.1
BORROW_SCALE: dict[str, float] = {"classical": 0.5, "metal": 0.8}

GROUPS: tuple[str, ...] = (
    "tempo",
    "drums",
    "bass",
    "harmony",
    "comp",
    "lead",
    "structure",
    "production",
)

NEIGHBOURS: dict[str, dict[str, float]] = {
    "blues": {"jazz": 0.4, "rock": 0.35, "country": 0.25},
    "classical": {"jazz": 1.0},
    "country": {"rock": 0.45, "blues": 0.3, "pop": 0.25},
    "disco": {"pop": 0.7, "hiphop": 0.15, "reggae": 0.15},
    "hiphop": {"reggae": 0.45, "pop": 0.3, "disco": 0.25},
    "jazz": {"blues": 0.6, "classical": 0.4},
    "metal": {"rock": 1.0},
    "pop": {"disco": 0.45, "rock": 0.2, "hiphop": 0.2, "country": 0.15},
    "reggae": {"hiphop": 0.5, "pop": 0.3, "disco": 0.2},
    "rock": {"metal": 0.35, "country": 0.25, "blues": 0.2, "pop": 0.2},
}


@dataclass(frozen=True)
class Recipe:
    # tempo group
    tempo: tuple[float, float]
    meters: tuple[tuple[int, float], ...] = ((4, 1.0),)
    swing: tuple[float, float] = (0.5, 0.5)
    swing16: tuple[float, float] = (0.5, 0.5)
    # drums group
    grooves: tuple[str, ...] = ("none",)
    kits: tuple[str, ...] = ("acoustic",)
    # bass group
    bass: tuple[str, ...] = ("root8",)
    bass_timbres: tuple[str, ...] = ("bass_finger",)
    # harmony group
    progressions: tuple[str, ...] = ("pop_axis",)
    # comp group
    comp: tuple[str, ...] = ("pad",)
    comp_timbres: tuple[str, ...] = ("piano",)
    drive: tuple[float, float] = (1.0, 1.0)
    # lead group
    vocal: float = 0.8  # probability that the main lead is a singer
    vocal_style: str = "sing"  # sing | rap | scream
    leads: tuple[str, ...] = ("melody",)
    lead_timbres: tuple[str, ...] = ("lead_synth",)
    answers: tuple[str, ...] = ("melody",)
    answer_timbres: tuple[str, ...] = ("lead_synth",)
    # structure group
    structures: tuple[str, ...] = ("verse_chorus",)
    # production group
    reverb: tuple[float, float] = (0.1, 0.3)
    room: tuple[float, float] = (0.4, 1.5)  # RT60 seconds
    echo: float = 0.0  # probability of a dub/slap echo send
    lofi: float = 0.3  # probability of band-limited, noisy "old recording" production
    snr_db: tuple[float, float] = (25.0, 50.0)
    mix: dict[str, float] = field(default_factory=dict)  # bus -> dB offset
    humanize_ms: float = 8.0


RECIPES: dict[str, Recipe] = {
    "blues": Recipe(
        tempo=(60, 125),
        swing=(0.6, 0.68),
        grooves=("shuffle", "shuffle", "slow_blues"),
        kits=("acoustic", "jazz"),
        bass=("boogie", "walking", "root_fifth"),
        bass_timbres=("bass_finger", "upright"),
        progressions=("blues12", "blues12", "blues_minor"),
        comp=("shuffle_comp", "comp_jazz", "pad"),
        comp_timbres=("clean_guitar", "piano", "organ", "epiano"),
        drive=(1.0, 3.0),
        vocal=0.8,
        leads=("lick",),
        lead_timbres=("clean_guitar", "harmonica"),
        answers=("lick",),
        answer_timbres=("clean_guitar", "dist_guitar", "harmonica", "sax"),
        structures=("call_response", "call_response", "trade"),
        reverb=(0.1, 0.35),
        lofi=0.5,
        snr_db=(20.0, 45.0),
        humanize_ms=12.0,
    ),
    "classical": Recipe(
        tempo=(50, 130),
        meters=((4, 0.6), (3, 0.4)),
        grooves=("none",),
        kits=("acoustic",),
        bass=("pedal", "arp_bass"),
        bass_timbres=("bowed_bass", "piano"),
        progressions=(
            "classical_cadence",
            "classical_circle",
            "classical_minor",
            "classical_canon",
        ),
        comp=("pad", "arpeggio", "alberti"),
        comp_timbres=("strings", "piano", "strings"),
        vocal=0.0,
        leads=("cantabile",),
        lead_timbres=("strings", "fiddle", "flute", "piano"),
        answers=("cantabile",),
        answer_timbres=("flute", "clarinet", "strings", "piano"),
        structures=("dynamics",),
        reverb=(0.3, 0.6),
        room=(1.2, 2.8),
        lofi=0.3,
        snr_db=(25.0, 50.0),
        mix={"comp": 2.0},
        humanize_ms=15.0,
    ),
    "country": Recipe(
        tempo=(85, 165),
        meters=((4, 0.8), (3, 0.2)),
        swing=(0.5, 0.56),
        grooves=("boomchick", "train", "rock"),
        kits=("acoustic", "brushes"),
        bass=("root_fifth", "root_fifth", "root8"),
        bass_timbres=("bass_finger", "upright"),
        progressions=("country_145", "country_long", "rock_145"),
        comp=("strum", "strum", "arpeggio"),
        comp_timbres=("acoustic_guitar", "acoustic_guitar", "clean_guitar", "piano"),
        drive=(1.0, 1.5),
        vocal=0.85,
        leads=("melody",),
        lead_timbres=("fiddle", "steel_guitar"),
        answers=("lick", "melody"),
        answer_timbres=("fiddle", "steel_guitar", "clean_guitar"),
        structures=("call_response", "verse_chorus"),
        reverb=(0.1, 0.3),
        lofi=0.3,
    ),
    "disco": Recipe(
        tempo=(110, 132),
        swing=(0.5, 0.52),
        grooves=("disco", "disco", "pop_four"),
        kits=("disco", "electronic"),
        bass=("octave", "funk"),
        bass_timbres=("bass_finger", "bass_synth"),
        progressions=("disco_minor", "disco_25", "disco_maj7"),
        comp=("funk_scratch", "pad", "stabs"),
        comp_timbres=("muted_guitar", "strings", "epiano", "brass"),
        vocal=0.85,
        leads=("hook",),
        lead_timbres=("brass", "strings", "lead_synth"),
        answers=("stab_line", "hook"),
        answer_timbres=("brass", "strings", "lead_synth"),
        structures=("build", "verse_chorus"),
        reverb=(0.15, 0.35),
        lofi=0.25,
        mix={"bass": 2.0, "drums": 1.0},
        humanize_ms=4.0,
    ),
    "hiphop": Recipe(
        tempo=(78, 102),
        swing16=(0.5, 0.62),
        grooves=("boombap", "boombap", "halftime"),
        kits=("808", "acoustic", "electronic"),
        bass=("sub808", "sparse"),
        bass_timbres=("bass_808", "bass_finger", "upright"),
        progressions=("hiphop_minor", "hiphop_dorian", "hiphop_loop"),
        comp=("loop", "stabs", "pad"),
        comp_timbres=("epiano", "piano", "strings", "organ"),
        drive=(1.0, 2.0),
        vocal=0.95,
        vocal_style="rap",
        leads=("hook",),
        lead_timbres=("lead_synth", "sax"),
        answers=("hook",),
        answer_timbres=("voice", "lead_synth", "bell"),
        structures=("loop",),
        reverb=(0.05, 0.2),
        lofi=0.6,
        mix={"drums": 2.0, "bass": 2.0, "comp": -2.0},
        humanize_ms=2.0,
    ),
    "jazz": Recipe(
        tempo=(90, 220),
        meters=((4, 0.85), (3, 0.15)),
        swing=(0.6, 0.68),
        grooves=("jazz_swing", "jazz_brush"),
        kits=("jazz", "brushes"),
        bass=("walking",),
        bass_timbres=("upright",),
        progressions=("jazz_251", "jazz_turn", "jazz_minor"),
        comp=("comp_jazz",),
        comp_timbres=("piano", "epiano", "clean_guitar"),
        vocal=0.2,
        leads=("bebop",),
        lead_timbres=("sax", "brass", "clarinet", "flute"),
        answers=("bebop",),
        answer_timbres=("piano", "clean_guitar", "epiano", "bell"),
        structures=("trade", "call_response"),
        reverb=(0.1, 0.35),
        lofi=0.5,
        humanize_ms=12.0,
        mix={"drums": -3.0},
    ),
    "metal": Recipe(
        tempo=(90, 200),
        grooves=("metal_double", "metal_gallop", "rock"),
        kits=("metal",),
        bass=("root8", "chug"),
        bass_timbres=("bass_finger", "bass_synth"),
        progressions=("metal_aeolian", "metal_phrygian", "metal_harmonic"),
        comp=("chug", "power8"),
        comp_timbres=("dist_guitar",),
        drive=(12.0, 40.0),
        vocal=0.5,
        vocal_style="scream",
        leads=("shred",),
        lead_timbres=("dist_guitar",),
        answers=("shred",),
        answer_timbres=("dist_guitar", "lead_synth"),
        structures=("breakdown", "verse_chorus"),
        reverb=(0.05, 0.25),
        lofi=0.15,
        mix={"comp": 2.0},
        humanize_ms=3.0,
    ),
    "pop": Recipe(
        tempo=(88, 130),
        swing=(0.5, 0.54),
        grooves=("pop", "pop_four", "rock"),
        kits=("electronic", "acoustic", "disco"),
        bass=("eighths", "octave", "root8"),
        bass_timbres=("bass_synth", "bass_finger"),
        progressions=("pop_axis", "pop_vi", "pop_50s"),
        comp=("block", "pad", "arpeggio", "strum"),
        comp_timbres=("piano", "pad", "epiano", "acoustic_guitar"),
        drive=(1.0, 1.5),
        vocal=0.95,
        leads=("hook",),
        lead_timbres=("lead_synth", "bell"),
        answers=("hook",),
        answer_timbres=("lead_synth", "bell", "strings"),
        structures=("verse_chorus", "build"),
        reverb=(0.15, 0.4),
        lofi=0.1,
        snr_db=(30.0, 55.0),
        humanize_ms=4.0,
    ),
    "reggae": Recipe(
        tempo=(66, 96),
        swing=(0.5, 0.6),
        grooves=("one_drop", "rockers", "steppers"),
        kits=("reggae",),
        bass=("reggae",),
        bass_timbres=("bass_finger", "bass_synth"),
        progressions=("reggae_14", "reggae_minor", "reggae_15"),
        comp=("skank", "bubble"),
        comp_timbres=("muted_guitar", "clean_guitar", "organ", "piano"),
        vocal=0.85,
        leads=("melody",),
        lead_timbres=("brass", "organ", "lead_synth"),
        answers=("stab_line", "melody"),
        answer_timbres=("brass", "organ", "lead_synth"),
        structures=("dub", "verse_chorus"),
        reverb=(0.15, 0.4),
        echo=0.6,
        lofi=0.4,
        mix={"bass": 3.0},
        humanize_ms=6.0,
    ),
    "rock": Recipe(
        tempo=(90, 165),
        meters=((4, 0.9), (3, 0.1)),
        swing=(0.5, 0.55),
        grooves=("rock", "rock_drive", "rock_half"),
        kits=("acoustic",),
        bass=("root8", "eighths"),
        bass_timbres=("bass_finger",),
        progressions=("rock_mixo", "rock_145", "rock_minor", "pop_axis"),
        comp=("power8", "strum", "power_sustain"),
        comp_timbres=("dist_guitar", "dist_guitar", "clean_guitar", "acoustic_guitar"),
        drive=(3.0, 12.0),
        vocal=0.85,
        leads=("lick",),
        lead_timbres=("dist_guitar", "clean_guitar"),
        answers=("lick",),
        answer_timbres=("dist_guitar", "clean_guitar"),
        structures=("verse_chorus", "call_response", "breakdown"),
        reverb=(0.1, 0.3),
        lofi=0.3,
        humanize_ms=6.0,
    ),
}

# Playable range (MIDI low, high) of each lead timbre.
REGISTERS: dict[str, tuple[int, int]] = {
    "voice": (52, 72),
    "sax": (52, 76),
    "brass": (55, 77),
    "clarinet": (55, 79),
    "flute": (67, 91),
    "fiddle": (60, 84),
    "strings": (60, 84),
    "steel_guitar": (57, 81),
    "harmonica": (60, 84),
    "clean_guitar": (55, 79),
    "dist_guitar": (52, 81),
    "lead_synth": (60, 84),
    "bell": (72, 91),
    "piano": (60, 86),
    "epiano": (60, 84),
    "organ": (60, 82),
}
