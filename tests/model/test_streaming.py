"""Training on a split streamed from the memory-mapped store (``runtime.memory_budget_gb``):
the same weights as the resident split, bit for bit, and never the whole split in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from genreflow.core.config import AugmentParams
from genreflow.features.store import FeatureStore
from genreflow.models import build_classifier
from genreflow.training.batches import (
    Prefetcher,
    RowReader,
    StreamedSource,
    open_splits,
    resident_bytes,
)
from genreflow.training.loop import train_classifier

CPU = torch.device("cpu")
HUGE_GB, TINY_GB = 1e6, 1e-9
# Every augmentation that draws random numbers, sized for the tiny 19-frame segments: the
# streamed path must leave each draw where the resident path takes it.
DRAWING = AugmentParams(1, 2, 1, 2, 0.2, 2, eq_db=3.0, band_limit_prob=0.3, noise_prob=0.3)


@pytest.fixture(scope="module")
def tiny_store(tiny, tmp_path_factory) -> FeatureStore:
    """The tiny profile's real feature store (memory-mapped, as the stages load it)."""
    layout = tiny.make_repo(tmp_path_factory.mktemp("tiny-stream"))
    return FeatureStore.load(layout.features_dir, mmap=True)


def _train(tiny, store: FeatureStore, arch: str, budget_gb: float, path: Path):
    params = tiny.train(arch, epochs=3, augment=DRAWING)
    _, n_mels, n_frames = store.features.shape
    classifier = build_classifier(params, n_mels, n_frames, len(store.genres))
    result = train_classifier(
        classifier,
        store,
        params,
        seed=5,
        checkpoint_path=path,
        device=CPU,
        progress=False,
        memory_budget_gb=budget_gb,
    )
    return classifier, result


def _split_gb(store: FeatureStore, name: str) -> float:
    return resident_bytes(store, len(store.split_rows(name)), CPU) / 1e9


@pytest.mark.parametrize("arch", ["cnn", "crnn"])
def test_streamed_training_gives_the_resident_weights_bit_for_bit(
    tiny, tiny_store, tmp_path, arch
) -> None:
    """Same permutation, same augmentation draws, same float32 values: the same bytes,
    whichever splits are streamed (the budget is runtime, never recipe)."""
    train_only = _split_gb(tiny_store, "train") * 1.0001  # train fits, val then does not
    budgets = {(): HUGE_GB, ("val",): train_only, ("train", "val"): TINY_GB}
    runs = {}
    for streamed, budget in budgets.items():
        ckpt = tmp_path / f"{'-'.join(streamed) or 'resident'}.pt"
        classifier, result = _train(tiny, tiny_store, arch, budget, ckpt)
        assert result.streamed_splits == streamed
        runs[streamed] = (classifier.state_dict(), result.history, ckpt.read_bytes())
    weights, history, checkpoint = runs[()]
    for streamed in budgets:
        other_weights, other_history, other_checkpoint = runs[streamed]
        assert other_weights.keys() == weights.keys()
        for key, value in weights.items():
            assert torch.equal(other_weights[key], value), (streamed, key)
        assert [h.content() for h in other_history] == [h.content() for h in history]
        assert other_checkpoint == checkpoint, streamed


def test_a_streamed_split_holds_no_segments(tiny_store) -> None:
    """The streamed source keeps the store's mapping and the split's row numbers and labels;
    no array of segments."""
    sources = open_splits(tiny_store, ("train", "val"), CPU, budget_bytes=1)
    for name, source in sources.items():
        assert isinstance(source, StreamedSource)
        assert source.features is tiny_store.features  # the store's own memmap, not a copy
        assert isinstance(source.features, np.memmap)
        for field in dataclasses.fields(source):
            value = getattr(source, field.name)
            if field.name != "features" and hasattr(value, "shape"):
                assert value.ndim == 1, (name, field.name)  # rows, labels, ids: no segments


def _big_store(root: Path, n_rows: int, shape=(32, 40)) -> FeatureStore:
    """A memory-mapped store of ``n_rows`` train segments (and a few val) of ``shape``."""
    import json

    import pandas as pd

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_val = 64
    segments = np.lib.format.open_memmap(
        root / "segments.npy", mode="w+", dtype=np.float16, shape=(n_rows + n_val, *shape)
    )
    for start in range(0, len(segments), 4096):
        block = segments[start : start + 4096]
        block[:] = rng.normal(-40, 10, size=block.shape).astype(np.float16)
    segments.flush()
    del segments
    splits = np.array(["train"] * n_rows + ["val"] * n_val)
    rng.shuffle(splits)  # the splits interleave in the file, as clips of a real store do
    index = pd.DataFrame(
        {
            "track_id": [f"t{i // 4}" for i in range(len(splits))],
            "genre": "g0",
            "label": 0,
            "split": splits,
            "segment": 0,
            "path": "x.wav",
        }
    )
    index.to_csv(root / "index.csv", index=False)
    (root / "meta.json").write_text(json.dumps({"genres": ["g0"], "features": {}}))
    return FeatureStore.load(root, mmap=True)


def test_streaming_an_epoch_allocates_a_few_batches_not_the_split(tmp_path) -> None:
    """Measured: the host allocations (numpy's, which tracemalloc sees) while streaming a
    whole shuffled epoch stay at a few batches; the resident split allocates all of it."""
    store = _big_store(tmp_path / "big", n_rows=6000)  # 15 MB of float16, 31 MB as float32
    split_bytes = resident_bytes(store, len(store.split_rows("train")), CPU)
    batch = 64
    perm = torch.randperm(
        len(store.split_rows("train")), generator=torch.Generator().manual_seed(0)
    )

    tracemalloc.start()
    try:
        source = open_splits(store, ("train",), CPU, budget_bytes=split_bytes / 2)["train"]
        assert source.streamed
        tracemalloc.reset_peak()
        seen = 0
        with contextlib.closing(source.batches(perm, batch)) as batches:
            for xb, _ in batches:
                seen += len(xb)
                del xb
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        resident = open_splits(store, ("train",), CPU, budget_bytes=None)["train"]
        _, resident_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == (len(perm) // batch) * batch
    assert not resident.streamed
    batch_bytes = batch * 32 * 40 * 4
    assert streamed_peak < 8 * batch_bytes, (streamed_peak, batch_bytes)
    assert streamed_peak < split_bytes / 10, (streamed_peak, split_bytes)
    assert resident_peak >= split_bytes / 2  # the measurement sees a materialised split


@pytest.mark.parametrize("mapped", [True, False])
def test_row_reader_returns_rows_in_the_order_asked(tmp_path, mapped) -> None:
    """Shuffled, repeated and adjacent rows come back as ``features[rows]``, whether read by
    ``pread`` on the ``.npy`` file or by indexing an in-memory array."""
    data = np.arange(50 * 3 * 4, dtype=np.float16).reshape(50, 3, 4)
    np.save(tmp_path / "s.npy", data)
    features = np.load(tmp_path / "s.npy", mmap_mode="r" if mapped else None)
    rows = np.array([7, 3, 4, 5, 49, 0, 3, 12, 11, 10])
    with RowReader(features) as reader:
        assert (reader.fd is not None) == mapped
        np.testing.assert_array_equal(reader.read(rows), data[rows])
        np.testing.assert_array_equal(reader.read(np.arange(10, 20)), data[10:20])
    view = np.load(tmp_path / "s.npy", mmap_mode="r")[5:]  # keeps its parent's offset
    with RowReader(view) as reader:
        assert reader.fd is None
        np.testing.assert_array_equal(reader.read(rows[rows < 45]), data[5:][rows[rows < 45]])


def test_prefetcher_keeps_order_bounds_lookahead_and_stops_early() -> None:
    produced: list[int] = []
    lock = threading.Lock()

    def produce(i: int) -> int:
        with lock:
            produced.append(i)
        return i * i

    with Prefetcher(produce, 100, depth=2) as ahead:
        it = iter(ahead)
        assert [next(it) for _ in range(3)] == [0, 1, 4]
    assert len(produced) <= 3 + 2 + 1  # taken, queued, one in hand when stopped

    def failing(i: int) -> int:
        if i == 2:
            raise OSError("disk gone")
        return i

    with pytest.raises(OSError, match="disk gone"), Prefetcher(failing, 5, depth=1) as ahead:
        assert list(ahead) == [0, 1]


def test_the_budget_changes_no_stage_output_and_is_tagged(
    tiny, tiny_store, tmp_path, tmp_path_factory, monkeypatch
) -> None:
    """``runtime.memory_budget_gb`` is runtime: the train stage writes the same bytes with the
    splits resident or streamed, and only the MLflow tag ``streamed_splits`` tells them apart."""
    import shutil

    from mlflow.tracking import MlflowClient

    from genreflow.core.config import RuntimeParams
    from genreflow.core.paths import Layout
    from genreflow.pipeline.train import train_stage

    source_root = Path(tiny_store.features.filename).parents[2]  # repo/data/features/...
    outputs = {}
    for label, budget in (("resident", HUGE_GB), ("streamed", TINY_GB)):
        root = tmp_path / label
        shutil.copytree(source_root, root, ignore=shutil.ignore_patterns("models", "mlflow*"))
        layout = Layout.from_root(root)
        tiny.use_tracking_db(monkeypatch, root, tmp_path_factory)
        params = dataclasses.replace(
            tiny.params(epochs=2, augment=DRAWING),
            runtime=RuntimeParams(memory_budget_gb=budget),
        )
        summary = train_stage(params, "train_cnn", layout, progress=False)
        tags = MlflowClient().get_run(summary["run_id"]).data.tags
        model_dir = layout.models_dir / "cnn"
        outputs[label] = (
            tags["streamed_splits"],
            {name: (model_dir / name).read_bytes() for name in ("model.pt", "checkpoint.pt")},
            (model_dir / "run.json").read_bytes(),
        )
    assert outputs["resident"][0] == "none" and outputs["streamed"][0] == "train,val"
    assert outputs["resident"][1:] == outputs["streamed"][1:]
