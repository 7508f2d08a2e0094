"""The repo's params.yaml is the single source: code defaults, key set and value checks.

Deleting a key must fail (not fall back to a default that may differ), the dataclass defaults
must equal the file (tests build params in code from them), and every value outside its
allowed range must fail at load, naming the dotted key, the value and the range.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from genreflow.core.config import ConfigError, Params, flatten, load_params, to_dict

REPO = Path(__file__).resolve().parents[2]
RAW: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())


def _field_keys(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of every field of dataclass ``cls``, sections included."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.add(key)
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= _field_keys(hints[f.name], f"{key}.")
    return keys


def _yaml_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for k, v in node.items():
        keys.add(f"{prefix}{k}")
        if isinstance(v, dict):
            keys |= _yaml_keys(v, f"{prefix}{k}.")
    return keys


LEAVES = sorted(flatten(RAW))
SECTIONS = sorted(RAW)


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _with(dotted: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    """A deep copy of the repo's params with one key set (or deleted)."""
    raw = copy.deepcopy(RAW)
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


# --------------------------------------------------------------------------- one source of truth
def test_repo_params_equal_the_code_defaults():
    loaded = flatten(to_dict(load_params(REPO / "params.yaml")))
    default = flatten(to_dict(Params()))
    differ = {k: (loaded[k], default[k]) for k in loaded if loaded[k] != default[k]}
    assert differ == {}, f"params.yaml vs code default, by key: {differ}"
    assert load_params(REPO / "params.yaml") == Params()


def test_every_field_is_a_key_and_every_key_a_field():
    fields, keys = _field_keys(Params), _yaml_keys(RAW)
    assert sorted(fields - keys) == [], "dataclass fields missing from params.yaml"
    assert sorted(keys - fields) == [], "params.yaml keys with no dataclass field"


@pytest.mark.parametrize("key", LEAVES + SECTIONS)
def test_deleting_any_key_fails_naming_it(tmp_path, key):
    path = _write(tmp_path, _with(key, delete=True))
    message = f"{path}: {key}: missing; every key must be set (see the repo's params.yaml)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(path)


def test_an_empty_file_names_every_section(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    with pytest.raises(ConfigError, match=re.escape(", ".join(_field_keys_top()) + ": missing")):
        load_params(tmp_path / "params.yaml")


def _field_keys_top() -> list[str]:
    return [f.name for f in dataclasses.fields(Params)]


@pytest.mark.parametrize("key", ["extra", "train_cnn.augment.mixup_alhpa", "data.url.mirror"])
def test_unknown_keys_still_fail(tmp_path, key):
    path = _write(tmp_path, _with(key, 1))
    parent, _, leaf = key.rpartition(".")
    prefix = f"{path}: {parent}: " if parent else f"{path}: "
    with pytest.raises(ConfigError, match=re.escape(f"{prefix}unknown key(s) ['{leaf}']")):
        load_params(path)


# --------------------------------------------------------------------------- value checks
def _bad(key: str, value: Any, must: str, shown: str | None = None):
    """A bad value and the message line it must produce (``shown``: ``key: value`` as printed)."""
    shown = shown or f"{key}: {value!r}"
    return pytest.param(key, value, f"{shown} is out of range; must be {must}", id=f"{key}={value}")


def _not_allowed(key: str, value: Any, must: str):
    shown = f"{key}: {value!r}"
    return pytest.param(key, value, f"{shown} is not allowed; must be {must}", id=f"{key}={value}")


def _train_cases(section: str) -> list[Any]:
    s = section
    return [
        _bad(f"{s}.epochs", 0, ">= 1"),
        _bad(f"{s}.batch_size", 0, ">= 1"),
        _bad(f"{s}.lr", 0.0, "> 0"),
        _bad(f"{s}.lr", float("nan"), "> 0"),
        _bad(f"{s}.momentum", 1.0, "in [0, 1)"),
        _bad(f"{s}.momentum", -0.1, "in [0, 1)"),
        _bad(f"{s}.weight_decay", -0.001, ">= 0"),
        _bad(f"{s}.lr_step_epochs", 0, ">= 1"),
        _bad(f"{s}.lr_step_gamma", 0.0, "in (0, 1]"),
        _bad(f"{s}.lr_step_gamma", 1.5, "in (0, 1]"),
        _bad(f"{s}.early_stopping_patience", -1, ">= 0"),
        _bad(f"{s}.dropout", 1.0, "in [0, 1)"),
        _bad(f"{s}.channels", [16, 0], ">= 1", shown=f"{s}.channels[1]: 0"),
        _bad(f"{s}.dense", [-8], ">= 1", shown=f"{s}.dense[0]: -8"),
        _bad(f"{s}.lstm_hidden", 0, ">= 1"),
        _bad(f"{s}.lstm_layers", 0, ">= 1"),
        _bad(f"{s}.augment.freq_masks", -1, ">= 0"),
        _bad(f"{s}.augment.freq_mask_width", -1, ">= 0"),
        _bad(f"{s}.augment.time_masks", -1, ">= 0"),
        _bad(f"{s}.augment.time_mask_width", -1, ">= 0"),
        _bad(f"{s}.augment.mixup_alpha", -0.2, ">= 0"),
        _bad(f"{s}.augment.random_crop_frames", -1, ">= 0"),
    ]


BAD_VALUES = [
    _bad("seed", -1, ">= 0"),
    _bad("data.synthetic.clips_per_genre", 0, ">= 1"),
    _bad("data.synthetic.duration_s", 0.0, "> 0"),
    _bad("data.synthetic.sample_rate", -22050, ">= 1"),
    _bad("data.synthetic.seed", -1, ">= 0"),
    _bad("runtime.workers", 0, ">= 1"),
    _bad("threads", 0, ">= 1"),
    _bad("data.url.retries", -1, ">= 0"),
    _bad("data.url.timeout_s", 0.0, "> 0"),
    _bad("data.url.max_extract_bytes", 0, ">= 1"),
    _bad("validate.min_duration_s", -3.0, "> 0"),
    _bad("validate.sample_rates", [22050, 0], ">= 1", shown="validate.sample_rates[1]: 0"),
    _bad("validate.max_channels", 0, ">= 1"),
    _bad("validate.min_rms_dbfs", 3.0, "<= 0"),
    _bad("validate.max_clipping_ratio", 1.5, "in [0, 1]"),
    _bad("validate.class_balance_tolerance", -0.1, "in [0, 1]"),
    _bad("validate.max_quarantine_share", 1.01, "in [0, 1]"),
    _bad("validate.split.val_fraction", 1.0, "in [0, 1)"),
    _bad("validate.split.test_fraction", -0.1, "in [0, 1)"),
    _bad("validate.split.seed", -7, ">= 0"),
    _bad("features.sample_rate", 0, ">= 1"),
    _bad("features.n_fft", 0, ">= 1"),
    _bad("features.hop_length", 0, ">= 1"),
    _bad("features.n_mels", -96, ">= 1"),
    _bad("features.f_min", -1.0, ">= 0"),
    _bad("features.segment_s", 0.0, "> 0"),
    _bad("features.segment_hop_s", -1.5, "> 0"),
    *_train_cases("train_cnn"),
    *_train_cases("train_lstm"),
    _bad("evaluate.bootstrap_samples", 99, ">= 100"),
    _bad("evaluate.bootstrap_seed", -1, ">= 0"),
    _bad("evaluate.promotion_margin", 1.0, "in [0, 1)"),
    _bad("evaluate.promotion_margin", -0.01, "in [0, 1)"),
    _bad("evaluate.promotion_alpha", 0.0, "in (0, 0.5)"),
    _bad("evaluate.promotion_alpha", 0.5, "in (0, 0.5)"),
    # cross-field and non-numeric rules
    _not_allowed("data.genres", [], "a non-empty list of distinct, non-empty names"),
    _not_allowed("data.genres", ["jazz", "blues", "jazz"], "a non-empty list of distinct"),
    _not_allowed("data.genres", ["jazz", ""], "a non-empty list of distinct, non-empty names"),
    _not_allowed("features.hop_length", 4096, "<= features.n_fft (2048)"),
    _not_allowed("features.f_min", 11025.0, "< features.f_max (11025)"),
    _not_allowed("features.f_max", 16000.0, "<= features.sample_rate / 2 (11025, Nyquist)"),
    _not_allowed("features.segment_hop_s", 0.01, ">= one STFT hop"),
    _not_allowed("validate.min_duration_s", 2.0, ">= features.segment_s (3)"),
    _not_allowed("validate.max_duration_s", 3.0, "> validate.min_duration_s (3)"),
    _not_allowed("validate.split.test_fraction", 0.8, "< 1 - val_fraction (0.8)"),
    _not_allowed("train_cnn.arch", "crnn", "'cnn'"),
    _not_allowed("train_lstm.arch", "cnn", "'crnn'"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_bad_value_fails_at_load_naming_key_value_and_range(tmp_path, key, value, message):
    path = _write(tmp_path, _with(key, value))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_params(path)


def test_a_negative_segment_hop_is_reported_once(tmp_path):
    path = _write(tmp_path, _with("features.segment_hop_s", -1.5))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: features.segment_hop_s: -1.5 is out of range; must be > 0"


def test_every_bad_value_is_listed_on_its_own_line(tmp_path):
    raw = _with("features.n_mels", 0)
    raw["evaluate"]["bootstrap_samples"] = 10
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value).splitlines() == [
        f"{path}: features.n_mels: 0 is out of range; must be >= 1",
        f"{path}: evaluate.bootstrap_samples: 10 is out of range; must be >= 100",
    ]


NUMERIC_LEAVES = [k for k in LEAVES if type(flatten(RAW)[k]) in (int, float)]


@pytest.mark.parametrize("bad", [0, -1])
@pytest.mark.parametrize("key", NUMERIC_LEAVES)
def test_any_number_fails_as_a_config_error_or_loads(tmp_path, key, bad):
    """No check may crash (say, dividing by a zero rate) on a value another check rejects."""
    value = float(bad) if isinstance(flatten(RAW)[key], float) else bad
    try:
        load_params(_write(tmp_path, _with(key, value)))
    except ConfigError as exc:
        assert key in str(exc)
