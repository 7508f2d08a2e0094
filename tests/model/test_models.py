"""Classifier shapes, the serving wrapper, and the saved-model round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genreflow.core.config import ConfigError, FeatureParams, TrainParams
from genreflow.features.frontend import LogMelFrontend
from genreflow.models import CRNN, PaperCNN, build_classifier
from genreflow.serving.core import (
    WaveformGenreModel,
    load_classifier,
    load_serving_model,
    save_model,
)

TINY_CNN = TrainParams(arch="cnn", channels=(4, 4, 8, 8, 8), dense=(16, 16, 8, 8), dropout=0.0)
TINY_CRNN = TrainParams(
    arch="crnn", channels=(4, 8, 8), dense=(8,), lstm_hidden=6, dropout=0.0, pooling="mean"
)
# 0.3-s segments at 8 kHz with hop 128 -> 19 frames; 16 mels
TINY_FEATURES = FeatureParams(
    sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, f_max=4000.0,
    segment_s=0.3, segment_hop_s=0.15,
)  # fmt: skip
GENRES = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("params", "n_mels", "n_frames"),
    [
        (TrainParams(arch="cnn"), 96, 130),
        (TrainParams(arch="crnn", channels=(16, 32, 64, 64), dense=()), 96, 130),
        (TINY_CNN, 16, 20),
        (TINY_CRNN, 16, 20),
        (TINY_CNN, 1, 1),
        (TrainParams(arch="crnn", pooling="last", bidirectional=False, lstm_layers=2), 16, 20),
        (TrainParams(arch="crnn", pooling="last", bidirectional=True, batch_norm=True), 16, 20),
        (TrainParams(arch="cnn", batch_norm=True), 16, 20),
    ],
)
def test_output_shape(params: TrainParams, n_mels: int, n_frames: int) -> None:
    model = build_classifier(params, n_mels, n_frames, n_classes=7)
    model.train()  # BatchNorm in train mode still needs batch > 1: use 3
    out = model(torch.randn(3, n_mels, n_frames) * 10 - 40)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_build_classifier_picks_arch() -> None:
    assert isinstance(build_classifier(TINY_CNN, 16, 20, 3), PaperCNN)
    assert isinstance(build_classifier(TINY_CRNN, 16, 20, 3), CRNN)


def test_paper_cnn_has_five_conv_blocks_and_five_linear_layers() -> None:
    model = build_classifier(TrainParams(arch="cnn"), 96, 130, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 5 and len(pools) == 5
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert len(linears) == 5
    assert [lin.out_features for lin in linears] == [512, 256, 128, 64, 10]
    # 96x130 pooled five times (ceil): 3 x 5 cells of 256 channels feed the first linear layer
    assert linears[0].in_features == 256 * 3 * 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    bn = build_classifier(TrainParams(arch="cnn", batch_norm=True), 96, 130, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5


def test_paper_cnn_rejects_wrong_block_counts() -> None:
    with pytest.raises(ConfigError, match="channels"):
        build_classifier(TrainParams(arch="cnn", channels=(8, 8)), 16, 20, 3)
    with pytest.raises(ConfigError, match="dense"):
        build_classifier(TrainParams(arch="cnn", dense=(8,)), 16, 20, 3)


def test_crnn_pools_frequency_more_than_time() -> None:
    model = build_classifier(TrainParams(arch="crnn", channels=(8, 8, 8, 8)), 96, 130, 10)
    assert isinstance(model, CRNN)
    assert model.seq_len == 33  # time pooled by 2 only in the first two blocks (ceil)
    assert model.seq_features == 8 * 6  # frequency 96 -> 6 after four poolings
    lstm = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert len(lstm) == 1 and lstm[0].bidirectional


def test_crnn_last_pooling_differs_from_mean() -> None:
    torch.manual_seed(0)
    mean_model = build_classifier(TINY_CRNN, 16, 20, 3).eval()
    last_model = build_classifier(
        TrainParams(**{**TINY_CRNN.__dict__, "pooling": "last"}), 16, 20, 3
    ).eval()
    last_model.load_state_dict(mean_model.state_dict())
    x = torch.randn(2, 16, 20) * 10 - 40
    assert not torch.allclose(mean_model(x), last_model(x))


def test_input_stats_normalise_the_input() -> None:
    model = build_classifier(TINY_CNN, 16, 20, 3).eval()
    x = torch.randn(2, 16, 20)
    model.set_input_stats(-40.0, 12.5)
    assert float(model.input_mean) == -40.0 and float(model.input_std) == 12.5
    shifted = build_classifier(TINY_CNN, 16, 20, 3).eval()
    shifted.load_state_dict(model.state_dict())
    shifted.set_input_stats(0.0, 1.0)
    # the same logits for x given raw dB as for the pre-normalised x given unit stats
    assert torch.allclose(model(x * 12.5 - 40.0), shifted(x), atol=1e-5)
    assert "input_mean" in model.state_dict() and "input_std" in model.state_dict()
    with pytest.raises(ValueError, match="std"):
        model.set_input_stats(0.0, 0.0)


@pytest.mark.parametrize("params", [TINY_CNN, TINY_CRNN])
def test_serving_model_matches_segment_path(params: TrainParams) -> None:
    torch.manual_seed(1)
    fp = TINY_FEATURES
    classifier = build_classifier(params, fp.n_mels, fp.segment_frames, len(GENRES)).eval()
    classifier.set_input_stats(-50.0, 20.0)
    frontend = LogMelFrontend(fp)
    model = WaveformGenreModel(frontend, classifier, fp, GENRES).eval()
    wave = torch.randn(2, 8000) * 0.1  # 1 s -> 5 segments of 0.3 s at 0.15-s hop

    with torch.no_grad():
        served = model(wave)
        segs = frontend.segments(wave)  # the call that builds the training features
        assert segs.shape == (2, 5, fp.n_mels, fp.segment_frames)
        per_clip = [classifier(clip_segments).mean(dim=0) for clip_segments in segs]
        expected = torch.stack(per_clip)
    assert served.shape == (2, len(GENRES))
    torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-5)
    assert model.predict_genres(wave) == [GENRES[i] for i in expected.argmax(1).tolist()]


def test_serving_model_pads_short_clips() -> None:
    fp = TINY_FEATURES
    classifier = build_classifier(TINY_CNN, fp.n_mels, fp.segment_frames, 3).eval()
    model = WaveformGenreModel(LogMelFrontend(fp), classifier, fp, GENRES).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 100)).shape == (1, 3)
        assert model(torch.randn(500)).shape == (1, 3)  # a bare 1-D clip is a batch of one


@pytest.mark.parametrize("params", [TINY_CNN, TINY_CRNN])
def test_save_load_round_trip(tmp_path, params: TrainParams) -> None:
    torch.manual_seed(2)
    fp = TINY_FEATURES
    classifier = build_classifier(params, fp.n_mels, fp.segment_frames, len(GENRES)).eval()
    classifier.set_input_stats(-45.0, 17.0)
    path = tmp_path / "models" / "model.pt"
    save_model(path, classifier, params, fp, GENRES, extra={"best_epoch": 3})
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    loaded, meta = load_classifier(path)
    assert meta["train_params"] == params
    assert meta["feature_params"] == fp
    assert meta["genres"] == GENRES
    assert meta["extra"] == {"best_epoch": 3}
    assert not loaded.training
    x = torch.randn(4, fp.n_mels, fp.segment_frames) * 10 - 40
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), classifier(x), rtol=0, atol=0)

    served = load_serving_model(path)
    reference = WaveformGenreModel(LogMelFrontend(fp), classifier, fp, GENRES).eval()
    wave = torch.randn(3, 4000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(served(wave), reference(wave), rtol=0, atol=0)
    assert served.genres == GENRES


def test_saved_model_is_a_plain_dict(tmp_path) -> None:
    fp = TINY_FEATURES
    classifier = build_classifier(TINY_CNN, fp.n_mels, fp.segment_frames, 3)
    path = tmp_path / "model.pt"
    save_model(path, classifier, TINY_CNN, fp, GENRES)
    payload = torch.load(path, weights_only=True)  # no pickled modules or classes
    assert payload["train_params"]["channels"] == list(TINY_CNN.channels)
    assert set(payload["state_dict"]) == set(classifier.state_dict())


def test_load_rejects_bad_files(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_classifier(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_classifier(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="other.pt.*not a genreflow model"):
        load_serving_model(other)
