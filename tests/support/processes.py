"""Child processes for the tests: their environment, commands run in their own session, and
stopping a process group by its leader's PID (never by name).

Why their own session: a timeout or a teardown then kills the whole group (stage commands,
server workers), and nothing outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from genreflow.core.numerics import PINNED_ENV

VENV_BIN = Path(sys.executable).parent
COMMAND_TIMEOUT_S = 900.0
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
# dummy credentials (moto accepts any); the environment comes first in boto's credential
# chain, so a developer's real AWS profile is never used
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# An enclosing stage's DVC variables, and the numeric variables a pinned in-process CLI call
# may have set in this process (genreflow.core.numerics): a child starts from a user's shell.
DROP = (
    "DVC_ROOT",
    "DVC_STAGE",
    "DVC_EXP_NAME",
    *PINNED_ENV,
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for dvc, genreflow and servers: no inherited MLflow, DVC or numeric
    variables (each test says which store and code paths it uses), the venv first on PATH,
    dummy AWS credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k not in DROP}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(AWS_ENV)
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop ``proc`` and its children: it leads its own session, so its PID is its process
    group's id. SIGTERM, then SIGKILL after ``grace_s``. Never touches other processes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # the group may outlive its leader (server workers): kill what is left of it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace_s)


def run(
    cmd: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT_S,
    merge_output: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session (a timeout kills the whole group, stage commands too);
    with ``check``, an AssertionError showing its output when it fails. ``merge_output`` sends
    stderr into stdout (one interleaved text; ``stderr`` is then empty)."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        why = f"timed out after {timeout} s"
        raise AssertionError(f"{' '.join(cmd)} {why}:\n{out}\n{err or ''}") from None
    if check and proc.returncode != 0:
        why = f"failed ({proc.returncode}) in {cwd}"
        raise AssertionError(f"{' '.join(cmd)} {why}:\n{out}\n{err or ''}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err or "")


def dvc(root: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """The venv's ``dvc`` in ``root``; ``env`` adds variables (e.g. the tracking URI)."""
    return run([str(VENV_BIN / "dvc"), *args], root, child_env(**env), check=check)


def dvc_json(root: Path, *args: str) -> dict:
    """``dvc <args> --json`` parsed (``status``: ``{}`` means clean)."""
    return json.loads(dvc(root, *args, "--json").stdout or "{}")


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    """The stages a dvc or genreflow command ran, from its log."""
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def git_clone(source: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    return dest
