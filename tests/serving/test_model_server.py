"""The real ``mlflow models serve`` answers a waveform with genre names, probabilities and
the song vector, and installs nothing with ``--env-manager local``.

The server runs from this venv on a free loopback port, against the tiny champion's SQLite
store (``models:/genre-classifier@champion``), is polled on ``/ping`` until healthy, and is
stopped by its process group in ``finally``, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from genreflow.audio import load_mono

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180.0
INSTALL_WORDS = ("pip install", "virtualenv", "Creating a new environment", "uv pip", "conda")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left (uvicorn workers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "never healthy"
            pytest.fail(f"mlflow models serve {why}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _invoke(url: str, payload: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())["predictions"]


def test_mlflow_models_serve_answers_a_waveform(tracking, tmp_path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        tracking.uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(url, proc, log)
        wave = load_mono(tracking.clip, 8000)
        (answer,) = _invoke(url, {"inputs": [wave.tolist()]})

        genres = list(tracking.model.genres)
        assert answer["genre"] in genres
        assert sorted(answer["probabilities"]) == sorted(genres)
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert answer["genre"] == max(answer["probabilities"], key=answer["probabilities"].get)
        vector = np.asarray(answer["embedding"])
        assert vector.shape == (answer["embedding_dim"],) == (16,)
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
        assert answer["model_id"] == tracking.model_id and answer["run_id"]
        assert answer["sample_rate"] == 8000
        with torch.no_grad():
            logits, expected = tracking.model.analyse(wave[None])
        np.testing.assert_allclose(vector, expected[0].numpy(), rtol=0, atol=1e-5)
        probs = torch.softmax(logits[0].double(), 0).tolist()
        assert answer["probabilities"] == pytest.approx(
            dict(zip(genres, probs, strict=True)), abs=1e-5
        )

        # another source rate: the server resamples it (the sample_rate param)
        at_16k = np.repeat(wave.numpy(), 2)
        (resampled,) = _invoke(url, {"inputs": [at_16k.tolist()], "params": {"sample_rate": 16000}})
        assert resampled["duration_s"] == pytest.approx(1.2)
        assert sum(resampled["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    finally:
        _stop(proc)
    text = log.read_text()
    assert not [w for w in INSTALL_WORDS if w in text], text[-4000:]
