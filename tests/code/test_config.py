"""params.yaml loading: typed, strict about unknown keys, and the repo's file is valid."""

from pathlib import Path

import pytest

from genreflow.config import ConfigError, FeatureParams, Params, flatten, load_params, to_dict

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
