"""Checkpoint files: atomic save, safe load, RNG capture, and how the loop survives bad ones."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genreflow.core.config import FeatureParams, TrainParams
from genreflow.features.store import FeatureStore
from genreflow.models import build_classifier
from genreflow.training.checkpoint import (
    CheckpointError,
    capture_rng,
    config_hash,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    stale_reasons,
)
from genreflow.training.code_identity import (
    changed_files,
    code_hashes,
    package_root,
    weight_shaping_files,
)
from genreflow.training.loop import EpochMetrics, train_classifier

N_MELS, N_FRAMES, N_CLASSES = 8, 12, 3
PARAMS = TrainParams(
    arch="cnn", epochs=2, batch_size=6, lr=0.02, channels=(4, 4, 4, 4, 4), dense=(8, 8, 8, 8)
)
LOGGER = "genreflow.training.loop"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    rows, feats = [], []
    for split in ("train", "val"):
        for c in range(N_CLASSES):
            for t in range(2):
                for s in range(3):
                    x = rng.normal(-50.0, 5.0, size=(N_MELS, N_FRAMES))
                    x[2 * c : 2 * c + 2] += 10.0
                    feats.append(x)
                    rows.append((f"{split}{c}{t}", f"g{c}", c, split, s, ""))
    np.save(root / "segments.npy", np.stack(feats).astype(np.float16))
    cols = ["track_id", "genre", "label", "split", "segment", "path"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "index.csv", index=False)
    meta = {"features": dataclasses.asdict(FeatureParams(n_mels=N_MELS)), "genres": ["a", "b", "c"]}
    (root / "meta.json").write_text(json.dumps(meta))
    return FeatureStore.load(root)


def run(store: FeatureStore, path: Path, seed: int = 0, on_epoch=None):
    model = build_classifier(PARAMS, N_MELS, N_FRAMES, N_CLASSES)
    result = train_classifier(
        model,
        store,
        PARAMS,
        seed,
        path,
        on_epoch=on_epoch,
        device=torch.device("cpu"),
        progress=False,
    )
    return model, result


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    """An uninterrupted run from scratch, to compare restarted runs against."""
    model, result = run(store, tmp_path_factory.mktemp("ref") / "ckpt.pt")
    return weights(model), result


def assert_restarted_cleanly(store, path: Path, reference, caplog, reason: str) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model, result = run(store, path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "expected a warning about the checkpoint"
    text = "\n".join(r.getMessage() for r in warnings)
    assert str(path) in text and reason in text
    assert "from scratch" in text
    assert result.resumed_from_epoch is None
    ref_weights, ref_result = reference
    assert len(result.history) == len(ref_result.history) == PARAMS.epochs
    for k, v in weights(model).items():
        assert torch.equal(v, ref_weights[k]), k
    # the bad file was replaced by a good, finished checkpoint
    state = load_checkpoint(path)
    assert state is not None and state["finished"] and state["epoch"] == PARAMS.epochs


def test_garbage_checkpoint_restarts_from_scratch(store, tmp_path, reference, caplog) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"\x00garbage, not a zip archive")
    assert_restarted_cleanly(store, path, reference, caplog, "unreadable checkpoint")


def test_truncated_checkpoint_restarts_from_scratch(store, tmp_path, reference, caplog) -> None:
    path = tmp_path / "ckpt.pt"
    run(store, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # as if the disk filled up mid-copy
    assert_restarted_cleanly(store, path, reference, caplog, "unreadable checkpoint")


def test_foreign_torch_file_restarts_from_scratch(store, tmp_path, reference, caplog) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    assert_restarted_cleanly(store, path, reference, caplog, "not a genreflow training checkpoint")


def test_checkpoint_with_broken_state_restarts(store, tmp_path, reference, caplog) -> None:
    """Right format and config hash, but weights that do not fit the model."""
    path = tmp_path / "ckpt.pt"
    run(store, path)
    state = load_checkpoint(path)
    assert state is not None
    state["finished"] = False
    state["epoch"] = 1
    state["model"] = {"features.0.0.weight": torch.zeros(1)}
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    assert_restarted_cleanly(store, path, reference, caplog, "cannot restore checkpoint")


def test_load_checkpoint_errors_name_the_file(tmp_path) -> None:
    assert load_checkpoint(tmp_path / "absent.pt") is None
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    partial = tmp_path / "partial.pt"
    save_checkpoint(partial, {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"partial.pt: checkpoint lacks .*config_hash"):
        load_checkpoint(partial)


def test_save_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left


def test_rng_capture_restore_round_trip(tmp_path) -> None:
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = capture_rng(gen)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": state})
    first = (torch.rand(3), torch.rand(3, generator=gen), np.random.rand(3), random.random())
    loaded = torch.load(path, weights_only=True)["rng"]  # survives the safe loader
    restore_rng(loaded, gen)
    second = (torch.rand(3), torch.rand(3, generator=gen), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert np.array_equal(first[2], second[2]) and first[3] == second[3]


def test_config_hash_is_stable_and_sensitive() -> None:
    a = {"params": {"lr": 0.1, "channels": [1, 2]}, "seed": 1}
    b = {"seed": 1, "params": {"channels": [1, 2], "lr": 0.1}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "seed": 2})


# --------------------------------------------------------------------------- code identity
EDITED_FILE = "models/cnn.py"


@pytest.fixture(scope="module")
def edited_sources(tmp_path_factory) -> Path:
    """A copy of the package sources with the CNN's activation swapped (ReLU -> GELU).

    The kind of edit that keeps every ``state_dict`` key, so old weights would load into the
    new architecture without complaint: only the code identity can tell them apart.
    """
    root = tmp_path_factory.mktemp("sources") / "genreflow"
    shutil.copytree(package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    cnn = root / EDITED_FILE
    text = cnn.read_text()
    assert "nn.ReLU(inplace=True), nn.MaxPool2d" in text
    cnn.write_text(text.replace("nn.ReLU(inplace=True), nn.MaxPool2d", "nn.GELU(), nn.MaxPool2d"))
    return root


def finished_checkpoint(store: FeatureStore, path: Path) -> dict:
    run(store, path)
    state = load_checkpoint(path)
    assert state is not None and state["finished"]
    return state


def rewrite_config(path: Path, state: dict, **changes) -> None:
    """Save ``state`` as if it had been trained under its config with ``changes`` applied.

    The key is recomputed from the edited config, as the loop would have written it.
    """
    config = {**state["config"], **changes}
    body = {k: v for k, v in state.items() if k != "format"}
    save_checkpoint(path, {**body, "config": config, "config_hash": config_hash(config)})


def test_code_identity_covers_the_weight_shaping_sources(edited_sources) -> None:
    files = weight_shaping_files(package_root())
    assert {"models/cnn.py", "models/crnn.py", "training/loop.py", "features/frontend.py"} <= set(
        files
    )
    assert not {"features/store.py", "tracking.py", "config.py"} & set(files)
    assert files == sorted(files)
    # a byte-identical copy has the same identity: paths are relative to the package root
    pristine = edited_sources.parent / "pristine"
    shutil.copytree(package_root(), pristine, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_hashes(pristine) == code_hashes()
    assert changed_files(code_hashes(), code_hashes(edited_sources)) == [EDITED_FILE]


def test_checkpoint_stores_its_identity(store, tmp_path) -> None:
    state = finished_checkpoint(store, tmp_path / "ckpt.pt")
    assert state["config"]["code"] == code_hashes()
    assert state["config"]["torch"] == torch.__version__
    assert state["config_hash"] == config_hash(state["config"])


def test_checkpoint_is_content_only_and_keeps_the_numeric_recipe(store, tmp_path) -> None:
    """Two runs of the same inputs write the same checkpoint bytes: no wall-clock timings in
    its history (MLflow has them), and the numeric recipe in force is part of its key."""
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    state = finished_checkpoint(store, first)
    finished_checkpoint(store, second)
    assert all(not set(h) & {"seconds", "train_seconds"} for h in state["history"])
    assert state["config"]["numerics"]["threads"] == torch.get_num_threads()
    assert first.read_bytes() == second.read_bytes()


def test_finished_checkpoint_from_other_code_retrains(
    store, tmp_path, reference, caplog, edited_sources
) -> None:
    """The bug: a finished checkpoint of other code was reused, its weights logged anew."""
    path = tmp_path / "ckpt.pt"
    state = finished_checkpoint(store, path)
    rewrite_config(path, state, code=code_hashes(edited_sources))
    assert_restarted_cleanly(store, path, reference, caplog, f"code changed ({EDITED_FILE})")
    assert f"checkpoint {path} is stale" in caplog.text
    assert load_checkpoint(path)["config"]["code"] == code_hashes()


def test_unfinished_checkpoint_from_other_torch_retrains(store, tmp_path, reference, caplog):
    """Never resume across torch versions either: numerics and initialisers may differ."""
    path = tmp_path / "ckpt.pt"
    state = interrupted_checkpoint(store, path)
    rewrite_config(path, state, torch="2.0.0")
    assert_restarted_cleanly(store, path, reference, caplog, f"torch 2.0.0 -> {torch.__version__}")


def test_checkpoint_without_identity_retrains(store, tmp_path, reference, caplog) -> None:
    """A checkpoint written before the config was stored in it cannot prove its code."""
    path = tmp_path / "ckpt.pt"
    state = finished_checkpoint(store, path)
    body = {k: v for k, v in state.items() if k not in ("format", "config")}
    save_checkpoint(path, {**body, "config_hash": "0" * 64})
    assert_restarted_cleanly(store, path, reference, caplog, "records no training identity")


def interrupted_checkpoint(store: FeatureStore, path: Path) -> dict:
    """The checkpoint a stage killed right after epoch 1 leaves behind."""

    class Killed(Exception):
        pass

    def kill_after_first(metrics: EpochMetrics) -> None:
        raise Killed

    with pytest.raises(Killed):
        run(store, path, on_epoch=kill_after_first)
    state = load_checkpoint(path)
    assert state is not None and state["epoch"] == 1 and not state["finished"]
    return state


def test_same_code_resumes_and_then_skips(store, tmp_path, reference, caplog) -> None:
    path = tmp_path / "ckpt.pt"
    interrupted_checkpoint(store, path)
    model, resumed = run(store, path)
    assert resumed.resumed_from_epoch == 1
    ref_weights, _ = reference
    assert all(torch.equal(v, ref_weights[k]) for k, v in weights(model).items())
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, skipped = run(store, path)
    assert skipped.resumed_from_epoch == PARAMS.epochs
    assert "already finished" in caplog.text and "stale" not in caplog.text


def test_stale_reasons_name_what_changed() -> None:
    old = {
        "code": {"models/cnn.py": "a", "training/loop.py": "b", "models/old.py": "c"},
        "torch": "2.14.1",
        "params": {"lr": 0.1, "augment": {"mixup_alpha": 0.0}, "epochs": 2},
        "seed": 0,
        "store_content": "f" * 64,
        "genres": ["a", "b"],
    }
    new = {
        "code": {"models/cnn.py": "A", "training/loop.py": "b", "models/new.py": "d"},
        "torch": "2.15.0",
        "params": {"lr": 0.2, "augment": {"mixup_alpha": 0.2}, "epochs": 2},
        "seed": 1,
        "store_content": "e" * 64,
        "genres": ["a", "c"],
    }
    assert stale_reasons(old, new) == [
        "code changed (models/cnn.py, models/new.py, models/old.py)",
        "genres changed",
        "params changed: augment.mixup_alpha, lr",
        "seed 0 -> 1",
        f"store_content {'f' * 12} -> {'e' * 12}",
        "torch 2.14.1 -> 2.15.0",
    ]
    assert stale_reasons(old, old) == ["training config changed"]
    assert stale_reasons(None, new) == [
        "it records no training identity (written by an older genreflow)"
    ]
