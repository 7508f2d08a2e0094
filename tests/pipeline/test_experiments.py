"""Every ``dvc exp run`` mode lands its training runs in the repository's own ``mlflow.db``.

DVC 3.67 runs an experiment's stage commands in one of three places:

- ``dvc exp run``: the workspace itself;
- ``dvc exp run --temp``: a clone in ``<repo>/.dvc/tmp/exps/standalone/tmpXXXX``;
- ``dvc exp run --queue`` + ``dvc queue start``: a clone in ``<repo>/.dvc/tmp/exps/tmpXXXX``
  made by a detached celery worker (whose own state lives in ``.dvc/tmp/exps/celery/``).

The clones are deleted when the experiment ends, so a run logged to a store inside one is
lost. Each test runs one mode on a temporary copy of the session's tiny ``dvc repro`` build
(``dvc_built``, set to one epoch) and checks that the copy's root ``mlflow.db`` holds that
experiment's training runs with the seed it set, and that no store appeared under
``.dvc/tmp``. Every experiment retrains and evaluates; the data stages are built already.
Every process a test starts (including the queue's detached worker) is stopped by it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

EXPERIMENT = "genreflow"  # the MLflow experiment (params.yaml tracking.experiment)
TRAIN_STAGES = {"train_cnn", "train_lstm"}
EXPS_DIR = Path(".dvc/tmp/exps")
DVC_TIMEOUT_S = 420
QUEUE_TIMEOUT_S = 420
WORKER_EXIT_TIMEOUT_S = 30
QUEUE_DONE = {"Success", "Failed"}


# --------------------------------------------------------------------------- the copy
@pytest.fixture(scope="module")
def repo(tmp_path_factory, dvc_built) -> Path:
    """A copy of the session's ``dvc repro`` build (``dvc_built``) with one epoch, committed:
    these tests need runs, not models, and the data stages are built already."""
    root = tmp_path_factory.mktemp("genreflow-exps") / "repo"
    shutil.copytree(dvc_built.root, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section in ("train_cnn", "train_lstm"):
        params[section]["epochs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["add", "-A"], ["commit", "-qm", "one epoch"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def finished() -> dict[str, int]:
    """Experiments that completed in this module: name -> seed (for ``dvc exp show``)."""
    return {}


Dvc = Callable[..., str]  # dvc(root, *args, timeout=DVC_TIMEOUT_S)


@pytest.fixture(scope="module")
def dvc(pipeline_kit) -> Dvc:
    """``dvc(root, *args, timeout=)``: stdout and stderr as one text, or an AssertionError
    showing them (the shared runner; on a timeout it kills dvc's whole process group)."""

    def run(root: Path, *args: str, timeout: float = DVC_TIMEOUT_S) -> str:
        return pipeline_kit.dvc(root, *args, timeout=timeout, merge_output=True).stdout

    return run


# --------------------------------------------------------------------------- what landed where
def training_runs(root: Path, exp_name: str) -> list[Any]:
    """Runs of the project experiment in ``<root>/mlflow.db`` tagged with ``exp_name``."""
    from mlflow import MlflowClient

    db = root / "mlflow.db"
    assert db.is_file(), f"no tracking store at {db}"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"{db} has no experiment {EXPERIMENT!r}"
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dvc_exp_name = '{exp_name}'"
    )


def stray_stores(root: Path) -> list[Path]:
    """MLflow stores under ``.dvc/tmp`` (a workspace that kept its runs to itself)."""
    tmp = root / ".dvc" / "tmp"
    return sorted(p for p in tmp.rglob("*") if p.name in ("mlflow.db", "mlruns"))


def assert_runs_in_repo_store(root: Path, exp_name: str, seed: int) -> None:
    runs = training_runs(root, exp_name)
    stages = sorted(r.data.tags.get("dvc_stage") for r in runs)
    assert stages == sorted(TRAIN_STAGES), f"{exp_name}: runs of {stages} in {root}/mlflow.db"
    for r in runs:
        assert r.data.params["seed"] == str(seed), (exp_name, r.data.params["seed"])
        assert r.info.status == "FINISHED", (exp_name, r.info.status)
    assert stray_stores(root) == []


def executor_dir(root: Path, exp_name: str) -> Path:
    """The directory DVC ran ``exp_name``'s stages in, from its executor info files.

    DVC writes ``ExecutorInfo`` JSON (``.run``) under ``.dvc/tmp/exps/**/run/``: ``root_dir``
    is the workspace or clone, ``wdir`` the stage directory inside it.
    """
    dirs = {
        Path(info["root_dir"]) / info.get("wdir", ".")
        for f in (root / EXPS_DIR).rglob("*.run")
        if (info := json.loads(f.read_text())).get("name") == exp_name
    }
    assert len(dirs) == 1, f"{exp_name}: executor dirs {dirs}"
    return dirs.pop().resolve()


def run_experiment(dvc: Dvc, root: Path, name: str, seed: int, *mode: str) -> str:
    return dvc(root, "exp", "run", *mode, "-S", f"seed={seed}", "-n", name)


# --------------------------------------------------------------------------- the queue worker
def worker_pids(root: Path) -> list[int]:
    """PIDs of the detached celery workers ``dvc queue start`` spawned for this copy."""
    pids = []
    for info in (root / EXPS_DIR / "celery").glob("dvc-exp-worker-*.json"):
        pid = json.loads(info.read_text()).get("pid")
        if isinstance(pid, int):
            pids.append(pid)
    return pids


def is_worker(pid: int, root: Path) -> bool:
    """``pid`` is alive (not a zombie) and still one of this copy's queue workers."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        cwd = os.readlink(proc / "cwd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return state != "Z" and "queue-worker" in cmdline and cwd == str(root.resolve())


def kill_worker(pid: int) -> None:
    """SIGKILL a worker and its stage commands: the process group its daemon made for it.

    ``dvc queue start`` forks a daemon that calls ``setpgid(0, 0)`` and runs the worker, so
    that group holds exactly the daemon, the worker and whatever the worker started.
    """
    group = os.getpgid(pid)
    if group != os.getpgrp():
        os.killpg(group, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)


def stop_workers(dvc: Dvc, root: Path) -> None:
    """``dvc queue stop --kill``, then wait for each worker; kill by PID whatever remains."""
    pids = worker_pids(root)
    if not pids:
        return
    try:
        dvc(root, "queue", "stop", "--kill", timeout=60)
    finally:
        deadline = time.monotonic() + WORKER_EXIT_TIMEOUT_S
        while any(is_worker(p, root) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in pids:
            if is_worker(pid, root):
                kill_worker(pid)


@pytest.fixture()
def queue(repo: Path, dvc: Dvc) -> Iterator[Path]:
    """The copy, with every queue worker started during the test stopped afterwards."""
    try:
        yield repo
    finally:
        stop_workers(dvc, repo)


def queue_status(dvc: Dvc, root: Path, name: str) -> str | None:
    """The status column of ``name`` in ``dvc queue status`` (None if not listed)."""
    for line in dvc(root, "queue", "status", timeout=60).splitlines():
        if re.match(rf"^\w+\s+{re.escape(name)}\s", line):
            return line.split()[-1]
    return None


def wait_for_queue(dvc: Dvc, root: Path, name: str, timeout: float = QUEUE_TIMEOUT_S) -> str:
    """Poll ``dvc queue status`` until ``name`` succeeded or failed; its final status."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = queue_status(dvc, root, name)
        if status in QUEUE_DONE:
            return status
        time.sleep(2)
    raise AssertionError(f"queued experiment {name} still {status} after {timeout} s")


# --------------------------------------------------------------------------- the tests
def test_workspace_experiment_logs_to_repo_store(repo, dvc, finished):
    out = run_experiment(dvc, repo, "ws-seed11", 11)
    assert set(re.findall(r"Running stage '([^']+)'", out)) >= TRAIN_STAGES
    assert executor_dir(repo, "ws-seed11") == repo.resolve()
    assert_runs_in_repo_store(repo, "ws-seed11", 11)
    finished["ws-seed11"] = 11


def test_queued_experiment_logs_to_repo_store(queue, dvc, finished):
    repo = queue
    dvc(repo, "exp", "run", "--queue", "-S", "seed=12", "-n", "queue-seed12")
    dvc(repo, "queue", "start", "-j", "1")
    status = wait_for_queue(dvc, repo, "queue-seed12")
    assert status == "Success", dvc(repo, "queue", "logs", "queue-seed12", timeout=60)
    workspace = executor_dir(repo, "queue-seed12")
    assert workspace.is_relative_to(repo.resolve() / EXPS_DIR), workspace
    assert_runs_in_repo_store(repo, "queue-seed12", 12)
    finished["queue-seed12"] = 12


def test_temp_experiment_logs_to_repo_store(repo, dvc, finished):
    run_experiment(dvc, repo, "temp-seed13", 13, "--temp")
    workspace = executor_dir(repo, "temp-seed13")
    assert workspace.is_relative_to(repo.resolve() / EXPS_DIR / "standalone"), workspace
    assert_runs_in_repo_store(repo, "temp-seed13", 13)
    finished["temp-seed13"] = 13


def test_exp_show_lists_the_experiments(repo, dvc, finished):
    if not finished:
        pytest.skip("no experiment completed in this module")
    shown = json.loads(dvc(repo, "exp", "show", "--json", timeout=120))
    seeds = {
        rev["name"]: rev["data"]["params"]["params.yaml"]["data"]["seed"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }
    assert {name: seeds.get(name) for name in finished} == finished
