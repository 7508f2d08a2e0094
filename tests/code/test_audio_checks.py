"""A bad audio file is reported in the same words by every reader of audio.

``genreflow.audio`` is the one home of the missing / empty / undecodable / no-samples checks;
the whole-file reader (training features), validation's block-wise measurements and serving's
windowed decoding must all raise :class:`AudioDecodeError` with the file's path and the same
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.audio import AudioDecodeError, read_audio
from genreflow.serving.audio_stream import DecodedLength, file_blocks
from genreflow.validation.decode_table import measure_audio


def _serving(path: Path) -> None:
    list(file_blocks(path, DecodedLength(), block_frames=1024))


def _validation(path: Path) -> None:
    measure_audio(path, block_frames=1024)


READERS: dict[str, Callable[[Path], object]] = {
    "read_audio": read_audio,
    "validation": _validation,
    "serving": _serving,
}


def _bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the reason every reader must give)."""
    root.mkdir(parents=True, exist_ok=True)
    empty = root / "empty.wav"
    empty.write_bytes(b"")
    garbage = root / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF file" * 10)
    silent = root / "nothing.wav"
    sf.write(silent, np.zeros((0, 1), dtype=np.float32), 22050)  # a header, no frames
    return {
        "missing": (root / "gone.wav", "file not found"),
        "empty": (empty, "empty file (0 bytes)"),
        "garbage": (garbage, "not decodable audio ("),
        "no samples": (silent, "decodes to zero samples"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "no samples"])
def test_every_reader_names_the_file_and_the_same_reason(tmp_path: Path, case: str) -> None:
    path, reason = _bad_files(tmp_path)[case]
    messages = {}
    for name, read in READERS.items():
        with pytest.raises(AudioDecodeError) as caught:
            read(path)
        err = caught.value
        assert err.path == str(path), name
        assert err.reason.startswith(reason), (name, err.reason)
        assert str(err).startswith(f"{path}: "), name
        assert "\n" not in str(err), name
        messages[name] = str(err)
    assert len(set(messages.values())) == 1, messages  # word for word the same


def test_a_good_file_reads_the_same_whole_and_in_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(5000, 2)).astype(np.float32)
    path = tmp_path / "ok.wav"
    sf.write(path, stereo, 22050, subtype="FLOAT")
    wave, rate = read_audio(path)
    assert rate == 22050 and wave.shape == (2, 5000)
    np.testing.assert_array_equal(wave, stereo.T)
    length = DecodedLength()
    mono = np.concatenate(list(file_blocks(path, length, block_frames=1024)))
    assert (length.frames, length.sample_rate) == (5000, 22050)
    np.testing.assert_array_equal(mono, stereo.T.mean(axis=0))


def test_a_corrupt_mp3_is_called_corrupt_not_missing(tmp_path: Path) -> None:
    """libsndfile says an existing file "does not exist" when no format matches its bytes;
    the quarantine reason must not send the user looking for a missing file."""
    good = tmp_path / "good.mp3"
    sf.write(good, np.full(22050, 0.1, dtype=np.float32), 22050)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\0" * 200 + good.read_bytes()[200:400])
    with pytest.raises(AudioDecodeError) as info:
        read_audio(bad)
    assert str(bad) in str(info.value)
    assert "corrupt" in info.value.reason and "does not exist" not in info.value.reason
