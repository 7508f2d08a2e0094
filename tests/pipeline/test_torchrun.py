"""The training stages under torchrun, as a user runs them, in a copy of the repository with
the tiny pipeline profile (gloo on CPU): by hand under ``torchrun --standalone``, launching
themselves when ``world_size`` asks for ranks, killed in the middle and resumed, and as two
"nodes" (two launchers meeting at a c10d rendezvous on loopback).

Every case checks what the issue asks of a data-parallel stage: rank 0 alone writes the
outputs and logs exactly one MLflow run, tagged with the world size it trained with.

The data stages are built once for the module (``dvc repro spectrogramize``); each test trains
in its own copy of that build, with its own ``mlflow.db``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from support.processes import (
    VENV_BIN,
    child_env,
    dvc,
    free_port,
    run,
    stop_process_group,
)
from support.repo import copy_repo, tiny_pipeline_params

STAGE = "stages/train_cnn.py"
TIMEOUT_S = 600.0


def _params(params: dict) -> dict:
    params = tiny_pipeline_params(params)
    params["train_cnn"]["epochs"] = 1
    return params


@pytest.fixture(scope="module")
def features_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed tiny copy with fetch, validate and spectrogramize run (no training)."""
    root = copy_repo(tmp_path_factory.mktemp("torchrun-build"), _params)
    dvc(root, "repro", "spectrogramize")
    return root


@pytest.fixture()
def repo(features_built: Path, tmp_path: Path) -> Callable[..., Path]:
    """``repo(**train_cnn)``: a copy of the built repository for one test, its ``train_cnn``
    section (and top-level keys such as ``world_size``) updated."""

    def make(world_size: int = 1, **train_cnn: object) -> Path:
        root = tmp_path / "repo"
        if not root.exists():
            shutil.copytree(features_built, root, symlinks=True)
        set_params(root, world_size=world_size, **train_cnn)
        return root

    return make


def set_params(root: Path, world_size: int, **train_cnn: object) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["world_size"] = world_size
    params["train_cnn"].update(train_cnn)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_env() -> dict[str, str]:
    """What DVC's stage command gives the script: this checkout's src/ first on the path."""
    return child_env(PYTHONPATH="src")


def start(cmd: list[str], root: Path, stderr: int) -> subprocess.Popen:
    """``cmd`` started in ``root`` with the stage environment, in its own session (stopped by
    its PID with :func:`stop_process_group`)."""
    return subprocess.Popen(
        cmd,
        cwd=root,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def torchrun(*args: str) -> list[str]:
    return [str(VENV_BIN / "torchrun"), *args]


def runs_of(root: Path) -> list:
    """Every MLflow run in the copy's own store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(root / 'mlflow.db').as_posix()}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def checkpoint_epoch(root: Path) -> int:
    """Epochs done in the copy's CNN checkpoint (0 when it has none yet)."""
    from genreflow.training.checkpoint import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(root / "models" / "cnn" / "checkpoint.pt")
    except CheckpointError:  # caught mid-rename: read again next time
        return 0
    return int(state["epoch"]) if state else 0


def test_torchrun_by_hand_trains_one_epoch_with_one_mlflow_run(repo) -> None:
    """The issue's done-when: ``PYTHONPATH=src torchrun --standalone --nproc-per-node 2
    stages/train_cnn.py`` trains one epoch and writes models/cnn/model.pt with one MLflow run;
    the launcher's 2 ranks win over ``world_size: 1``, with a one-line warning."""
    root = repo(world_size=1)
    out = run(
        torchrun("--standalone", "--nproc-per-node", "2", STAGE),
        root,
        stage_env(),
        timeout=TIMEOUT_S,
        merge_output=True,
    ).stdout
    assert (root / "models" / "cnn" / "model.pt").is_file()
    assert (root / "models" / "cnn" / "run.json").is_file()
    [only] = runs_of(root)
    assert only.info.status == "FINISHED"
    assert only.data.tags["world_size"] == "2"
    assert only.data.metrics["epochs_run"] == 1.0
    assert "torchrun started 2 ranks but world_size is 1; training with 2" in out


def test_killed_rank_fails_in_one_line_and_another_world_size_resumes(repo) -> None:
    """``world_size: 2`` makes the stage launch itself under torchrun. Rank 1 killed (SIGKILL)
    once epoch 1 is checkpointed, while the ranks train epoch 2: the stage exits non-zero with
    one line naming the rank and the epoch to resume after. The re-run, with one rank (a
    checkpoint made by two resumes under any world size), finishes from that epoch."""
    epochs = 6
    root = repo(world_size=2, epochs=epochs, batch_size=4)
    proc = start([str(VENV_BIN / "python"), STAGE], root, stderr=subprocess.PIPE)
    try:
        rank1 = _wait_for_rank(proc, 1)
        deadline = time.monotonic() + TIMEOUT_S
        while checkpoint_epoch(root) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch was checkpointed"
            time.sleep(0.05)
        os.kill(rank1, signal.SIGKILL)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        stop_process_group(proc)
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"genreflow train_cnn: error: rank 1 died \(exit code -9, SIGKILL\); "
        r"re-run to resume after epoch (\d+) \(.*checkpoint\.pt\)",
        last,
    )
    assert match, err[-3000:]
    done = int(match.group(1))
    assert 1 <= done < epochs, "the kill came after the last epoch"
    assert not (root / "models" / "cnn" / "run.json").exists()

    set_params(root, world_size=1)
    out = run([str(VENV_BIN / "python"), STAGE], root, stage_env(), merge_output=True).stdout
    assert f"resuming from epoch {done}" in out
    [only] = runs_of(root)  # the killed run, resumed
    assert only.info.status == "FINISHED"
    assert only.data.tags["resumed_from_epoch"] == str(done)
    assert only.data.tags["world_size"] == "1"
    assert only.data.metrics["epochs_run"] == float(epochs)


def _wait_for_rank(proc: subprocess.Popen, rank: int) -> int:
    """The PID of the process that torchrun started as ``rank`` below ``proc`` (read from
    /proc: its environment says ``RANK``); waits until it exists."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for pid in _descendants(proc.pid):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            started_by_torchrun = any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in environ)
            if started_by_torchrun and f"RANK={rank}".encode() in environ:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never started")


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children + [d for c in children for d in _descendants(c)]


def test_two_launchers_on_loopback_train_as_two_nodes(repo) -> None:
    """Multi-node as documented: two ``torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend
    c10d --rdzv-endpoint 127.0.0.1:PORT`` launchers (one per "node") meet and train as 2
    ranks; the node that drew rank 0 writes the model and the one MLflow run."""
    root = repo(world_size=2)
    port = free_port()
    cmd = torchrun(
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "genreflow-loopback",
        STAGE,
    )
    nodes = [start(cmd, root, stderr=subprocess.STDOUT) for _ in range(2)]
    try:
        outs = [node.communicate(timeout=TIMEOUT_S)[0] for node in nodes]
    finally:
        for node in nodes:
            stop_process_group(node)
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert (root / "models" / "cnn" / "model.pt").is_file()
    [only] = runs_of(root)
    assert only.info.status == "FINISHED"
    assert only.data.tags["world_size"] == "2"
