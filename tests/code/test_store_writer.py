"""The incremental store writer gives exactly the bytes of np.save / DataFrame.to_csv on the
whole store, and the digest content_digest computes from it (DVC's hash of data/features and
the store's content_sha256 must not change when the store is streamed)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from genreflow.core.atomic import atomic_dir
from genreflow.features.stage import content_digest
from genreflow.features.store_writer import CsvAppender, NpyAppender, npy_header, update_from_file


def _saved(tmp_path, array):
    path = tmp_path / "reference.npy"
    np.save(path, array)
    return path.read_bytes()


def _blocks(rng, sizes, tail, dtype=np.float16):
    return [rng.standard_normal((n, *tail)).astype(dtype) for n in sizes]


@pytest.mark.parametrize(
    ("sizes", "tail", "dtype"),
    [
        ((3, 0, 5, 1), (4, 7), np.float16),  # segments-like, with an empty block between
        ((1,), (96, 130), np.float16),  # the default profile's segment shape
        ((0,), (4, 7), np.float16),  # only empty blocks: (0, 4, 7), as np.concatenate gives
        ((2, 3), (), np.float32),  # 1-D
        ((5, 6), (3,), np.int64),
    ],
)
def test_appended_npy_is_np_save_of_the_concatenation(tmp_path, sizes, tail, dtype):
    blocks = _blocks(np.random.default_rng(0), sizes, tail, dtype)
    whole = np.concatenate(blocks)
    with NpyAppender(tmp_path / "a.npy", dtype, empty_shape=(0,)) as out:
        for block in blocks:
            out.append(block)
    assert out.shape == whole.shape
    assert (tmp_path / "a.npy").read_bytes() == _saved(tmp_path, whole)
    assert out.sha256.hexdigest() == hashlib.sha256(whole.tobytes()).hexdigest()
    assert np.array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), whole)


def test_no_block_gives_np_save_of_the_empty_shape(tmp_path):
    # spectrogramize of an empty manifest stores np.zeros((0, n_mels, 0)), as it always did
    with NpyAppender(tmp_path / "a.npy", np.float16, empty_shape=(0, 16, 0)) as out:
        pass
    assert out.shape == (0, 16, 0)
    assert (tmp_path / "a.npy").read_bytes() == _saved(tmp_path, np.zeros((0, 16, 0), np.float16))


def test_header_length_does_not_depend_on_the_row_count():
    # what lets close() rewrite the header in place, up to far beyond any real corpus
    lengths = {len(npy_header((n, 96, 130), np.float16)) for n in (0, 1, 3600, 10**9, 10**18)}
    assert lengths == {128}


def test_block_of_another_shape_is_refused(tmp_path):
    with NpyAppender(tmp_path / "a.npy", np.float16, (0,)) as out:
        out.append(np.zeros((2, 4, 7), np.float16))
        with pytest.raises(ValueError, match="does not continue"):
            out.append(np.zeros((2, 4, 8), np.float16))


def _rows(n: int, start: int = 0) -> dict[str, list]:
    return {
        "track_id": [f"t,{k // 3}" if k % 5 == 0 else f'q"{k}' for k in range(start, start + n)],
        "label": [k % 4 for k in range(start, start + n)],
        "start_s": [round(k / 22050 * 1000.7, 6) for k in range(start, start + n)],
        "path": [f"data/raw/{k}.wav" for k in range(start, start + n)],
    }


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_csv_in_chunks_is_to_csv_of_the_whole_table(tmp_path, chunk):
    parts = [_rows(3), _rows(0, 3), _rows(11, 3), _rows(1, 14)]
    with CsvAppender(tmp_path / "a.csv", list(parts[0]), chunk=chunk) as out:
        for part in parts:
            out.append(part)
    whole = pd.DataFrame({c: sum((p[c] for p in parts), []) for c in parts[0]})
    assert out.rows == len(whole) == 15
    assert (tmp_path / "a.csv").read_text() == whole.to_csv(index=False)


def test_empty_csv_is_its_header(tmp_path):
    with CsvAppender(tmp_path / "a.csv", ["track_id", "label"]):
        pass
    empty = pd.DataFrame([], columns=["track_id", "label"])
    assert (tmp_path / "a.csv").read_text() == empty.to_csv(index=False) == "track_id,label\n"


def test_streamed_digest_is_content_digest_of_the_whole_store(tmp_path):
    blocks = _blocks(np.random.default_rng(1), (4, 0, 2), (3, 5))
    with (
        NpyAppender(tmp_path / "s.npy", np.float16, (0, 3, 0)) as segments,
        CsvAppender(tmp_path / "i.csv", ["track_id", "label", "start_s", "path"], 2) as index,
    ):
        start = 0
        for block in blocks:
            segments.append(block)
            index.append(_rows(len(block), start))
            start += len(block)
    digest = segments.sha256.copy()
    update_from_file(digest, tmp_path / "i.csv")
    table = pd.DataFrame(_rows(start))
    assert digest.hexdigest() == content_digest(np.concatenate(blocks), table)


def _write_then_fail(target):
    with atomic_dir(target) as tmp, NpyAppender(tmp / "s.npy", np.float16, (0,)) as out:
        out.append(np.ones((3, 4), np.float16))
        raise RuntimeError("bad track")


def test_error_mid_way_leaves_no_file_behind(tmp_path):
    with pytest.raises(RuntimeError, match="bad track"):
        _write_then_fail(tmp_path / "features")
    assert list(tmp_path.iterdir()) == []
