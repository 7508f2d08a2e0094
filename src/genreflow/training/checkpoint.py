"""Resumable training checkpoints: atomic writes, safe loads, RNG capture.

DVC 3 has no checkpoint support, so the training stages keep this file as a ``persist: true``
output. Everything needed for a bit-identical continuation lives in it: weights, optimizer
and scheduler state, every RNG, the history and the best-so-far state.

It is keyed by :func:`config_hash` of everything that shapes the weights (params, seed,
feature-store content, the code identity of :mod:`genreflow.training.code_identity`) and also
stores that config, so a stale checkpoint can say what changed (:func:`stale_reasons`).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genreflow.core.atomic import atomic_path
from genreflow.core.config import flatten
from genreflow.core.errors import GenreflowError

CHECKPOINT_FORMAT = "genreflow-train-checkpoint/1"
REQUIRED_KEYS = (
    "format",
    "config_hash",
    "epoch",
    "finished",
    "model",
    "optimizer",
    "rng",
    "history",
    "best_state",
    "best_score",
    "best_epoch",
    "patience_counter",
    "stopped_early",
)


class CheckpointError(GenreflowError, RuntimeError):
    """The checkpoint file exists but cannot be used; the message names file and reason."""


def plain_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as JSON would give it back (tuples become lists, odd types strings).

    The checkpoint stores this form, so the stored and the current config compare equal
    exactly when their :func:`config_hash` does.
    """
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of the training configuration (JSON with sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def stale_reasons(stored: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Why a checkpoint made under ``stored`` config is stale now, one phrase per change.

    Names what changed (files, the torch version, param keys) so a retrain is explained in
    the stage log instead of looking like a lost checkpoint. ``stored`` is ``None`` for a
    checkpoint written before the config was kept in it.
    """
    if stored is None:
        return ["it records no training identity (written by an older genreflow)"]
    reasons = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if old != new:
            reasons.append(_describe_change(key, old, new))
    return reasons or ["training config changed"]


def _describe_change(key: str, old: Any, new: Any) -> str:
    if key == "code" and isinstance(old, dict) and isinstance(new, dict):
        return f"code changed ({', '.join(_changed_keys(old, new))})"
    if isinstance(old, dict) and isinstance(new, dict):
        return f"{key} changed: {', '.join(_changed_keys(flatten(old), flatten(new)))}"
    if isinstance(old, dict | list) or isinstance(new, dict | list):
        return f"{key} changed"
    return f"{key} {_short(old)} -> {_short(new)}"


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _short(value: Any) -> str:
    """Scalars as written; long strings (content hashes) cut to 12 characters."""
    text = str(value)
    return text[:12] if isinstance(value, str) and len(text) > 16 else text


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a kill mid-write leaves the previous checkpoint intact."""
    # Through a file handle, so the zip's inner folder is not named after the temporary file
    # (torch.save does that for a path) and the same state always gives the same bytes.
    with atomic_path(Path(path)) as tmp, tmp.open("wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint dict, ``None`` when there is none, :class:`CheckpointError` when broken."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, unpickling refusals, ...
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a genreflow training checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return state


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the loop draws from: torch (CPU, CUDA), the batch generator, numpy, python."""
    np_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": (
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and generator.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(generator.device)
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and generator.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], generator.device)


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value
