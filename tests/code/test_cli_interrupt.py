"""The real ``genreflow`` console script fails as the stage scripts do (core.runner).

Ctrl-C (SIGINT) ends a command with one line, ``genreflow <command>: interrupted``, and exit
code 130, the code shells and CI give an interrupted job; a user error is one line and exit 1.
Both run the installed entry point in a subprocess, with nothing patched.

The interrupt needs a command that is certainly inside its body when the signal arrives:
``fetch`` from a URL served by a loopback socket that accepts the connection and never
answers. Once the socket sees the connection, fetch is blocked reading the reply.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GENREFLOW = Path(sys.executable).with_name("genreflow")
WAIT_S = 120.0  # bound on the command reaching the socket (imports on a busy machine)


def cli_env() -> dict[str, str]:
    """No debug tracebacks, no INFO log lines: stderr holds only what the runner prints."""
    env = {k: v for k, v in os.environ.items() if k != "GENREFLOW_DEBUG"}
    env["GENREFLOW_LOG_LEVEL"] = "WARNING"
    return env


@pytest.fixture()
def silent_server() -> Iterator[socket.socket]:
    """A loopback port that accepts connections and never answers: a hung download."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(WAIT_S)
    try:
        yield sock
    finally:
        sock.close()


def url_repo(root: Path, url: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = "url"
    params["data"]["url"].update(url=url, sha256="", retries=0, timeout_s=600)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path, silent_server: socket.socket) -> None:
    port = silent_server.getsockname()[1]
    root = url_repo(tmp_path / "repo", f"http://127.0.0.1:{port}/genres.tar.gz")
    proc = subprocess.Popen(
        [str(GENREFLOW), "fetch", "--root", str(root), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        conn, _ = silent_server.accept()  # fetch is now waiting for the reply
    except TimeoutError:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"fetch never connected (exit {proc.returncode}): {err}")
    with conn:
        # Interrupt only once the request has arrived, so fetch is surely blocked waiting for
        # the reply (under heavy load the process can still be between connect and send).
        conn.settimeout(WAIT_S)
        assert conn.recv(1024).startswith(b"GET "), "fetch sent no HTTP request"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["genreflow fetch: interrupted"], err
    assert "Traceback" not in err + out
    assert not (root / "data" / "raw").exists()  # nothing half-fetched left behind


def test_user_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text("data:\n  sourse: local\n")
    done = subprocess.run(
        [str(GENREFLOW), "fetch", "--root", str(root), "-q"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("genreflow fetch: error: ") and "sourse" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
