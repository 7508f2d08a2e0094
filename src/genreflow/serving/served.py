"""Analyse audio with a registered model (by default the champion): genre, probabilities and
the song vector.

The logged model is an MLflow pyfunc (:mod:`genreflow.serving.pyfunc`) around an exported
torch core that holds the log-mel front-end and the classifier. :class:`ServedModel` loads
that pyfunc and then calls the torch core directly (no pandas, no schema enforcement on the
hot path); ``mlflow models serve`` runs the very same :class:`ServedModel` inside the pyfunc,
so ``genreflow predict``, the registry's re-scoring, robustness, similar-song search and the
REST server all see the same numbers (padding of short clips included).

Files are decoded, down-mixed and resampled in blocks and scored in windows aligned to the
segment hop (:mod:`genreflow.serving.audio_stream`), so a one-hour file needs the memory of a
window,
and the sums over segments equal the whole-file result. Heavy imports wait until a
prediction is asked for, so the CLI starts quickly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genreflow.core.champion_uri import champion_uri as registered_champion_uri
from genreflow.core.errors import GenreflowError

if TYPE_CHECKING:  # numpy, soundfile and torch load when a prediction is asked for
    from genreflow.serving.audio_stream import DecodedLength, SegmentGeometry, Window

# 40 segments (61.5 s at the default 3-s segments and 1.5-s hop): a 30-s clip is one window,
# so a clip costs one forward pass, and a window's CNN activations stay near 100 MB.
DEFAULT_WINDOW_SEGMENTS = 40


SERVING_KIND = "genreflow.serving.pyfunc pyfunc"


class BadInputAudioError(GenreflowError, ValueError):
    """Audio handed to the model that it cannot score; the message names the input."""


class NotAServingModelError(GenreflowError, ValueError):
    """The model at a URI is not the pyfunc this package logs; the message names the URI."""


def champion_uri(params: Any) -> str:
    """``models:/<params.tracking.registered_model>@champion``: the name comes from params."""
    return registered_champion_uri(params.tracking.registered_model)


@dataclass(frozen=True)
class Analysis:
    """What the model says about one input."""

    path: str
    genre: str
    probabilities: dict[str, float]  # genre -> softmax probability, best first, sums to 1
    embedding: Any  # np.ndarray float32 (D,), L2-normalised song vector
    duration_s: float  # of the decoded input, at its own sample rate


@dataclass(frozen=True)
class Prediction:
    path: str
    genre: str
    probabilities: dict[str, float]  # genre -> softmax probability, best first (rounded)


@dataclass(frozen=True)
class DecodedAudio:
    """A file as the model's forward passes see it (:meth:`ServedModel.decode`): its windows
    at the model's rate, and the decoded duration at the file's own rate."""

    windows: tuple[Window, ...]
    duration_s: float


@dataclass(frozen=True)
class ServedModel:
    """A logged genreflow model, ready to analyse files and waveforms.

    ``core``: the exported torch module, waveform ``(1, samples)`` at ``sample_rate`` ->
    ``(segment logits (1, S, C), segment embeddings (1, S, D))``. ``version`` is the
    registered version when loaded by ``models:/<name>@<alias>`` or ``models:/<name>/<n>``;
    ``model_id`` the logged model's id (``m-...``, random: provenance, for MLflow and the REST
    answer); :attr:`weights_sha256` the core's content identity, which DVC outputs record
    (vectors of two different weights are never comparable).
    """

    uri: str
    core: Any
    genres: tuple[str, ...]
    sample_rate: int
    geometry: SegmentGeometry
    embedding_dim: int
    model_id: str | None = None
    version: str | None = None
    window_segments: int = DEFAULT_WINDOW_SEGMENTS
    block_frames: int | None = None  # source frames per read; None: audio_stream's default

    @property
    def segment_samples(self) -> int:
        return self.geometry.segment_samples

    @functools.cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of the core's weights (:func:`genreflow.serving.core.weights_sha256`),
        computed once per loaded model."""
        from genreflow.serving.core import weights_sha256

        return weights_sha256(self.core)

    @classmethod
    def load(cls, model_uri: str) -> ServedModel:
        """Load a logged genreflow pyfunc (``models:/...``, ``runs:/...`` or a local path)."""
        import mlflow

        # suppress_warnings skips MLflow's scan of every installed distribution against the
        # model's pinned requirements (0.85 s of a cold `genreflow predict`); it runs in the
        # environment this package pinned them from. `mlflow models serve` still checks.
        from mlflow.exceptions import MlflowException

        pyfunc = mlflow.pyfunc.load_model(model_uri, suppress_warnings=True)
        try:
            served = getattr(pyfunc.unwrap_python_model(), "served", None)
        except MlflowException:  # another flavour: e.g. a pt2 model logged before issue 9
            served = None
        if not isinstance(served, ServedModel):
            raise NotAServingModelError(
                f"{model_uri}: not a genreflow serving model (a {SERVING_KIND} with song "
                "vectors); models logged before them return bare logits. Retrain: "
                "dvc repro --force train_cnn train_lstm evaluate"
            )
        model_id = getattr(pyfunc.metadata, "model_id", None) or served.model_id
        return replace(
            served, uri=model_uri, model_id=model_id, version=registered_version(model_uri)
        )

    def with_windows(self, window_segments: int, block_frames: int | None = None) -> ServedModel:
        """The same model scoring ``window_segments`` segments per forward pass."""
        return replace(
            self,
            window_segments=window_segments,
            block_frames=self.block_frames if block_frames is None else block_frames,
        )

    # ------------------------------------------------------------------ analysis
    def analyse(self, path: Path | str) -> Analysis:
        """Genre, probabilities and song vector of the audio file at ``path``.

        Decoded in blocks and scored in windows (bounded memory). Raises
        :class:`~genreflow.audio.AudioDecodeError` naming a file that cannot be decoded.
        """
        from genreflow.serving.audio_stream import DecodedLength, file_blocks, segment_windows

        length = DecodedLength()
        blocks = self._target_blocks(file_blocks(path, length, self._block_frames()), length)
        logits, embedding = self._score(
            segment_windows(blocks, self.geometry, self.window_segments)
        )
        return self._analysis(str(path), logits, embedding, length.seconds)

    def decode(self, path: Path | str) -> DecodedAudio:
        """The file at ``path`` read exactly as :meth:`analyse` reads it (decoded, down-mixed,
        resampled to the model's rate, cut into windows), kept in memory.

        For scoring one file several times (robustness scores every candidate on the same
        decoded clip): :meth:`analyse_decoded` of the result equals :meth:`analyse` of the
        file, bit for bit, and every model with the same :attr:`decoding` can share it. The
        whole clip is held, so it suits clips, not hour-long recordings.
        """
        from genreflow.serving.audio_stream import DecodedLength, file_blocks, segment_windows

        length = DecodedLength()
        blocks = self._target_blocks(file_blocks(path, length, self._block_frames()), length)
        windows = tuple(segment_windows(blocks, self.geometry, self.window_segments))
        return DecodedAudio(windows, length.seconds)

    @property
    def decoding(self) -> tuple[Any, ...]:
        """What :meth:`decode`'s answer depends on: models that agree on it read a file into
        the same windows."""
        return (self.sample_rate, self.geometry, self.window_segments, self._block_frames())

    def analyse_decoded(self, decoded: DecodedAudio, path: str = "<decoded>") -> Analysis:
        """:meth:`analyse` of a file already :meth:`decode`-d (by a model of the same
        :attr:`decoding`): the same forward passes, so the same numbers."""
        logits, embedding = self._score(decoded.windows)
        return self._analysis(path, logits, embedding, decoded.duration_s)

    def analyse_decoded_many(
        self, decoded: Sequence[DecodedAudio], paths: Sequence[str], clips_per_forward: int = 1
    ) -> list[Analysis]:
        """:meth:`analyse_decoded` of many clips, ``clips_per_forward`` single-window clips of
        equal length stacked into one forward pass (the core's batch axis is dynamic).

        1 (the default) runs one forward per clip, as :meth:`analyse` does. More pays on a
        GPU; on CPU with pinned numerics it was measured not faster, and a larger batch rounds
        the convolutions' and dense layers' sums differently (logits move by ~1e-5), so
        ``evaluate`` keeps 1 and its numbers equal the served path's.
        """
        if clips_per_forward < 1:
            raise ValueError(f"clips_per_forward must be >= 1, got {clips_per_forward}")
        out: list[Analysis | None] = [None] * len(decoded)
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, d in enumerate(decoded):
            w = d.windows[0] if len(d.windows) == 1 else None
            if clips_per_forward == 1 or w is None or len(w.wave) < self.segment_samples:
                out[i] = self.analyse_decoded(d, paths[i])
            else:
                groups.setdefault((len(w.wave), w.skip, w.count), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), clips_per_forward):
                chunk = members[start : start + clips_per_forward]
                scored = self._score_stacked([decoded[i].windows[0] for i in chunk])
                for i, (logits, embedding) in zip(chunk, scored, strict=True):
                    out[i] = self._analysis(paths[i], logits, embedding, decoded[i].duration_s)
        return [a for a in out if a is not None]

    def analyse_waveform(self, wave: Any, sample_rate: int, path: str = "<waveform>") -> Analysis:
        """Like :meth:`analyse` for audio in memory: ``(samples,)`` or ``(channels, samples)``
        float at ``sample_rate`` (down-mixed by channel mean, resampled to the model's rate)."""
        import numpy as np

        from genreflow.serving.audio_stream import resampled_blocks, segment_windows

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]
        if wave.ndim != 1 or wave.size == 0:
            raise BadInputAudioError(
                f"{path}: expected mono (samples,) or (channels, samples) audio, got shape "
                f"{wave.shape}"
            )
        if not np.isfinite(wave).all():
            raise BadInputAudioError(f"{path}: waveform holds NaN or infinite samples")
        if int(sample_rate) < 1:
            raise BadInputAudioError(f"{path}: sample rate must be positive, got {sample_rate}")
        blocks = resampled_blocks(
            _split(wave, self._block_frames()), int(sample_rate), self.sample_rate
        )
        logits, embedding = self._score(
            segment_windows(blocks, self.geometry, self.window_segments)
        )
        return self._analysis(path, logits, embedding, wave.size / int(sample_rate))

    def probabilities(self, path: Path | str) -> Any:
        """Softmax over genres (in ``genres`` order) of one file, as a torch tensor."""
        import torch

        probs = self.analyse(path).probabilities
        return torch.tensor([probs[g] for g in self.genres], dtype=torch.float32)

    def predict(self, path: Path | str) -> Prediction:
        """Genre and rounded probabilities of one file (the pre-``analyse`` interface)."""
        a = self.analyse(path)
        rounded = {g: round(p, 4) for g, p in a.probabilities.items()}
        return Prediction(path=a.path, genre=a.genre, probabilities=rounded)

    # ------------------------------------------------------------------ internals
    def _block_frames(self) -> int:
        from genreflow.serving.audio_stream import DEFAULT_BLOCK_FRAMES

        return self.block_frames or DEFAULT_BLOCK_FRAMES

    def _target_blocks(self, blocks: Iterable[Any], length: DecodedLength) -> Iterable[Any]:
        """Resample ``blocks`` to the model's rate (the source rate is known once the first
        block was read, so this wraps lazily)."""
        from genreflow.serving.audio_stream import resampled_blocks

        it = iter(blocks)
        first = next(it, None)  # opens the file: length.sample_rate is set from here on
        if first is None:
            return iter(())

        def chained() -> Iterable[Any]:
            yield first
            yield from it

        return resampled_blocks(chained(), length.sample_rate, self.sample_rate)

    def _score(self, windows: Iterable[Window]) -> tuple[Any, Any]:
        """Mean segment logits ``(C,)`` and mean segment embedding ``(D,)`` (float64)."""
        import numpy as np
        import torch

        from genreflow.serving.runtime import retain_freed_memory

        retain_freed_memory()  # activations stay mapped between calls; values unchanged
        logit_sum = np.zeros(len(self.genres), dtype=np.float64)
        embedding_sum = np.zeros(self.embedding_dim, dtype=np.float64)
        count = 0
        with torch.inference_mode():
            for w in windows:
                wave = torch.from_numpy(np.ascontiguousarray(w.wave, dtype=np.float32))
                short = self.segment_samples - wave.numel()
                if short > 0:  # the exported graph needs one whole segment, as training padded
                    wave = torch.nn.functional.pad(wave, (0, short))
                logits, embedding = self.core(wave[None])
                keep = slice(w.skip, w.skip + w.count)
                logit_sum += logits[0, keep].double().sum(dim=0).numpy()
                embedding_sum += embedding[0, keep].double().sum(dim=0).numpy()
                count += w.count
        if count == 0:
            raise BadInputAudioError(f"{self.uri}: no audio to score")
        return logit_sum / count, embedding_sum / count

    def _score_stacked(self, windows: Sequence[Window]) -> list[tuple[Any, Any]]:
        """:meth:`_score` of several one-window clips of equal length in one forward pass."""
        import numpy as np
        import torch

        from genreflow.serving.runtime import retain_freed_memory

        retain_freed_memory()
        with torch.inference_mode():
            wave = torch.from_numpy(np.stack([w.wave for w in windows]).astype(np.float32))
            logits, embedding = self.core(wave)
        keep = slice(windows[0].skip, windows[0].skip + windows[0].count)
        count = windows[0].count
        return [
            (
                logits[i, keep].double().sum(dim=0).numpy() / count,
                embedding[i, keep].double().sum(dim=0).numpy() / count,
            )
            for i in range(len(windows))
        ]

    def _analysis(self, path: str, logits: Any, embedding: Any, duration_s: float) -> Analysis:
        import numpy as np

        z = np.exp(logits - logits.max())
        probs = z / z.sum()
        order = np.argsort(-probs, kind="stable")
        norm = float(np.linalg.norm(embedding))
        vector = (embedding / norm if norm > 0 else embedding).astype(np.float32)
        return Analysis(
            path=path,
            genre=self.genres[int(order[0])],
            probabilities={self.genres[int(i)]: float(probs[i]) for i in order},
            embedding=vector,
            duration_s=float(duration_s),
        )


def _split(wave: Any, block: int) -> Iterable[Any]:
    for start in range(0, len(wave), block):
        yield wave[start : start + block]


_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def registered_version(model_uri: str) -> str | None:
    """The registry version ``model_uri`` names (``models:/name@alias`` resolved now,
    ``models:/name/3``), or ``None`` for a logged-model id, a run or a path."""
    m = _REGISTERED.match(model_uri)
    if m is None:
        return None
    if m["version"] is not None:
        return m["version"]
    from mlflow.tracking import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version)
