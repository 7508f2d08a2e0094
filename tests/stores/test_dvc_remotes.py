"""DVC remotes for real: a local directory and an S3-compatible endpoint (moto) on loopback.

A colleague's fresh clone plus ``dvc pull`` must be the same pipeline state as the machine
that pushed: ``dvc status`` clean, so ``dvc repro`` runs nothing (no retraining, no new
registry versions). And a push cut off half-way, by the store dying or by the pushing process
being killed, must leave the remote holding only intact objects, the workspace untouched, and a
second ``dvc push`` completing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from genreflow.retrain.store_checks import check_dvc_remote

pytestmark = pytest.mark.integration


@dataclass
class Remote:
    """A DVC remote the test configures in a repository, and a way to read its objects back
    without DVC (to check their contents independently)."""

    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)
    read_objects: Callable[[], dict[str, bytes]] = dict
    count_objects: Callable[[], int] = int

    def configure(self, kit, root: Path) -> None:
        kit.dvc(root, "remote", "add", "-f", "-d", self.name, self.url)
        for key, value in self.options.items():
            kit.dvc(root, "remote", "modify", self.name, key, value)


def local_remote(path: Path) -> Remote:
    def read() -> dict[str, bytes]:
        # `.*.tmp` are partial uploads DVC renames into place when complete: not objects
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in path.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        }

    path.mkdir(parents=True, exist_ok=True)
    return Remote("local", str(path), read_objects=read, count_objects=lambda: len(read()))


def s3_remote(kit, endpoint: str, client_endpoint: str | None = None) -> Remote:
    """A fresh bucket on moto, reached by DVC at ``endpoint`` (moto itself or a proxy);
    objects are read straight from moto (``client_endpoint``)."""
    bucket = f"genreflow-{uuid.uuid4().hex[:12]}"
    client = kit.s3_client(client_endpoint or endpoint)
    client.create_bucket(Bucket=bucket)

    def read() -> dict[str, bytes]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}

    def count() -> int:
        return client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)

    return Remote("s3", f"s3://{bucket}/store", {"endpointurl": endpoint}, read, count)


def assert_objects_intact(objects: dict[str, bytes]) -> None:
    """Every object in the remote is whole: its content's MD5 is its name
    (``files/md5/ab/cdef….[dir]``). A truncated upload under its final name would fail this,
    and a later push would then skip it as already present."""
    assert objects, "the remote holds no objects"
    for key, data in objects.items():
        *_, prefix, rest = key.split("/")
        assert hashlib.md5(data).hexdigest() == prefix + rest.removesuffix(".dir"), key


def outputs_state(kit, root: Path) -> tuple[dict, dict[str, int]]:
    """``dvc status``, and the size of every file of every output ``dvc.lock`` records (read
    from the lock file, not from DVC, so a DVC bug cannot hide a lost file)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    files: dict[str, int] = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path = root / out["path"]
            found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            files[out["path"]] = len(found)
            files.update({p.relative_to(root).as_posix(): p.stat().st_size for p in found})
    return kit.dvc_json(root, "status"), files


@pytest.fixture(params=["local", "s3"])
def remote(request, kit, tmp_path: Path) -> Remote:
    if request.param == "local":
        return local_remote(tmp_path / "remote")
    moto = request.getfixturevalue("moto_server")
    return s3_remote(kit, moto.url)


@pytest.fixture()
def aws_env(kit, monkeypatch) -> None:
    """The dummy credentials in this process too, for in-process boto3 checks."""
    for key, value in kit.aws_env.items():
        monkeypatch.setenv(key, value)


def assert_fresh_clone_reproduces(kit, source: Path, remote: Remote, dest: Path) -> None:
    """``git clone`` + the same remote + ``dvc pull`` gives a workspace DVC calls clean."""
    clone = kit.git_clone(source, dest)
    remote.configure(kit, clone)
    kit.dvc(clone, "pull")
    assert kit.dvc_json(clone, "status", "-c") == {}
    status = kit.dvc_json(clone, "status")
    assert status == {}, (
        "a fresh clone + `dvc pull` is not the pushed state; `dvc repro` would re-run these "
        "stages (outputs neither in git nor in the DVC remote, e.g. `cache: false` outputs "
        f"under the git-ignored models/):\n{json.dumps(status, indent=1)}"
    )
    assert kit.stages_run(kit.dvc(clone, "repro")) == set()


def test_push_then_fresh_clone_pull_is_reproduced(
    kit, built_copy: Path, remote: Remote, aws_env, tmp_path: Path
):
    remote.configure(kit, built_copy)
    check_dvc_remote(built_copy)  # reachable: what `genreflow retrain` checks first
    kit.dvc(built_copy, "push")
    assert kit.dvc_json(built_copy, "status", "-c") == {}
    assert_objects_intact(remote.read_objects())
    assert_fresh_clone_reproduces(kit, built_copy, remote, tmp_path / "clone")


def start_killed_push(kit, root: Path, count_objects: Callable[[], int]) -> None:
    """Start ``dvc push``, SIGKILL it (its whole process group, by its PID) once a few
    objects have landed in the remote; fail if it finished first."""
    proc = subprocess.Popen(
        [str(kit.venv_bin / "dvc"), "push"],
        cwd=root,
        env=kit.child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while count_objects() < 3:
            assert proc.poll() is None, "dvc push finished before it could be interrupted"
            assert time.monotonic() < deadline, "dvc push uploaded nothing in 120 s"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "dvc push finished before it was killed"


@pytest.mark.parametrize("how", ["store-dies", "push-killed"])
def test_interrupted_push_leaves_remote_consistent(
    kit, built_copy: Path, moto_server, tmp_path: Path, how: str
):
    """Half a push, then a second one: the remote stays intact, the workspace loses nothing,
    and the second push completes what the first began."""
    port = kit.free_port()
    # 16 MB of objects at 4 MB/s: the push lasts seconds, long enough to cut it off
    if how == "store-dies":
        proxy = kit.start_proxy(tmp_path, moto_server, port=port, rate=4e6, die_after=4_000_000)
    else:
        proxy = kit.start_proxy(tmp_path, moto_server, port=port, rate=4e6)
    try:
        remote = s3_remote(kit, proxy.url, client_endpoint=moto_server.url)
        remote.configure(kit, built_copy)
        before = outputs_state(kit, built_copy)
        assert before[0] == {} and before[1], "the build is not clean to start with"

        if how == "store-dies":
            # one attempt per request: the dead store fails the push in seconds, not after
            # botocore's and s3fs's backoff (which ends the same way, a minute later)
            failed = kit.dvc(built_copy, "push", check=False, AWS_MAX_ATTEMPTS="1")
            assert failed.returncode != 0 and not proxy.alive(), failed.stdout
            assert "127.0.0.1:" in failed.stderr  # the error names the endpoint
        else:
            start_killed_push(kit, built_copy, remote.count_objects)
    finally:
        kit.stop(proxy)

    partial = remote.read_objects()
    assert partial, "nothing reached the store before the interruption"
    assert_objects_intact(partial)
    assert outputs_state(kit, built_copy) == before  # nothing in the workspace is lost

    restarted = kit.start_proxy(tmp_path, moto_server, port=port)  # the store is back
    try:
        kit.dvc(built_copy, "push")
        assert kit.dvc_json(built_copy, "status", "-c") == {}
        objects = remote.read_objects()
        assert set(partial) < set(objects)  # the first push was partial; its objects stay
        assert_objects_intact(objects)
        assert outputs_state(kit, built_copy) == before
        assert_fresh_clone_reproduces(kit, built_copy, remote, tmp_path / "clone")
    finally:
        kit.stop(restarted)
