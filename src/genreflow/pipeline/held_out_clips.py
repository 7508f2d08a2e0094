"""The test split as raw audio: what the registry re-scores and robustness perturbs.

The feature store holds segments; the promotion gate and the robustness checks go through
the served model on the audio files, so they need the test clips as paths, in store order,
with the audio hash that identifies the split.
"""

from __future__ import annotations

from pathlib import Path

from genreflow.core.errors import StaleInputError
from genreflow.core.paths import Layout
from genreflow.features.store import FeatureStore
from genreflow.registry.promotion import HeldOutClips


def load_test_clips(store: FeatureStore, layout: Layout) -> HeldOutClips:
    """The test split as raw audio paths, audio hashes and true genres, in store order.

    The audio hash comes from the validated manifest, so the split's identity covers what the
    clips sound like, not only their names.
    """
    import pandas as pd

    index = store.index
    rows = index[index["split"] == "test"].drop_duplicates("track_id")
    manifest = pd.read_csv(layout.validated_manifest, dtype=str).set_index("track_id")
    missing = sorted(set(rows["track_id"].astype(str)) - set(manifest.index))
    if missing:
        raise StaleInputError(
            f"{layout.validated_manifest}: lacks test track(s) {missing[:3]} of the feature "
            "store; run `dvc repro spectrogramize`"
        )
    track_ids = tuple(rows["track_id"].astype(str))
    paths = tuple(Path(p) if Path(p).is_absolute() else layout.absolute(p) for p in rows["path"])
    return HeldOutClips(
        track_ids=track_ids,
        audio_sha256=tuple(str(manifest.at[t, "audio_sha256"]) for t in track_ids),
        paths=paths,
        genres=tuple(rows["genre"].astype(str)),
    )
