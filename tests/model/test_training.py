"""The shared training loop: determinism, learning, early stopping, resume; augmentations;
clip-level aggregation.

Every test that trains runs on CPU and, where one exists, on CUDA (the ``device`` fixture).
Bit-identical results (determinism, resume, restart) are asserted on CPU only: on CUDA the
loop uses bf16 autocast, cuDNN autotuning and atomics, so there it checks what holds on any
GPU (finite losses, the best state restored, shapes, resume at the right epoch and lr).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genreflow.core.config import AugmentParams, FeatureParams, TrainParams
from genreflow.features.store import FeatureStore
from genreflow.models import build_classifier
from genreflow.training import clip_accuracy, clip_labels, clip_logits, predict_segments
from genreflow.training.augment import (
    augment_batch,
    freq_mask,
    mixup,
    one_hot,
    random_crop,
    time_mask,
)
from genreflow.training.checkpoint import load_checkpoint
from genreflow.training.loop import EpochMetrics, select_device, train_classifier

N_MELS, N_FRAMES, N_CLASSES = 16, 20, 4
CPU = torch.device("cpu")
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def write_store(
    root: Path, tracks_per_class: int = 3, segments: int = 4, signal: float = 12.0, seed: int = 0
) -> FeatureStore:
    """A tiny store where class ``c`` is a loud band at mel rows 4c..4c+3 over noise."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for split in ("train", "val", "test"):
        for c in range(N_CLASSES):
            for t in range(tracks_per_class):
                for s in range(segments):
                    x = rng.normal(-50.0, 6.0, size=(N_MELS, N_FRAMES))
                    x[4 * c : 4 * c + 4] += signal
                    feats.append(x)
                    rows.append((f"{split}-{c}-{t}", f"g{c}", c, split, s, f"{c}/{t}.wav"))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "segments.npy", np.stack(feats).astype(np.float16))
    cols = ["track_id", "genre", "label", "split", "segment", "path"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "index.csv", index=False)
    meta = {
        "features": dataclasses.asdict(FeatureParams(n_mels=N_MELS)),
        "genres": [f"g{c}" for c in range(N_CLASSES)],
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return FeatureStore.load(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    return write_store(tmp_path_factory.mktemp("features"))


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=NO_CUDA)])
def device(request) -> torch.device:
    """Where a training test runs: CPU always, CUDA too when there is one."""
    return torch.device(request.param)


def aug(**on) -> AugmentParams:
    """Augmentation with everything off except ``on`` (the defaults follow params.yaml)."""
    off = {"freq_masks": 0, "freq_mask_width": 0, "time_masks": 0, "time_mask_width": 0,
           "mixup_alpha": 0.0, "random_crop_frames": 0, "eq_db": 0.0, "band_limit_prob": 0.0,
           "noise_prob": 0.0}  # fmt: skip
    return AugmentParams(**{**off, **on})


def tiny(**overrides) -> TrainParams:
    """A tiny model for the tiny store; every field pinned, so params.yaml edits do not leak in."""
    base = {
        "arch": "cnn",
        "epochs": 3,
        "batch_size": 8,
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "lr_schedule": "none",
        "lr_step_epochs": 10,
        "lr_step_gamma": 0.5,
        "early_stopping_patience": 0,
        "dropout": 0.1,
        "batch_norm": False,
        "channels": (4, 4, 8, 8, 8),
        "dense": (16, 16, 8, 8),
        "lstm_hidden": 8,
        "lstm_layers": 1,
        "bidirectional": True,
        "pooling": "mean",
        "augment": aug(),
        "mixed_precision": True,  # bf16 autocast, channels_last and device-resident on CUDA
    }
    base.update(overrides)
    return TrainParams(**base)


def train(store, params, path, seed=0, device=CPU, **kw):
    model = build_classifier(params, N_MELS, N_FRAMES, N_CLASSES)
    result = train_classifier(model, store, params, seed, path, device=device, progress=False, **kw)
    return model, result


def assert_finite(history: list[EpochMetrics]) -> None:
    for h in history:
        for name in ("train_loss", "val_loss", "train_accuracy", "val_clip_accuracy"):
            assert np.isfinite(getattr(h, name)), (h.epoch, name)


def assert_best_state_restored(model: torch.nn.Module, checkpoint: Path, device) -> None:
    """The returned model lives on ``device`` in eval mode, holding the checkpoint's best state."""
    assert not model.training
    assert all(p.device.type == device.type for p in model.parameters())
    best = load_checkpoint(checkpoint)["best_state"]
    state = model.state_dict()
    assert state.keys() == best.keys()
    for k, v in state.items():
        assert torch.equal(v.cpu(), best[k]), k


def strip_time(history: list[EpochMetrics]) -> list[dict]:
    """The epochs without wall-clock timings (what a checkpoint keeps of them)."""
    return [h.content() for h in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------- clip metrics
def test_clip_logits_mean_in_first_seen_order() -> None:
    logits = np.array([[1, 0], [3, 0], [0, 5], [5, 0], [0, 1]], dtype=np.float32)
    ids = np.array(["z", "z", "a", "z", "m"])
    tracks, means = clip_logits(logits, ids)
    assert tracks.tolist() == ["z", "a", "m"]
    np.testing.assert_allclose(means, [[3, 0], [0, 5], [0, 1]])
    tracks2, labels = clip_labels(np.array([1, 1, 0, 1, 2]), ids)
    assert tracks2.tolist() == ["z", "a", "m"] and labels.tolist() == [1, 0, 2]
    # segment majority would say class 1 for "z"; the logit mean decides
    assert clip_accuracy(logits, np.array([0, 0, 1, 0, 1]), ids) == 1.0


def test_clip_labels_reject_mixed_labels() -> None:
    with pytest.raises(ValueError, match="'t1'"):
        clip_labels(np.array([0, 1]), np.array(["t1", "t1"]))


# ----------------------------------------------------------------------------- augmentation
def test_masks_and_crop_keep_shape_and_change_values() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, N_MELS, N_FRAMES) * 10 - 40
    for fn, arg in ((freq_mask, (2, 4)), (time_mask, (2, 5)), (random_crop, (4,))):
        y = fn(x, *arg, gen)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert not torch.equal(y, x), fn.__name__
    # a frequency mask blanks whole mel rows with the sample's mean
    y = freq_mask(x, 1, N_MELS, torch.Generator().manual_seed(3))
    changed_rows = (y != x).any(dim=2)
    for b in range(x.shape[0]):
        rows = changed_rows[b].nonzero().flatten()
        if len(rows):
            assert torch.allclose(y[b, rows], x[b].mean().expand(len(rows), N_FRAMES))
    # a crop is a time shift: each output row is a window of the padded input
    z = random_crop(x, 3, torch.Generator().manual_seed(1))
    inner = z[:, :, 3:-3]
    assert any(torch.equal(inner[0], x[0, :, s : s + N_FRAMES - 6]) for s in range(7))


def test_augmentations_off_are_the_identity_and_reproducible() -> None:
    x = torch.randn(4, N_MELS, N_FRAMES)
    assert torch.equal(augment_batch(x, aug(), torch.Generator()), x)
    p = aug(freq_masks=1, freq_mask_width=3, time_masks=2, time_mask_width=4,
            random_crop_frames=2)  # fmt: skip
    a = augment_batch(x, p, torch.Generator().manual_seed(5))
    b = augment_batch(x, p, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_mixup_soft_labels() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1).expand(8, 2, 3).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, soft = mixup(x, one_hot(labels, 4), alpha=0.4, gen=gen)
    assert mixed.shape == x.shape and soft.shape == (8, 4)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))
    assert (soft >= 0).all()
    lam = soft[torch.arange(8), labels]  # weight kept on each sample's own label
    partner_value = (mixed[:, 0, 0] - lam * x[:, 0, 0]) / (1 - lam).clamp_min(1e-6)
    # each mixed input is lam * own + (1 - lam) * some partner in the batch
    for v in partner_value[lam < 0.999]:
        assert torch.isclose(v, x[:, 0, 0], atol=1e-3).any()
    assert not torch.equal(mixed, x)  # alpha > 0 really mixes (with this seed)
    same_x, same_t = mixup(x, one_hot(labels, 4), alpha=0.0, gen=gen)
    assert same_x is x and torch.equal(same_t, one_hot(labels, 4))


# ----------------------------------------------------------------------------- training loop
def test_cpu_training_is_deterministic(store, tmp_path, device) -> None:
    params = tiny(augment=aug(freq_masks=1, freq_mask_width=2, mixup_alpha=0.2))
    m1, r1 = train(store, params, tmp_path / "a.pt", seed=3, device=device)
    m2, r2 = train(store, params, tmp_path / "b.pt", seed=3, device=device)
    m3, _ = train(store, params, tmp_path / "c.pt", seed=4, device=device)
    # the seed matters on every device
    assert any(not torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters(), strict=True))
    if device.type == "cpu":
        assert_same_weights(m1, m2)
        assert strip_time(r1.history) == strip_time(r2.history)
    else:  # cuDNN autotuning and atomics: same seed, same schedule, not the same bits
        assert [h.epoch for h in r1.history] == [h.epoch for h in r2.history] == [1, 2, 3]
        assert [h.lr for h in r1.history] == [h.lr for h in r2.history]
        assert_finite(r1.history)
        assert_finite(r2.history)


@pytest.mark.parametrize("arch", ["cnn", "crnn"])
def test_learns_a_separable_problem(store, tmp_path, arch, device) -> None:
    if arch == "cnn":  # ten plain weight layers need a little width and a few more steps
        params = tiny(epochs=12, lr=0.01, channels=(8, 8, 16, 16, 16), dense=(32, 32, 32, 32))
    else:
        params = tiny(arch="crnn", epochs=12, lr=0.05, channels=(4, 8), dense=())
    model, result = train(store, params, tmp_path / "ckpt.pt", device=device)
    assert len(result.history) == 12
    assert_finite(result.history)
    # chance is 0.25; the CPU run is reproducible, a bf16 CUDA run gets a looser floor
    floor = 0.9 if device.type == "cpu" else 0.75
    assert result.best_val_clip_accuracy >= floor
    assert result.history[-1].train_loss < result.history[0].train_loss
    feats, labels, ids = store.split("test")
    logits = predict_segments(model, feats)
    assert logits.shape == (len(feats), N_CLASSES) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert clip_accuracy(logits, labels, ids) >= floor - 0.15
    # the returned model holds the best epoch's weights: re-evaluating val reproduces its score
    assert_best_state_restored(model, tmp_path / "ckpt.pt", device)
    vf, vl, vi = store.split("val")
    best = result.history[result.best_epoch - 1]
    assert clip_accuracy(predict_segments(model, vf), vl, vi) == best.val_clip_accuracy
    assert result.best_val_clip_accuracy == max(h.val_clip_accuracy for h in result.history)


def test_mixed_precision_trains_on_the_available_device(store, tmp_path) -> None:
    """``mixed_precision: true`` on whatever device this machine has.

    On CUDA the training forward runs under bf16 autocast (logits come out bfloat16) on
    channels_last weights; on CPU autocast is off by design, so the flag changes nothing.
    Validation always runs in float32.
    """
    device = select_device()
    params = tiny(epochs=4, mixed_precision=True)
    model = build_classifier(params, N_MELS, N_FRAMES, N_CLASSES)
    seen: list[tuple[bool, torch.dtype, str]] = []
    model.register_forward_hook(
        lambda mod, _inp, out: seen.append((mod.training, out.dtype, out.device.type))
    )
    result = train_classifier(
        model, store, params, 0, tmp_path / "amp.pt", device=device, progress=False
    )
    assert_finite(result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.best_val_clip_accuracy > 0.25  # better than chance
    assert_best_state_restored(model, tmp_path / "amp.pt", device)
    train_dtypes = {dtype for training, dtype, _ in seen if training}
    eval_dtypes = {dtype for training, dtype, _ in seen if not training}
    assert train_dtypes == ({torch.bfloat16} if device.type == "cuda" else {torch.float32})
    assert eval_dtypes == {torch.float32}
    assert {where for *_, where in seen} == {device.type}  # data resident where the model is
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    if device.type == "cpu":  # the flag is ignored on CPU: bit-identical to a float32 run
        fp32_model, fp32 = train(
            store, tiny(epochs=4, mixed_precision=False), tmp_path / "fp32.pt", device=device
        )
        assert strip_time(fp32.history) == strip_time(result.history)
        assert_same_weights(fp32_model, model)


def test_input_stats_come_from_the_train_split(store, tmp_path, device) -> None:
    model, _ = train(store, tiny(epochs=1), tmp_path / "ckpt.pt", device=device)
    train_feats = store.split("train")[0].astype(np.float64)
    assert float(model.input_mean) == pytest.approx(train_feats.mean(), rel=1e-5)
    assert float(model.input_std) == pytest.approx(train_feats.std(), rel=1e-4)


def test_early_stopping_stops(store, tmp_path, device) -> None:
    # lr 0: nothing improves after the first epoch, so patience 2 ends training at epoch 3
    params = tiny(epochs=10, lr=0.0, early_stopping_patience=2)
    _, result = train(store, params, tmp_path / "ckpt.pt", device=device)
    assert result.stopped_early
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert result.best_epoch == 1
    _, no_es = train(store, tiny(epochs=4, lr=0.0), tmp_path / "full.pt", device=device)
    assert not no_es.stopped_early and len(no_es.history) == 4


def test_lr_schedules(store, tmp_path, device) -> None:
    _, cos = train(store, tiny(epochs=3, lr_schedule="cosine"), tmp_path / "cos.pt", device=device)
    lrs = [h.lr for h in cos.history]
    assert lrs[0] == pytest.approx(0.02) and lrs[0] > lrs[1] > lrs[2] > 0
    step_params = tiny(epochs=3, lr_schedule="step", lr_step_epochs=2, lr_step_gamma=0.1)
    _, step = train(store, step_params, tmp_path / "step.pt", device=device)
    assert [h.lr for h in step.history] == pytest.approx([0.02, 0.02, 0.002])


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("arch", ["cnn", "crnn"])
def test_kill_and_resume_matches_uninterrupted_run(store, tmp_path, arch, device, caplog) -> None:
    every = aug(freq_masks=1, freq_mask_width=3, time_masks=1, time_mask_width=3,
                mixup_alpha=0.3, random_crop_frames=2)  # fmt: skip
    params = tiny(arch=arch, epochs=4, lr_schedule="cosine", augment=every,
                  channels=(4, 4, 8, 8, 8) if arch == "cnn" else (4, 8),
                  dense=(16, 16, 8, 8) if arch == "cnn" else (8,))  # fmt: skip
    full_model, full = train(store, params, tmp_path / "full.pt", seed=11, device=device)
    before_kill: list[EpochMetrics] = []

    def kill_after_two(m: EpochMetrics) -> None:
        before_kill.append(m)
        if m.epoch == 2:
            raise Killed

    ckpt = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        train(store, params, ckpt, seed=11, device=device, on_epoch=kill_after_two)
    assert ckpt.is_file()

    seen: list[int] = []
    with caplog.at_level(logging.INFO, logger="genreflow.training.loop"):
        resumed_model, resumed = train(
            store, params, ckpt, seed=11, device=device, on_epoch=lambda m: seen.append(m.epoch)
        )
    assert "resuming from epoch 2" in caplog.text
    assert resumed.resumed_from_epoch == 2
    assert seen == [3, 4]  # finished epochs are not replayed
    # the epochs before the kill come back from the checkpoint as they were recorded, less their
    # wall-clock timings (provenance: MLflow has them, the checkpoint keeps none)
    assert strip_time(resumed.history[:2]) == strip_time(before_kill)
    assert all(m.seconds == 0.0 for m in resumed.history[:2])
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    # the cosine schedule continues where it stopped, not from the start
    assert [h.lr for h in resumed.history] == [h.lr for h in full.history]
    assert_finite(resumed.history)
    assert_best_state_restored(resumed_model, ckpt, device)
    if device.type == "cpu":
        assert_same_weights(resumed_model, full_model)
        assert strip_time(resumed.history) == strip_time(full.history)
        assert resumed.best_epoch == full.best_epoch


def test_finished_checkpoint_returns_without_retraining(store, tmp_path, device, caplog) -> None:
    ckpt = tmp_path / "ckpt.pt"
    model, first = train(store, tiny(epochs=2), ckpt, device=device)
    mtime = ckpt.stat().st_mtime_ns

    def must_not_train(m: EpochMetrics) -> None:
        raise AssertionError(f"retrained epoch {m.epoch}")

    with caplog.at_level(logging.INFO, logger="genreflow.training.loop"):
        again_model, again = train(
            store, tiny(epochs=2), ckpt, device=device, on_epoch=must_not_train
        )
    assert "already finished" in caplog.text
    assert ckpt.stat().st_mtime_ns == mtime
    assert strip_time(again.history) == strip_time(first.history)
    assert again.best_epoch == first.best_epoch
    assert_same_weights(again_model, model)
    assert_best_state_restored(again_model, ckpt, device)


def test_config_change_restarts_from_scratch(store, tmp_path, device, caplog) -> None:
    ckpt = tmp_path / "ckpt.pt"
    train(store, tiny(epochs=2), ckpt, device=device)
    changed = tiny(epochs=2, lr=0.03)
    with caplog.at_level(logging.INFO, logger="genreflow.training.loop"):
        model, result = train(store, changed, ckpt, device=device)
    assert "different training config" in caplog.text and str(ckpt) in caplog.text
    assert result.resumed_from_epoch is None
    assert [h.epoch for h in result.history] == [1, 2]
    assert_finite(result.history)
    if device.type == "cpu":
        fresh_model, fresh = train(store, changed, tmp_path / "fresh.pt", device=device)
        assert strip_time(result.history) == strip_time(fresh.history)
        assert_same_weights(model, fresh_model)
    # so does another seed
    with caplog.at_level(logging.INFO, logger="genreflow.training.loop"):
        _, other_seed = train(store, changed, ckpt, seed=1, device=device)
    assert other_seed.resumed_from_epoch is None


def test_divergence_is_a_clear_error(store, tmp_path, device) -> None:
    # CPU reproducibly gets NaN; bf16 on CUDA may overflow to inf first
    match = "loss became nan in epoch 1" if device.type == "cpu" else "loss became (nan|inf) in"
    with pytest.raises(FloatingPointError, match=match):
        train(store, tiny(epochs=2, lr=1e12, dropout=0.0), tmp_path / "ckpt.pt", device=device)


def test_empty_split_is_a_clear_error(tmp_path) -> None:
    s = write_store(tmp_path / "f", tracks_per_class=1, segments=1)
    s.index.loc[s.index["split"] == "val", "split"] = "test"
    with pytest.raises(ValueError, match="no 'val' segments"):
        train(s, tiny(epochs=1), tmp_path / "ckpt.pt")
