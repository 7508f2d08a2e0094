"""Song vectors and windowed scoring, in memory (no MLflow: tests/serving/ loads the logged model).

- Each classifier's ``embed`` is the input of its final Linear, and ``forward == head(embed)``.
- ``WaveformGenreModel.analyse`` returns the segment-averaged, L2-normalised embedding.
- Files and waveforms scored in windows (``ServedModel`` over
  ``genreflow.serving.audio_stream``) give
  the whole-clip result, resampled sources included; the window and block sizes are
  parameters, so a file of several windows stays tiny here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from genreflow.audio import AudioDecodeError, load_mono
from genreflow.features.frontend import LogMelFrontend
from genreflow.models import build_classifier
from genreflow.serving.audio_stream import (
    SegmentGeometry,
    resampled_blocks,
    segment_windows,
)
from genreflow.serving.core import SegmentCore, WaveformGenreModel, channels_last_weights
from genreflow.serving.served import ServedModel

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def _model(tiny, arch: str, seed: int = 0, **overrides) -> WaveformGenreModel:
    torch.manual_seed(seed)
    fp = tiny.features
    classifier = build_classifier(
        tiny.train(arch, **overrides), fp.n_mels, fp.segment_frames, len(tiny.genres)
    ).eval()
    classifier.set_input_stats(-50.0, 20.0)
    return WaveformGenreModel(LogMelFrontend(fp), classifier, fp, list(tiny.genres)).eval()


def _served(model: WaveformGenreModel, window_segments: int, block_frames: int) -> ServedModel:
    """The serving path over an in-memory core (the same module that gets exported)."""
    return ServedModel(
        uri="memory",
        core=SegmentCore(model).eval(),
        genres=tuple(model.genres),
        sample_rate=model.sample_rate,
        geometry=SegmentGeometry.of(model.frontend),
        embedding_dim=model.embedding_dim,
        window_segments=window_segments,
        block_frames=block_frames,
    )


def _wave(seconds: float, sample_rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Noise with a slow loudness swell, so segments differ from each other."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    envelope = 0.05 + 0.3 * (1 + np.sin(np.linspace(0, 7, n))) / 2
    wave = (rng.standard_normal((channels, n)) * envelope).astype(np.float32)
    return wave[0] if channels == 1 else wave


def _reference(model: WaveformGenreModel, mono: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Whole-clip softmax and song vector from the in-memory model."""
    with torch.no_grad():
        logits, embedding = model.analyse(mono[None])
    return torch.softmax(logits[0].double(), dim=0).numpy(), embedding[0].numpy()


# --------------------------------------------------------------------------- song vectors
@pytest.mark.parametrize(
    ("arch", "overrides", "dim"),
    [("cnn", {}, 16), ("crnn", {}, 16), ("crnn", {"dense": ()}, 16)],  # lstm_hidden 8 x 2
    ids=["cnn", "crnn", "crnn-no-dense"],
)
@pytest.mark.parametrize("device", DEVICES)
def test_embed_is_the_input_of_the_final_linear(tiny, arch, overrides, dim, device) -> None:
    classifier = _model(tiny, arch, **overrides).classifier.to(device)
    x = torch.randn(5, tiny.features.n_mels, tiny.features.segment_frames, device=device) * 10
    x = x - 40
    captured = []
    final = classifier.classifier[-1]
    hook = final.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    try:
        with torch.no_grad():
            logits = classifier(x)
            embedding = classifier.embed(x)
    finally:
        hook.remove()
    assert classifier.embedding_dim == dim and embedding.shape == (5, dim)
    torch.testing.assert_close(embedding, captured[0])  # what forward fed the final Linear
    torch.testing.assert_close(classifier.head(embedding), logits)


@pytest.mark.parametrize("arch", ["cnn", "crnn"])
def test_analyse_averages_segment_embeddings_then_normalises(tiny, arch) -> None:
    model = _model(tiny, arch)
    wave = torch.from_numpy(np.stack([_wave(1.0, 8000, seed=s) for s in (1, 2)]))
    with torch.no_grad():
        logits, embedding = model.analyse(wave)
        segments = model.frontend.segments(wave)  # (2, S, n_mels, frames)
        assert segments.shape[1] > 2
        per_segment = torch.stack([model.classifier.embed(clip) for clip in segments])
        expected_logits = torch.stack([model.classifier(clip).mean(0) for clip in segments])
    mean = per_segment.mean(dim=1)
    torch.testing.assert_close(embedding, mean / mean.norm(dim=1, keepdim=True))
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(model(wave), logits)  # forward stays the clip logits
    # the vector of a clip does not depend on the batch it sits in
    with torch.no_grad():
        torch.testing.assert_close(model.analyse(wave[1:])[1], embedding[1:])


# --------------------------------------------------------------------------- serving speed-ups
@pytest.mark.parametrize("kernel", [(2, 2), (2, 1), (1, 2), (1, 1)])
@pytest.mark.parametrize("shape", [(3, 4, 16, 19), (2, 5, 7, 9), (1, 1, 1, 1), (4, 2, 2, 6)])
@pytest.mark.parametrize("device", DEVICES)
def test_pair_max_pool_is_bit_identical_to_max_pool(kernel, shape, device) -> None:
    from genreflow.serving.core import PairMaxPool2d

    x = torch.randn(shape, device=device).relu()  # ReLU before the pool: many tied zeros
    x[0, 0, 0, 0] = float("nan")
    expected = torch.nn.MaxPool2d(kernel, ceil_mode=True)(x)
    got = PairMaxPool2d(kernel)(x)
    assert got.shape == expected.shape
    assert torch.equal(got.nan_to_num(-1.0), expected.nan_to_num(-1.0))
    assert torch.equal(got.isnan(), expected.isnan())
    channels_last = PairMaxPool2d(kernel)(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(channels_last.nan_to_num(-1.0), expected.nan_to_num(-1.0))


@pytest.mark.parametrize(
    ("arch", "batch_norm"), [("cnn", False), ("cnn", True), ("crnn", True), ("crnn", False)]
)
def test_inference_classifier_decides_as_the_trained_one(tiny, arch, batch_norm) -> None:
    from genreflow.serving.core import (
        PairMaxPool2d,
        channels_last_weights,
        inference_classifier,
    )

    classifier = _model(tiny, arch, batch_norm=batch_norm).classifier
    for m in classifier.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    fast = inference_classifier(classifier)
    kinds = {type(m) for m in fast.modules()}
    assert torch.nn.BatchNorm2d not in kinds and torch.nn.MaxPool2d not in kinds
    assert PairMaxPool2d in kinds
    x = torch.randn(6, tiny.features.n_mels, tiny.features.segment_frames) * 10 - 40
    with torch.no_grad():
        torch.testing.assert_close(fast(x), classifier(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.embed(x), classifier.embed(x), rtol=1e-5, atol=1e-5)
        channels_last_weights(fast)
        torch.testing.assert_close(fast(x), classifier(x), rtol=1e-5, atol=1e-5)
    # the trained module is untouched (it is saved and evaluated after the export)
    assert {type(m) for m in classifier.modules()} >= {torch.nn.MaxPool2d}
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------------------- windows
def test_segment_windows_cover_every_segment_once(tiny) -> None:
    g = SegmentGeometry.of(LogMelFrontend(tiny.features))
    for n in [10, g.segment_samples, g.segment_samples + 1, 9_999, 31_337]:
        wave = np.arange(n, dtype=np.float32)
        blocks = [wave[i : i + 700] for i in range(0, n, 700)]
        windows = list(segment_windows(blocks, g, window_segments=3))
        assert sum(w.count for w in windows) == g.n_segments(n), n
        frontend = LogMelFrontend(tiny.features)
        assert g.n_segments(n) == frontend.segments(torch.from_numpy(wave)).shape[0]
        for w in windows:  # each window starts on a segment boundary, within the clip
            assert w.wave[0] % g.hop_samples == 0 and w.skip >= 0


@pytest.mark.parametrize(("orig", "new"), [(16000, 8000), (44100, 8000), (11025, 8000)])
@pytest.mark.parametrize("block", [997, 8192])
def test_blockwise_resampling_equals_whole_file_resampling(orig, new, block) -> None:
    wave = _wave(2.3, orig, seed=3)
    whole = AF.resample(torch.from_numpy(wave), orig_freq=orig, new_freq=new).numpy()
    pieces = list(
        resampled_blocks((wave[i : i + block] for i in range(0, len(wave), block)), orig, new)
    )
    joined = np.concatenate(pieces)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, rtol=0, atol=2e-6)


@pytest.mark.parametrize("arch", ["cnn", "crnn"])
@pytest.mark.parametrize(
    ("sample_rate", "channels", "subtype"),
    [(8000, 1, "FLOAT"), (16000, 2, "FLOAT"), (44100, 1, "PCM_16"), (11025, 2, "PCM_16")],
)
def test_windowed_file_equals_whole_file(tiny, tmp_path, arch, sample_rate, channels, subtype):
    """A 6-s file at 0.15-s segment hop is ~39 segments: 13 windows of 3 segments, read in
    ~0.1-s blocks, against the whole file decoded, resampled and scored in one piece."""
    model = _model(tiny, arch)
    path = tmp_path / f"long_{sample_rate}.wav"
    sf.write(
        path, _wave(6.0, sample_rate, seed=4, channels=channels).T, sample_rate, subtype=subtype
    )
    served = _served(model, window_segments=3, block_frames=1000)
    windowed = served.analyse(path)
    expected_probs, expected_vector = _reference(model, load_mono(path, model.sample_rate))
    probs = np.array([windowed.probabilities[g] for g in model.genres])
    np.testing.assert_allclose(probs, expected_probs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(windowed.embedding, expected_vector, rtol=0, atol=1e-5)
    assert windowed.embedding.dtype == np.float32
    assert windowed.duration_s == pytest.approx(6.0, abs=1 / sample_rate)
    assert list(windowed.probabilities.values()) == sorted(probs, reverse=True)
    assert windowed.genre == model.genres[int(np.argmax(expected_probs))]
    # one window for the whole file scores the same
    whole = _served(model, window_segments=1000, block_frames=1 << 16).analyse(path)
    np.testing.assert_allclose(whole.embedding, windowed.embedding, rtol=0, atol=1e-5)


def test_waveform_in_memory_equals_file(tiny, tmp_path) -> None:
    model = _model(tiny, "cnn")
    wave = _wave(3.0, 16000, seed=5, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, wave.T, 16000, subtype="FLOAT")
    served = _served(model, window_segments=4, block_frames=1500)
    from_file, in_memory = served.analyse(path), served.analyse_waveform(wave, 16000)
    np.testing.assert_allclose(in_memory.embedding, from_file.embedding, rtol=0, atol=1e-6)
    assert in_memory.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    assert in_memory.duration_s == pytest.approx(3.0)
    assert in_memory.path == "<waveform>"


@pytest.mark.parametrize("seconds", [0.05, 0.3])  # shorter than one segment, exactly one
def test_short_clips_are_padded_to_one_segment(tiny, tmp_path, seconds) -> None:
    model = _model(tiny, "crnn")
    path = tmp_path / "short.wav"
    sf.write(path, _wave(seconds, 8000, seed=6), 8000, subtype="FLOAT")
    result = _served(model, window_segments=3, block_frames=100).analyse(path)
    expected_probs, expected_vector = _reference(model, load_mono(path, 8000))
    np.testing.assert_allclose(result.embedding, expected_vector, rtol=0, atol=1e-6)
    got = np.array([result.probabilities[g] for g in model.genres])
    np.testing.assert_allclose(got, expected_probs, rtol=0, atol=1e-6)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-12)
    assert float(np.linalg.norm(result.embedding)) == pytest.approx(1.0, abs=1e-6)


def test_undecodable_and_empty_files_name_the_file(tiny, tmp_path) -> None:
    served = _served(_model(tiny, "cnn"), window_segments=3, block_frames=100)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "zero_samples.wav"
    sf.write(silent, np.zeros(0, dtype=np.float32), 8000)
    for path, reason in [(bad, "not decodable"), (empty, "empty file"), (silent, "zero samples")]:
        with pytest.raises(AudioDecodeError, match=reason) as err:
            served.analyse(path)
        assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="NaN"):
        served.analyse_waveform(np.full(100, np.nan, dtype=np.float32), 8000)


def test_with_windows_changes_only_the_window(tiny) -> None:
    served = _served(_model(tiny, "cnn"), window_segments=3, block_frames=100)
    other = served.with_windows(7)
    assert other.window_segments == 7 and other.block_frames == 100
    assert replace(other, window_segments=3) == served


# --------------------------------------------------------------------------- content identity
def test_weights_sha256_is_the_content_of_the_weights(tiny) -> None:
    """The index records this digest instead of MLflow's random model id: the same weights
    (another object, another memory layout) give the same digest, other weights another."""
    digest = _served(_model(tiny, "cnn"), 3, 100).weights_sha256
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert _served(_model(tiny, "cnn"), 7, 50).weights_sha256 == digest  # same seed, same state
    assert _served(channels_last_weights(_model(tiny, "cnn")), 3, 100).weights_sha256 == digest
    assert _served(_model(tiny, "cnn", seed=1), 3, 100).weights_sha256 != digest
    nudged = _model(tiny, "cnn")
    with torch.no_grad():
        next(nudged.classifier.parameters()).view(-1)[0] += 1e-6  # one value, one ulp or so
    assert _served(nudged, 3, 100).weights_sha256 != digest
