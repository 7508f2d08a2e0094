"""Ctrl-C in the middle of ``genreflow spectrogramize`` leaves neither a store nor the
half-written one behind.

The store is streamed to disk while it is computed (issue 15), so an interrupted run has
written part of ``segments.npy`` into a temporary directory: it must go with the run. The real
console script runs in a subprocess, with nothing patched, and is interrupted once its
temporary ``segments.npy`` holds segments.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from support.processes import child_env
from support.tiny import GENRES, TINY_FEATURES

REPO = Path(__file__).resolve().parents[2]
GENREFLOW = Path(sys.executable).with_name("genreflow")
WAIT_S = 120.0  # bound on the command starting to write (imports on a busy machine)
HEADER_BYTES = 128  # the .npy header: more means segments were written


def many_tracks_repo(root: Path, files: int = 6, copies: int = 3000) -> Path:
    """``files`` short WAVs listed ``copies`` times: far more work than the wait for it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["genres"] = list(GENRES)
    params["features"] = asdict(TINY_FEATURES)
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    rows = []
    for k in range(files):
        rel = f"data/raw/clip{k}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        wave = 0.1 * rng.standard_normal(TINY_FEATURES.sample_rate).astype(np.float32)
        sf.write(root / rel, wave, TINY_FEATURES.sample_rate)
        rows += [
            {"path": rel, "genre": GENRES[k % 3], "track_id": f"c{k}~{j}", "split": "train"}
            for j in range(copies)
        ]
    (root / "data" / "validated").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "data" / "validated" / "manifest.csv", index=False)
    return root


def wait_for_segments(data: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(data.glob(".features.*.tmp/segments.npy"))
        if partial and partial[0].stat().st_size > HEADER_BYTES:
            return
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"spectrogramize never wrote segments (exit {proc.returncode}): {err}")


def test_ctrl_c_mid_store_leaves_nothing_behind(tmp_path: Path) -> None:
    root = many_tracks_repo(tmp_path / "repo")
    proc = subprocess.Popen(
        [str(GENREFLOW), "spectrogramize", "--root", str(root), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(GENREFLOW_LOG_LEVEL="WARNING"),
    )
    wait_for_segments(root / "data", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "genreflow spectrogramize: interrupted", err
    assert "Traceback" not in err + out
    assert sorted(p.name for p in (root / "data").iterdir()) == ["raw", "validated"]
