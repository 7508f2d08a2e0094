"""Running ``dvc`` and ``git`` for ``genreflow retrain``: output live, failures named by step.

A CI log must show DVC's own output as it happens (a stage can run for minutes), and a failure
must end in one line naming the step that failed (``dvc pull``, ``dvc repro`` ...). So each
command's output is echoed line by line while it is kept, and a non-zero exit becomes a
:class:`StepError` carrying the most telling line of that output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from genreflow.core.errors import GenreflowError


class StepError(GenreflowError, RuntimeError):
    """A retrain step failed; the message starts with the step's name."""


@dataclass(frozen=True)
class StepResult:
    """A finished command: its exit status and its output (stdout and stderr together)."""

    returncode: int
    output: str


class Runner(Protocol):
    """Runs one command of step ``step``; raises :class:`StepError` if ``check`` and it fails."""

    def __call__(
        self, step: str, args: Sequence[str], *, echo: bool = True, check: bool = True
    ) -> StepResult: ...


def tool(name: str) -> str:
    """The venv's own ``name`` (``dvc``, next to this Python) when there is one, else PATH's.

    ``genreflow retrain`` may be called without activating the venv (``.venv/bin/genreflow``);
    the dvc it runs must still be the pinned one.
    """
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which(name) or name


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for dvc: this venv's bin first on PATH, because the stage commands in
    ``dvc.yaml`` call plain ``python`` and must get the venv's, not the system's."""
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")]).rstrip(os.pathsep)
    return env


def telling_line(output: str) -> str:
    """The line that best says why a command failed: a stage's own ``genreflow <stage>:
    error:`` line, else DVC's last ``ERROR:`` line, else the last non-blank line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("genreflow ", "ERROR"):
        found = [line for line in lines if line.startswith(prefix) and "error" in line.lower()]
        if found:
            return found[-1]
    return lines[-1] if lines else "no output"


class SubprocessRunner:
    """:class:`Runner` that runs real commands in ``root`` and echoes their output to ``out``."""

    def __init__(
        self, root: Path, env: Mapping[str, str] | None = None, out: TextIO | None = None
    ) -> None:
        self.root = Path(root)
        self.env = child_env(env)
        self.out = out

    def __call__(
        self, step: str, args: Sequence[str], *, echo: bool = True, check: bool = True
    ) -> StepResult:
        out = self.out or sys.stdout
        if echo:
            print(f"$ {' '.join(args)}", file=out, flush=True)
        try:
            proc = subprocess.Popen(
                list(args),
                cwd=self.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            raise StepError(f"{step}: cannot run {args[0]} ({exc})") from exc
        kept: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            kept.append(line)
            if echo:
                out.write(line)
                out.flush()
        returncode = proc.wait()
        result = StepResult(returncode, "".join(kept))
        if check and returncode != 0:
            raise StepError(f"{step} failed (exit {returncode}): {telling_line(result.output)}")
        return result
