"""Same commit, same bytes: the pinned numerics make features and training independent of the
caller's code-path environment and thread settings (:mod:`genreflow.core.numerics`).

Each case runs :mod:`support.numerics_probe` in a child process, because the pins act only
before torch first computes. "Another machine" is simulated by the environment variables
that select other code paths in MKL, ATen and oneDNN, and other thread counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genreflow.core.numerics import RECIPE_KEYS, describe, recipe_differences
from support.processes import child_env

TESTS = Path(__file__).resolve().parents[1]
RECIPE_THREADS = 2

# The "another machine", and one that differs from the default in every knob.
OTHER_MACHINES = {
    "compatible-avx2-1thread": {
        "MKL_CBWR": "COMPATIBLE",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OMP_NUM_THREADS": "1",
    },
    "scalar-avx512mkl-3threads": {
        "MKL_CBWR": "AVX512",
        "ATEN_CPU_CAPABILITY": "default",
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
    },
}
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def probe(
    pinned: bool,
    env: dict[str, str] | None = None,
    threads: int = RECIPE_THREADS,
    device: str = "cpu",
) -> dict:
    """What the probe computes with the recipe's ``threads``, in a child whose environment
    holds ``env`` and none of the numeric variables this process may have."""
    base = child_env()  # none of the numeric variables this process may hold
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), base.get("PYTHONPATH")]))
    mode = "pinned" if pinned else "unpinned"
    proc = subprocess.run(
        [sys.executable, "-m", "support.numerics_probe", mode, str(threads), device],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def bytes_of(result: dict) -> dict:
    return {k: result[k] for k in ("features", "cnn", "crnn")}


@pytest.fixture(scope="module")
def pinned_default() -> dict:
    return probe(True)


@pytest.fixture(scope="module")
def unpinned_default() -> dict:
    return probe(False)


@pytest.mark.parametrize("machine", OTHER_MACHINES)
def test_pinned_bytes_ignore_the_code_path_environment(pinned_default, machine):
    other = probe(True, OTHER_MACHINES[machine])
    assert bytes_of(other) == bytes_of(pinned_default)
    assert recipe_differences(other["environment"], pinned_default["environment"]) == []


@pytest.mark.parametrize("machine", OTHER_MACHINES)
def test_control_unpinned_the_same_environment_changes_the_bytes(unpinned_default, machine):
    """Without the pins, the environment above does select other code paths: the test above
    could fail."""
    other = probe(False, OTHER_MACHINES[machine])
    assert bytes_of(other)["features"] != bytes_of(unpinned_default)["features"]
    assert recipe_differences(other["environment"], unpinned_default["environment"])


def test_pins_take_effect(pinned_default):
    env = pinned_default["environment"]
    assert env["aten_cpu_capability"] == "AVX2"
    assert env["mkl_cbwr"] == "COMPATIBLE"
    assert env["threads"] == RECIPE_THREADS
    assert not env["onednn_enabled"] and not env["nnpack_enabled"]
    assert env["cudnn_deterministic"] and env["deterministic_algorithms"]


def test_the_thread_count_is_recipe_not_runtime(pinned_default):
    """The same pins with another recipe thread count give other bytes: float sums split
    across three threads round differently. Hence `threads` is a param every computing stage
    lists, and the fingerprint's one differing recipe key."""
    three = probe(True, threads=3)
    assert three["environment"]["threads"] == 3
    assert bytes_of(three) != bytes_of(pinned_default)
    assert recipe_differences(pinned_default["environment"], three["environment"]) == ["threads"]


def test_pinning_after_torch_computed_warns_and_says_so():
    """Once torch picked its kernels the pins cannot act: a warning, and a fingerprint that
    shows the kernels really in force, never a silent claim. Forcing the scalar kernels first
    works on any CPU with AVX2."""
    if " avx2" not in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""):
        pytest.skip("needs a CPU with AVX2")
    code = (
        "import json, torch; torch.ones(64).exp(); "
        "from genreflow.core.numerics import numeric_environment, pin_numerics; "
        "print(json.dumps([pin_numerics(2), numeric_environment()]))"
    )
    base = child_env()  # none of the numeric variables this process may hold
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "numeric pins cannot act" in proc.stderr
    in_force, env = json.loads(proc.stdout.splitlines()[-1])
    assert in_force is False
    assert env["aten_cpu_capability"] == "DEFAULT" and not env["pinned"]


def test_describe_marks_recipe_differences():
    mine = {key: "x" for key in RECIPE_KEYS} | {"cpu_model": "A"}
    theirs = mine | {"threads": 1, "cpu_model": "B"}
    text = describe(mine, theirs, "run abc")
    assert "threads" in text and "<- differs" in text
    assert text.splitlines()[-1] == "different recipe (threads): expect other bytes"
    assert describe(mine, mine | {"cpu_model": "B"}, "r").endswith("expect the same bytes")


@pytest.mark.parametrize("device", DEVICES)
def test_pinned_training_repeats_itself_on_each_device(device):
    """cuDNN deterministic without benchmarking, deterministic algorithms and a fixed cuBLAS
    workspace: two runs give the same bytes on the same device. (A GPU's bytes are not a CPU's:
    other kernels, other rounding.)"""
    first, second = probe(True, device=device), probe(True, device=device)
    assert bytes_of(first) == bytes_of(second)
    env = first["environment"]
    assert env["cudnn_deterministic"] and env["deterministic_algorithms"]
    assert (env["device"] == "cpu") == (device == "cpu")
