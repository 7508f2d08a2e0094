"""The synthetic corpus generator: determinism, GTZAN layout, decodable audio, variety."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.core.config import GTZAN_GENRES, SyntheticParams
from genreflow.sources.synthetic import styles
from genreflow.sources.synthetic.arrange import GROOVES, Arranger, draw_plan
from genreflow.sources.synthetic.corpus import clip_rng, generate_corpus, render_clip
from genreflow.sources.synthetic.drums import KIT_STYLES
from genreflow.sources.synthetic.instruments import BASE_TIMBRES
from genreflow.sources.synthetic.mix import master, mix_buses
from genreflow.sources.synthetic.theory import PROGRESSIONS

TINY = SyntheticParams(clips_per_genre=2, duration_s=2.0, sample_rate=22050, seed=123)


def corpus_hash(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(paths):
        digest.update(p.relative_to(root).as_posix().encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("synth_w1")
    return out, generate_corpus(TINY, GTZAN_GENRES, out, progress=False)


def test_layout_and_names_are_gtzan(corpus: tuple[Path, list[Path]]) -> None:
    out, paths = corpus
    expected = sorted(
        out / "genres" / g / f"{g}.{i:05d}.wav"
        for g in GTZAN_GENRES
        for i in range(TINY.clips_per_genre)
    )
    assert paths == expected
    on_disk = sorted(p for p in out.rglob("*") if p.is_file())
    assert on_disk == expected  # no temp files or extras left behind
    assert paths[0].name == "blues.00000.wav"


def test_files_decode_mono_right_rate_and_length(corpus: tuple[Path, list[Path]]) -> None:
    _, paths = corpus
    n = int(round(TINY.duration_s * TINY.sample_rate))
    for p in paths:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.frames) == (TINY.sample_rate, 1, n), p
        assert info.subtype == "PCM_16", p
        x, _ = sf.read(str(p), dtype="float32")
        full_scale = np.mean(np.abs(x) >= 32767 / 32768)
        assert full_scale == 0.0, f"{p}: {full_scale:.4f} of samples at full scale"
        rms_db = 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)
        assert rms_db > -40.0, f"{p}: RMS {rms_db:.1f} dBFS"


def test_same_seed_is_byte_identical_across_worker_counts(
    corpus: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out1, paths1 = corpus
    out2 = tmp_path / "w2"
    paths2 = generate_corpus(TINY, GTZAN_GENRES, out2, progress=False, workers=2)
    assert [p.relative_to(out2) for p in paths2] == [p.relative_to(out1) for p in paths1]
    for a, b in zip(paths1, paths2, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert corpus_hash(paths1, out1) == corpus_hash(paths2, out2)


def test_different_seed_changes_the_corpus(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out1, paths1 = corpus
    genres = ("blues", "metal")
    other = generate_corpus(
        dataclasses.replace(TINY, seed=TINY.seed + 1), genres, tmp_path, progress=False
    )
    same = [p for p in paths1 if p.parent.name in genres]
    assert corpus_hash(other, tmp_path) != corpus_hash(same, out1)
    for a, b in zip(same, other, strict=True):
        assert a.read_bytes() != b.read_bytes(), a.name


def test_render_clip_is_what_the_file_holds(corpus: tuple[Path, list[Path]]) -> None:
    out, _ = corpus
    wave = render_clip("jazz", 1, TINY)
    assert wave.dtype == np.float32 and wave.ndim == 1
    x, _ = sf.read(str(out / "genres" / "jazz" / "jazz.00001.wav"), dtype="float32")
    assert np.max(np.abs(x - wave)) < 2.0 / 32767


def test_clips_of_one_genre_vary(corpus: tuple[Path, list[Path]]) -> None:
    _, paths = corpus
    for g in GTZAN_GENRES:
        a, b = (sf.read(str(p), dtype="float32")[0] for p in paths if p.parent.name == g)
        corr = np.corrcoef(a, b)[0, 1]
        assert abs(corr) < 0.5, f"{g}: clips 0 and 1 correlate at {corr:.2f}"
    plans = [draw_plan("pop", clip_rng(TINY.seed, "pop", i)) for i in range(12)]
    assert len({p.key for p in plans}) > 3
    assert len({round(p.bpm) for p in plans}) > 6


def test_unknown_genre_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="polka"):
        generate_corpus(TINY, ["blues", "polka"], tmp_path, progress=False)
    with pytest.raises(ValueError, match="polka"):
        render_clip("polka", 0, TINY)
    assert not (tmp_path / "genres" / "blues").exists() or not any(
        (tmp_path / "genres" / "blues").iterdir()
    )


def test_recipes_only_name_things_that_exist() -> None:
    assert set(styles.RECIPES) == set(GTZAN_GENRES) == set(styles.NEIGHBOURS)
    for g, r in styles.RECIPES.items():
        assert set(styles.NEIGHBOURS[g]) <= set(GTZAN_GENRES) - {g}
        assert set(r.grooves) <= set(GROOVES), g
        assert set(r.kits) <= set(KIT_STYLES), g
        assert set(r.progressions) <= set(PROGRESSIONS), g
        timbres = {*r.bass_timbres, *r.comp_timbres, *r.lead_timbres, *r.answer_timbres}
        assert timbres <= set(BASE_TIMBRES), (g, timbres - set(BASE_TIMBRES))
        assert set(r.mix) <= {"drums", "bass", "comp", "lead", "vocal"}, g


def _options(field: str) -> list[str]:
    return sorted({o for r in styles.RECIPES.values() for o in getattr(r, field)})


@pytest.mark.parametrize(
    ("plan_field", "values"),
    [
        ("bass_style", _options("bass")),
        ("comp_style", _options("comp")),
        ("groove", _options("grooves")),
        ("structure", _options("structures")),
        ("answer_style", _options("answers") + _options("leads")),
        ("vocal_style", ["sing", "rap", "scream"]),
    ],
)
def test_every_style_option_renders_sound(plan_field: str, values: list[str]) -> None:
    """Each musical branch runs, at a low sample rate, and makes a non-silent, unclipped clip."""
    sr, seconds = 16000, 1.5
    for i, value in enumerate(values):
        rng = clip_rng(7, "rock", i)
        plan = dataclasses.replace(
            draw_plan("rock", rng), vocal=True, beats=3 + i % 2, **{plan_field: value}
        )
        arr = Arranger(plan, rng, sr, seconds)
        buses = arr.render()
        start = int(arr.offset * sr)
        mixed = mix_buses(
            {k: v[start : start + int(seconds * sr)] for k, v in buses.items()}, plan, rng, sr
        )
        y = master(mixed, plan, rng, sr)
        assert np.all(np.isfinite(y)), value
        assert np.max(np.abs(y)) < 0.95, value
        assert np.sqrt(np.mean(y**2)) > 1e-3, value
