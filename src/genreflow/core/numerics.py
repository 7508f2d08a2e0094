"""The numerical code paths every stage computes with, pinned so the same commit writes the
same bytes on any x86-64 machine with AVX2.

Why each pin (all measured on torch 2.14.1; see README "Same commit, same bytes"):

- ``MKL_CBWR=COMPATIBLE``: MKL's FFT and GEMM (the STFT, the mel filterbank, every conv
  lowered to GEMM) otherwise take a code path per CPU model, and the paths round
  differently. COMPATIBLE is MKL's one branch documented to run the same code on Intel and
  non-Intel processors. ``MKL_DYNAMIC``/``OMP_DYNAMIC=FALSE`` keep the thread count fixed, a
  condition of MKL's reproducibility.
- ``ATEN_CPU_CAPABILITY=avx2``: ATen's vectorised kernels (log10, exp, the element-wise
  maths) have a variant per instruction set; AVX-512 and scalar round differently from AVX2.
- oneDNN and NNPACK off: their convolution and LSTM kernels choose blocking from the CPU's
  caches and promise no bit-identity across machines; oneDNN's LSTM backward also sums in an
  order that depends on the thread count. Without them, conv runs as im2col + MKL GEMM.
  ``ONEDNN_MAX_CPU_ISA=AVX2`` still caps oneDNN for any op that reaches it.
- The intra-op thread count is part of the recipe (params ``threads``), not a runtime knob:
  float sums split across threads round differently, even with everything above pinned.
- CUDA: cuDNN deterministic with no benchmarking, deterministic algorithms, and
  ``CUBLAS_WORKSPACE_CONFIG``. That makes a GPU repeat itself; it does not make a GPU equal a
  CPU, or one GPU model another.

The environment variables are read when torch first computes, so :func:`pin_numerics` must run
before that; :func:`genreflow.core.runner.run_pipeline_stage` calls it before a stage imports
any module that uses torch. ``runtime.pin_numerics: false`` leaves the caller's environment
and torch's fastest paths alone: faster, and the bytes may then differ between machines.
"""

from __future__ import annotations

import os
import platform
import re
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genreflow.core.config import Params

# Set in os.environ, overriding whatever the caller's environment holds.
PINNED_ENV: types.MappingProxyType[str, str] = types.MappingProxyType(
    {
        "MKL_CBWR": "COMPATIBLE",
        "MKL_DYNAMIC": "FALSE",
        "OMP_DYNAMIC": "FALSE",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
)
PINNED_CAPABILITY = "AVX2"  # what torch reports once ATEN_CPU_CAPABILITY=avx2 took effect

# The fingerprint keys that decide the bytes: two machines that agree on all of them compute
# the same bytes from the same commit (on CPU). The other keys describe the machine.
RECIPE_KEYS: tuple[str, ...] = (
    "pinned",
    "device",
    "torch",
    "aten_cpu_capability",
    "mkl",
    "mkl_cbwr",
    "onednn",
    "onednn_enabled",
    "onednn_max_cpu_isa",
    "nnpack_enabled",
    "threads",
    "cuda",
    "cudnn",
    "cudnn_deterministic",
    "deterministic_algorithms",
)


def pin_numerics(threads: int, pinned: bool = True) -> bool:
    """Fix this process's numerical code paths: ``threads`` intra-op threads always (they are
    part of the recipe), and with ``pinned`` the instruction-set, library and determinism pins
    of :data:`PINNED_ENV`. Returns whether the pins are in force.

    A stage process pins before torch computes, so they always are there. A process where torch
    already picked other kernels (a notebook, a test calling the CLI in-process) cannot be
    pinned any more: it gets a warning, keeps its kernels, and its fingerprint says so.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if pinned:
        os.environ.update(PINNED_ENV)

    import torch

    torch.set_num_threads(threads)
    if not pinned:
        torch.backends.cudnn.benchmark = True  # cuDNN times kernels and keeps the fastest
        return False
    capability = torch.backends.cpu.get_cpu_capability()  # reads ATEN_CPU_CAPABILITY once
    if capability != PINNED_CAPABILITY and _cpu_flags() >= {"avx2", "fma"}:
        warnings.warn(  # for whoever calls the library in-process; a stage never gets here
            f"torch already runs its {capability} kernels in this process, so the numeric pins "
            "cannot act; its outputs may differ from a stage's (pin before torch computes)",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    # warn_only: an op without a deterministic CUDA kernel warns (naming itself) rather than
    # killing a long run; the fingerprint records that determinism was asked for.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True


def apply_numerics(params: Params) -> bool:
    """:func:`pin_numerics` as ``params`` ask: ``threads`` and ``runtime.pin_numerics``."""
    return pin_numerics(params.threads, params.runtime.pin_numerics)


def _cpu_info() -> dict[str, str]:
    """The first processor's entry of /proc/cpuinfo (empty where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    info: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def _cpu_flags() -> set[str]:
    return set(_cpu_info().get("flags", "").split())


def _library_version(config: str, pattern: str) -> str | None:
    match = re.search(pattern, config)
    return match.group(1) if match else None


def numeric_environment() -> dict[str, Any]:
    """This process's numeric environment: what decides the bytes (:data:`RECIPE_KEYS`) and
    the machine it runs on. Training runs log it to MLflow; ``genreflow numerics`` prints it."""
    import torch

    config = torch.__config__.show()
    cuda = torch.cuda.is_available()
    flags = _cpu_flags()
    return {
        "pinned": os.environ.get("MKL_CBWR") == PINNED_ENV["MKL_CBWR"]
        and not torch.backends.mkldnn.enabled,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": _library_version(config, r"Math Kernel Library Version (\d[\w.]*)"),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "AUTO"),
        "onednn": _library_version(config, r"MKL-DNN v(\S+)"),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL"),
        "nnpack_enabled": bool(torch._C._get_nnpack_enabled()),  # no public getter
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpu_model": _cpu_info().get("model name", platform.processor() or "unknown"),
        "cpu_avx2": "avx2" in flags,
        "cpu_avx512f": "avx512f" in flags,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }


def recipe_differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The :data:`RECIPE_KEYS` on which two fingerprints disagree: empty means the same commit
    computes the same bytes on both (on CPU; a GPU only repeats itself)."""
    return [key for key in RECIPE_KEYS if mine.get(key) != theirs.get(key)]


def describe(mine: dict[str, Any], theirs: dict[str, Any] | None = None, label: str = "") -> str:
    """A table of the fingerprint (recipe keys first, marked ``*``), side by side with
    ``theirs`` when given, ending in a verdict line."""
    keys = [*RECIPE_KEYS, *(k for k in mine if k not in RECIPE_KEYS)]
    width = max(map(len, keys)) + 2
    header = f"  {'':{width}}{'this machine':<28}" + (f"{label}" if theirs is not None else "")
    lines = [header.rstrip()]
    for key in keys:
        mark = "*" if key in RECIPE_KEYS else " "
        row = f"{mark} {key:{width}}{_show(mine.get(key)):<28}"
        if theirs is not None:
            row += _show(theirs.get(key))
            if key in RECIPE_KEYS and mine.get(key) != theirs.get(key):
                row += "   <- differs"
        lines.append(row.rstrip())
    lines.append("* decides the bytes: equal on every * row means the same commit gives the same")
    lines.append("  bytes (on CPU; a GPU repeats itself but does not equal a CPU).")
    if theirs is not None:
        differing = recipe_differences(mine, theirs)
        lines.append(
            "same recipe: expect the same bytes"
            if not differing
            else f"different recipe ({', '.join(differing)}): expect other bytes"
        )
    return "\n".join(lines)


def _show(value: Any) -> str:
    return "-" if value is None else str(value)
