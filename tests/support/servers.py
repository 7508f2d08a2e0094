"""Real servers for the tests (``mlflow server``, ``moto_server``, a throttling TCP proxy),
each on a free loopback port, healthy before it is handed out, stopped by its own PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.processes import AWS_ENV, VENV_BIN, child_env, free_port, stop_process_group

PROXY = Path(__file__).resolve().parents[1] / "stores" / "tcp_proxy.py"
SERVER_START_TIMEOUT_S = 90.0


@dataclass
class Server:
    """A started server process: its URL, process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(
    cmd: Sequence[str], url: str, health: str, log: Path, cwd: Path, env: dict[str, str]
) -> Server:
    """Start ``cmd`` in its own session and wait until ``health`` answers 200 (at most
    :data:`SERVER_START_TIMEOUT_S`); stops it and fails with its log otherwise."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return Server(url, proc, log)
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            why = f"exited with {proc.returncode}" if proc.returncode else "never became healthy"
            pytest.fail(f"{cmd[0]} {why} ({health}):\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.25)


def start_mlflow(tmp: Path, port: int | None = None) -> Server:
    """``mlflow server`` on SQLite with served artifacts under ``tmp``: one worker and no job
    runner, since the tests share two cores."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(tmp / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    env = child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no huey job workers
    return start_server(cmd, url, f"{url}/health", tmp / "mlflow-server.log", tmp, env)


def start_moto(tmp: Path, port: int | None = None) -> Server:
    """``moto_server`` (an in-memory S3) on 127.0.0.1."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    return start_server(cmd, url, f"{url}/moto-api/", tmp / "moto.log", tmp, child_env())


def start_proxy(
    tmp: Path,
    upstream: Server,
    port: int | None = None,
    rate: float | None = None,
    die_after: int | None = None,
) -> Server:
    """``tcp_proxy.py`` in front of ``upstream`` (moto): slow with ``rate`` bytes/s, and
    gone for good after ``die_after`` bytes upstream. Healthy once moto answers through it."""
    port = port or free_port()
    up_port = upstream.url.rsplit(":", 1)[1]
    cmd = [sys.executable, str(PROXY), "--port", str(port), "--upstream", up_port]
    if rate:
        cmd += ["--rate", str(rate)]
    if die_after:
        cmd += ["--die-after", str(die_after)]
    url = f"http://127.0.0.1:{port}"
    tmp.mkdir(parents=True, exist_ok=True)
    return start_server(cmd, url, f"{url}/moto-api/", tmp / f"proxy-{port}.log", tmp, child_env())


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
