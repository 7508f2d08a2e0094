"""The champion in a blink: a verified local copy that loads without MLflow or ``torch.export``.

A cold ``genreflow predict`` used to spend most of its time before the first sample was read:
importing MLflow (about 1 s) and deserialising the logged ``torch.export`` core (about 3 s).
The same weights in a plain state dict, put into the very modules the core was exported from
(:class:`~genreflow.features.frontend.LogMelFrontend` and the classifier, wrapped by
:class:`~genreflow.serving.core.SegmentCore`), load in a fraction of that.

**The registry stays the source of truth.** The copy lives in ``Layout.serving_cache``
(``models/serving_cache/<registered model>/``, git-ignored, no DVC output) and names what it
is: registered model, version, the logged model it came from, the SHA-256 of its file and of
its weights, and the identity of the code that rebuilds the modules. Every start checks it:

1. **Which version is the champion now?** For a ``sqlite:///`` store, one read-only SELECT
   with the standard library (:mod:`genreflow.serving.registry_read`), no MLflow import; for
   any other store (an MLflow server), MLflow's client.
2. **Is the copy that version, intact, and rebuilt by the same code?** The manifest names
   the version and the logged model, the file's bytes hash to the recorded SHA-256, the code
   files and torch versions match, and the rebuilt weights hash to the recorded
   :func:`~genreflow.serving.core.weights_sha256` (the digest the MLflow path reports too).

Anything else (no copy, another champion, a tampered or truncated file, edited model code, a
store that cannot be read without MLflow) loads the champion through MLflow, as before, and
writes a fresh copy: never a silent use of a stale one.

**Same outputs.** A copy is only written after the rebuilt modules and the logged core were
run on the same probe waveform: their segment logits and embeddings must be bit-identical
(``exact: true`` in the manifest, the case for every model checked) or, failing that, within
``rtol=1e-4, atol=1e-5`` (recorded with the largest difference). Otherwise no copy is written
and every start takes the MLflow path. The rebuild needs the training run's architecture
params (logged by every training run); a model logged without them is served the MLflow way.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from genreflow.core.champion_uri import CHAMPION_ALIAS, champion_uri
from genreflow.core.paths import Layout
from genreflow.serving.registry_read import (
    RegisteredVersion,
    UnverifiableRegistry,
    alias_version,
)

if TYPE_CHECKING:  # torch loads only once a model is built
    from genreflow.serving.served import ServedModel

log = logging.getLogger(__name__)

CACHE_FORMAT = "genreflow-serving-cache/1"
MANIFEST = "manifest.json"
WEIGHTS_PREFIX = "weights-"
# The code that rebuilds the modules from the copy: if any of it changes, the copy is rebuilt
# and checked against the logged core again (package-relative; folders mean every .py in it).
CODE_PATHS = (
    "models",
    "features/frontend.py",
    "serving/core.py",
    "serving/fast_champion.py",
    "core/config.py",
)
RUN_ONLY_PARAMS = frozenset({"section", "seed", "threads"})  # run params that are no TrainParams
RTOL, ATOL = 1e-4, 1e-5  # the most a copy's outputs may differ from the logged core's


class CacheUnavailable(Exception):
    """A copy of this model cannot be made (no run params, other code, outputs differ)."""


# --------------------------------------------------------------------------- public API
def load_champion(layout: Layout, registered_model: str) -> ServedModel:
    """The champion of ``registered_model`` as a :class:`ServedModel`, fast when it can be.

    The verified local copy when it is the registry's current champion (no MLflow import for
    a ``sqlite:///`` store); otherwise loaded through MLflow, and the copy refreshed. The
    result's ``uri`` is ``models:/<name>@champion``, ``version`` the registered version and
    ``weights_sha256`` the same digest either way. MLflow's exceptions (no champion, no
    store) propagate from the MLflow path, as from :meth:`ServedModel.load`.
    """
    return cached_champion(layout, registered_model) or refresh_champion(layout, registered_model)


def cached_champion(layout: Layout, registered_model: str) -> ServedModel | None:
    """The local copy, when the SQLite registry confirms it is the champion and it checks out
    (see the module doc); ``None`` otherwise. Never imports MLflow, never raises for a
    missing, stale or damaged copy."""
    try:
        record = sqlite_champion(layout, registered_model)
    except UnverifiableRegistry as exc:
        log.debug("serving cache: registry not readable without MLflow (%s)", exc)
        return None
    if record is None:
        return None
    return load_cached(cache_dir(layout, registered_model), record)


def refresh_champion(layout: Layout, registered_model: str) -> ServedModel:
    """The champion through MLflow: resolve the alias, use the copy if it is that version
    (an MLflow server's store), else load the logged model and write a fresh copy."""
    from mlflow.tracking import MlflowClient

    from genreflow.serving.served import ServedModel
    from genreflow.tracking.store import set_tracking

    set_tracking(layout)
    client = MlflowClient()
    mv = client.get_model_version_by_alias(registered_model, CHAMPION_ALIAS)
    record = RegisteredVersion(registered_model, str(mv.version), str(mv.source), mv.run_id)
    directory = cache_dir(layout, registered_model)
    cached = load_cached(directory, record)
    if cached is not None:
        return cached
    pinned = ServedModel.load(f"models:/{registered_model}/{record.version}")
    served = replace(pinned, uri=champion_uri(registered_model), version=record.version)
    try:
        twin = write_copy(directory, record, served, _run_params(client, record.run_id))
    except CacheUnavailable as exc:
        log.info("serving cache: no fast copy of %s: %s", served.uri, exc)
        return served
    except OSError as exc:  # a read-only checkout or a full disk: serve, just not fast next time
        log.warning("serving cache: could not write %s: %s", directory, exc)
        return served
    log.info("serving cache: %s version %s copied to %s", registered_model, mv.version, directory)
    return twin


# --------------------------------------------------------------------------- registry
def registry_uri(layout: Layout) -> str:
    """The registry MLflow would use: ``$MLFLOW_REGISTRY_URI``, else the tracking URI."""
    from genreflow.tracking.store import REGISTRY_URI_ENV, resolve_tracking_uri

    return os.environ.get(REGISTRY_URI_ENV, "").strip() or resolve_tracking_uri(layout.root)


def sqlite_champion(layout: Layout, registered_model: str) -> RegisteredVersion | None:
    """The champion's version read from a SQLite registry without MLflow; ``None`` when no
    version holds the alias. Raises :class:`UnverifiableRegistry` for another kind of store."""
    from genreflow.tracking.store import sqlite_path

    uri = registry_uri(layout)
    db = sqlite_path(uri)
    if db is None:
        raise UnverifiableRegistry(f"{uri}: not a sqlite:/// store")
    return alias_version(db, registered_model, CHAMPION_ALIAS)


# --------------------------------------------------------------------------- the copy
def cache_dir(layout: Layout, registered_model: str) -> Path:
    """``models/serving_cache/<registered model>/`` (the name quoted to one path part)."""
    return layout.serving_cache / quote(registered_model, safe="")


def code_identity() -> dict[str, Any]:
    """SHA-256 of each file that rebuilds the modules (:data:`CODE_PATHS`), and the torch and
    torchaudio versions: a copy written under other code is checked against the logged core
    again before it is used."""
    import torch
    import torchaudio

    import genreflow
    from genreflow.core.hashing import file_sha256

    root = Path(genreflow.__file__).resolve().parent
    files: list[Path] = []
    for rel in CODE_PATHS:
        path = root / rel
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    code = {f.relative_to(root).as_posix(): file_sha256(f) for f in files if f.is_file()}
    return {"code": code, "torch": torch.__version__, "torchaudio": torchaudio.__version__}


def load_cached(directory: Path, record: RegisteredVersion) -> ServedModel | None:
    """The copy in ``directory`` as a ServedModel if it is ``record`` and checks out (module
    doc, step 2); ``None`` (and a debug line saying why) otherwise."""
    manifest = _read_manifest(directory)
    problem = _manifest_problem(manifest, record) if manifest is not None else "no copy"
    if problem is None:
        assert manifest is not None
        problem, served = _load_verified(directory, manifest, record)
        if problem is None:
            return served
    log.debug("serving cache: %s not used: %s", directory, problem)
    return None


def write_copy(
    directory: Path, record: RegisteredVersion, served: ServedModel, run_params: dict[str, str]
) -> ServedModel:
    """Rebuild ``served`` (loaded through MLflow) as plain modules from its training run's
    params, check the two agree on a probe, write the copy, and return the rebuilt model.
    Raises :class:`CacheUnavailable` when they cannot be rebuilt or do not agree."""
    import torch

    from genreflow.core.atomic import atomic_path, write_json
    from genreflow.core.config import to_dict

    train, features = params_from_run(run_params)
    state = {k: v.detach().contiguous().clone() for k, v in served.core.state_dict().items()}
    payload = {
        "format": CACHE_FORMAT,
        "state_dict": state,
        "train_params": to_dict(train),
        "feature_params": to_dict(features),
        "genres": list(served.genres),
        "model_id": served.model_id,
    }
    twin = _served_from_payload(payload, record)
    _check_same_model(served, twin)
    verified = compare_on_probe(served, twin)
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # through a buffer: the same payload gives the same bytes
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    # Named by content: two processes refreshing at once write the same file, not two.
    weights = directory / f"{WEIGHTS_PREFIX}{record.version}-{digest[:16]}.pt"
    with atomic_path(weights) as tmp:
        tmp.write_bytes(data)
    manifest = {
        "format": CACHE_FORMAT,
        "registered_model": record.registered_model,
        "version": record.version,
        "source": record.source,
        "run_id": record.run_id,
        "model_id": served.model_id,
        "weights_file": weights.name,
        "file_sha256": digest,
        "weights_sha256": twin.weights_sha256,
        "code": code_identity(),
        "verified": verified,
    }
    write_json(directory / MANIFEST, manifest)
    _remove_other_weights(directory, keep=weights.name)
    return twin


# --------------------------------------------------------------------------- checks
def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _manifest_problem(manifest: dict[str, Any], record: RegisteredVersion) -> str | None:
    """Why the manifest does not describe ``record``'s copy, or ``None`` when it does."""
    if manifest.get("format") != CACHE_FORMAT:
        return f"format {manifest.get('format')!r}"
    for key in ("registered_model", "version", "source", "run_id"):
        if manifest.get(key) != getattr(record, key):
            return f"{key} {manifest.get(key)!r}, the registry says {getattr(record, key)!r}"
    return None


def _load_verified(
    directory: Path, manifest: dict[str, Any], record: RegisteredVersion
) -> tuple[str | None, ServedModel | None]:
    """``(None, model)`` when the file, the code and the rebuilt weights all match the
    manifest; ``(reason, None)`` otherwise."""
    import torch

    from genreflow.core.hashing import file_sha256

    weights = directory / str(manifest.get("weights_file", ""))
    if not weights.is_file() or weights.parent != directory:
        return "weights file missing", None
    if file_sha256(weights) != manifest.get("file_sha256"):
        return "weights file does not hash to the manifest's SHA-256 (damaged or edited)", None
    if manifest.get("code") != code_identity():
        return "the model code or torch changed since the copy was checked", None
    try:
        payload = torch.load(weights, map_location="cpu", weights_only=True)
        served = _served_from_payload(payload, record)
    except Exception as exc:  # noqa: BLE001 - any unreadable copy is refreshed, not fatal
        return f"copy not loadable ({type(exc).__name__}: {exc})", None
    if served.weights_sha256 != manifest.get("weights_sha256"):
        return "rebuilt weights do not hash to the manifest's weights_sha256", None
    return None, served


def _check_same_model(logged: ServedModel, twin: ServedModel) -> None:
    """The rebuilt model reads audio as the logged one does and names the same genres."""
    for attr in ("genres", "sample_rate", "geometry", "embedding_dim"):
        if getattr(logged, attr) != getattr(twin, attr):
            raise CacheUnavailable(
                f"rebuilt {attr} {getattr(twin, attr)!r} != logged {getattr(logged, attr)!r}"
            )
    if logged.weights_sha256 != twin.weights_sha256:
        raise CacheUnavailable("rebuilt weights hash differently from the logged core's")


def probe_waveform(sample_rate: int, segment_samples: int, hop_samples: int) -> Any:
    """A fixed test signal of four segments (tones, a sweep and noise), ``(1, samples)``."""
    import numpy as np

    n = segment_samples + 3 * hop_samples
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(20261204)
    nyquist = sample_rate / 2
    wave = (
        0.3 * np.sin(2 * np.pi * 0.02 * nyquist * t)
        + 0.2 * np.sin(2 * np.pi * (0.05 + 0.4 * t / t[-1]) * nyquist * t)
        + 0.05 * rng.standard_normal(n)
    )
    wave[n // 3 : n // 3 + hop_samples // 2] = 0.0  # a silent stretch: the floor paths
    return wave.astype(np.float32)[None]


def compare_on_probe(logged: ServedModel, twin: ServedModel) -> dict[str, Any]:
    """Run both cores on :func:`probe_waveform`; ``{"exact", "max_abs_diff", ...}``.

    Raises :class:`CacheUnavailable` when the outputs differ by more than ``RTOL``/``ATOL``.
    """
    import torch

    g = logged.geometry
    wave = torch.from_numpy(probe_waveform(logged.sample_rate, g.segment_samples, g.hop_samples))
    with torch.inference_mode():
        ours, theirs = twin.core(wave), logged.core(wave)
    exact = all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))
    close = all(
        torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(ours, theirs, strict=True)
    )
    if not close:
        raise CacheUnavailable(f"rebuilt model differs from the logged core by {diff:.3g}")
    return {"probe_samples": int(wave.shape[-1]), "exact": exact, "max_abs_diff": diff}


# --------------------------------------------------------------------------- rebuilding
def _run_params(client: Any, run_id: str | None) -> dict[str, str]:
    """The training run's logged params (the architecture is among them)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        raise CacheUnavailable("the registered version names no training run")
    try:
        return dict(client.get_run(run_id).data.params)
    except MlflowException as exc:
        raise CacheUnavailable(f"training run {run_id} not readable: {exc}") from exc


def _parse_param(text: str) -> Any:
    """An MLflow param string back to its value (``str()`` of an int, float, bool or list)."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _overlay(cls: type, flat: dict[str, Any], where: str) -> Any:
    """``cls`` from its defaults with the ``flat`` (dotted) keys it knows replaced: a run
    logged before a key existed still rebuilds (the probe check guards the result)."""
    from genreflow.core.config import flatten, from_dict, to_dict

    merged = flatten(to_dict(cls()))
    merged.update({k: v for k, v in flat.items() if k in merged})
    nested: dict[str, Any] = {}
    for key, value in merged.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(cls, nested, where)


def params_from_run(run_params: dict[str, str]) -> tuple[Any, Any]:
    """``(TrainParams, FeatureParams)`` from a training run's flat params (see
    :func:`genreflow.tracking.runs.run_params`). Raises :class:`CacheUnavailable`."""
    from genreflow.core.config import ConfigError, FeatureParams, TrainParams

    values = {k: _parse_param(v) for k, v in run_params.items()}
    if "arch" not in values:
        raise CacheUnavailable("the training run logged no architecture params")
    prefix = "features."
    train = {k: v for k, v in values.items() if not k.startswith(prefix)}
    features = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
    for key in RUN_ONLY_PARAMS:
        train.pop(key, None)
    try:
        return _overlay(TrainParams, train, "run"), _overlay(FeatureParams, features, "run")
    except ConfigError as exc:
        raise CacheUnavailable(f"run params do not rebuild the model: {exc}") from exc


def _served_from_payload(payload: dict[str, Any], record: RegisteredVersion) -> ServedModel:
    """The rebuilt ServedModel: the classifier as exported (BatchNorm folded, fast pools),
    the front-end, the copy's weights loaded strictly, weights channels-last as the MLflow
    path has them."""
    from genreflow.core.config import FeatureParams, TrainParams, from_dict
    from genreflow.features.frontend import LogMelFrontend
    from genreflow.models import build_classifier
    from genreflow.serving.audio_stream import SegmentGeometry
    from genreflow.serving.core import (
        SegmentCore,
        WaveformGenreModel,
        channels_last_weights,
        serving_structure,
    )
    from genreflow.serving.served import ServedModel

    if payload.get("format") != CACHE_FORMAT:
        raise ValueError(f"copy format {payload.get('format')!r}")
    train = from_dict(TrainParams, payload["train_params"], "copy.train_params")
    features = from_dict(FeatureParams, payload["feature_params"], "copy.feature_params")
    genres = list(payload["genres"])
    # The structure inference_classifier exported (BatchNorm folded, fast pools), built in
    # place: every value comes from the copy. (Not on the meta device: its first use in a
    # process costs seconds of imports.)
    classifier = build_classifier(train, features.n_mels, features.segment_frames, len(genres))
    serving_structure(classifier)
    model = WaveformGenreModel(LogMelFrontend(features), classifier, features, genres)
    core = SegmentCore(model).eval()
    try:
        core.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CacheUnavailable(f"weights do not fit the rebuilt modules: {exc}") from exc
    core.requires_grad_(False)
    return ServedModel(
        uri=champion_uri(record.registered_model),
        core=channels_last_weights(core),
        genres=tuple(genres),
        sample_rate=int(features.sample_rate),
        geometry=SegmentGeometry.of(model.frontend),
        embedding_dim=model.embedding_dim,
        model_id=payload.get("model_id"),
        version=record.version,
    )


def _remove_other_weights(directory: Path, keep: str) -> None:
    for path in directory.glob(f"{WEIGHTS_PREFIX}*.pt"):
        if path.name != keep:
            path.unlink(missing_ok=True)
