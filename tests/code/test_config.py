"""params.yaml loading: typed, strict about unknown keys, and the repo's file is valid.

The file-level contract (no missing keys, defaults equal to the file, every range) is in
``test_params_file.py``; this module tests the machinery in code.
"""

import dataclasses
import typing
from dataclasses import replace
from pathlib import Path

import pytest

from genreflow.core.checks import Range, range_of
from genreflow.core.config import (
    ConfigError,
    FeatureParams,
    Params,
    TrainParams,
    flatten,
    from_dict,
    load_params,
    to_dict,
    validate_params,
)

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_load_and_cover_every_stage():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "synthetic"
    assert params.features.sample_rate == 22050
    assert params.train_cnn.arch == "cnn"
    assert params.train_lstm.arch == "crnn"


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("features:\n  n_melz: 64\n")
    with pytest.raises(ConfigError, match=r"features.*n_melz"):
        load_params(tmp_path / "params.yaml")


def test_wrong_type_and_bad_choice_are_named(tmp_path):
    (tmp_path / "params.yaml").write_text("features:\n  n_mels: sixty\n")
    with pytest.raises(ConfigError, match=r"features\.n_mels"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data:\n  source: ftp\n")
    with pytest.raises(ConfigError, match=r"data\.source.*'ftp'"):
        load_params(tmp_path / "params.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flatten_gives_dotted_keys():
    flat = flatten(to_dict(Params()))
    assert flat["features.n_mels"] == FeatureParams().n_mels
    assert flat["train_cnn.augment.mixup_alpha"] == 0.0
    assert all(not isinstance(v, dict) for v in flat.values())


def test_segment_geometry():
    fp = FeatureParams(sample_rate=22050, hop_length=512, segment_s=3.0, segment_hop_s=1.5)
    assert fp.segment_samples == 66150
    assert fp.segment_frames == 66150 // 512 + 1


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("> 0", [1e-9, 5], [0, -1]),
        (">= 1", [1, 100], [0, 0.5]),
        ("<= 0", [0, -60.0], [0.1]),
        ("[0, 1)", [0, 0.999], [1, -0.01]),
        ("(0, 1]", [1, 0.5], [0, 1.01]),
        ("(0, 0.5)", [0.05], [0, 0.5]),
        ("[0, 1]", [0, 1], [1.5]),
    ],
)
def test_range_bounds(spec, inside, outside):
    allowed = Range(spec)
    assert all(allowed.contains(x) for x in inside)
    assert not any(allowed.contains(x) for x in outside)
    assert not allowed.contains(float("nan")) and not allowed.contains(float("inf"))


@pytest.mark.parametrize("spec", ["0 < x", "[0; 1)", "{0, 1}", ">= one"])
def test_malformed_range_fails_when_declared(spec):
    with pytest.raises(ValueError):
        Range(spec)


def test_range_message_reads_like_maths():
    assert str(Range("> 0")) == "> 0" and str(Range("[0, 1)")) == "in [0, 1)"


def _leaf_fields(cls: type, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, f


def test_every_numeric_field_declares_its_range():
    """A new int/float key cannot skip validation by forgetting ``ranged(...)``."""
    numeric = {int, float, tuple[int, ...], tuple[float, ...]}
    unchecked = [k for k, tp, f in _leaf_fields(Params) if tp in numeric and range_of(f) is None]
    assert unchecked == []


def test_code_defaults_pass_validation():
    validate_params(Params())


def test_construction_does_not_validate_but_validate_params_does():
    odd = FeatureParams(segment_hop_s=-1.5)  # tests build odd params on purpose
    with pytest.raises(ConfigError, match=r"^features\.segment_hop_s: -1\.5 is out of range"):
        validate_params(replace(Params(), features=odd))
    shared_arch = replace(Params(), train_cnn=TrainParams(arch="crnn"))
    with pytest.raises(ConfigError, match=r"train_cnn\.arch: 'crnn' is not allowed"):
        validate_params(shared_arch)


def test_train_lstm_default_is_the_files_crnn_section():
    lstm = Params().train_lstm
    assert (lstm.arch, lstm.lr, lstm.batch_norm) == ("crnn", 0.02, True)
    assert (lstm.channels, lstm.dense) == ((16, 32, 64, 64), ())


def test_from_dict_names_missing_keys_under_its_prefix():
    stored = to_dict(FeatureParams())
    del stored["segment_s"], stored["n_mels"]
    with pytest.raises(
        ConfigError, match=r"^meta\.features\.n_mels, meta\.features\.segment_s: missing"
    ):
        from_dict(FeatureParams, stored, "meta.features")
