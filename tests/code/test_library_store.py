"""The library journal (genreflow.similarity.library_store) without a model: what survives,
what a model change drops, and that a moved file's vector outlives the move."""

from __future__ import annotations

import numpy as np
import pytest

from genreflow.similarity.library_store import FileRecord, LibraryJournal, ModelIdentity, Song

MODEL = ModelIdentity("genre-classifier", "1", "a" * 64, 4)


def _song(sha: str, seed: int) -> Song:
    v = np.random.default_rng(seed).standard_normal(4).astype(np.float32)
    return Song(sha, v / np.linalg.norm(v), "jazz", 30.0)


def test_songs_and_files_survive_reopening(tmp_path):
    with LibraryJournal(tmp_path) as journal:
        assert journal.adopt_model(MODEL) is False
        journal.add(_song("s1", 1), FileRecord("/m/a.mp3", "s1", 10, 111))
        journal.add(_song("s2", 2), FileRecord("/m/b.ogg", "s2", 20, 222))
    with LibraryJournal(tmp_path) as journal:
        assert journal.model() == MODEL
        assert set(journal.files()) == {"/m/a.mp3", "/m/b.ogg"}
        stored = journal.song("s1")
        assert stored is not None and stored.genre == "jazz"
        np.testing.assert_array_equal(stored.vector, _song("s1", 1).vector)  # bit for bit
        assert [row[0] for row in journal.searchable()] == ["/m/a.mp3", "/m/b.ogg"]


def test_a_moved_file_keeps_its_vector_until_pruned(tmp_path):
    with LibraryJournal(tmp_path) as journal:
        journal.adopt_model(MODEL)
        journal.add(_song("s1", 1), FileRecord("/m/old.mp3", "s1", 10, 1))
        journal.drop_files(["/m/old.mp3"])
        assert journal.has_song("s1")  # a re-run finds it under its new path
        journal.put_file(FileRecord("/m/new.mp3", "s1", 10, 2))
        assert journal.prune_songs() == 0
        journal.drop_files(["/m/new.mp3"])
        assert journal.prune_songs() == 1 and not journal.has_song("s1")


@pytest.mark.parametrize("change", ["weights", "dim"])
def test_another_model_drops_every_vector(tmp_path, change):
    other = (
        ModelIdentity("genre-classifier", "2", "b" * 64, 4)
        if change == "weights"
        else ModelIdentity("genre-classifier", "1", "a" * 64, 8)
    )
    with LibraryJournal(tmp_path) as journal:
        journal.adopt_model(MODEL)
        journal.add(_song("s1", 1), FileRecord("/m/a.mp3", "s1", 10, 1))
        assert journal.adopt_model(MODEL) is False and journal.count_songs() == 1
        assert journal.adopt_model(other) is True
        assert journal.count_songs() == 0 and journal.model() == other
        assert list(journal.searchable()) == []  # files stay; their contents need embedding
        assert set(journal.files()) == {"/m/a.mp3"}
