"""Progress bars that suit where they are written: a live bar on a terminal, lines in a log.

Why: tqdm redraws its bar with carriage returns. On a terminal that is one line that moves; in
a file or a pipe (a CI log of ``make repro``, ``dvc repro > log``) every redraw stays, and a
stage left thousands of ``\\r`` frames behind. :func:`progress_bar` returns the ordinary tqdm
bar when its stream is a terminal; otherwise a tqdm whose output is one plain line each time
the work crosses another ``every`` percent (5 by default: about 20 lines, however many
updates), plus one at the start and one at the end, e.g.::

    synthesise: 40% 400/1000 clip [00:12<00:18]

No carriage returns, no ANSI codes. A bar without a total (an archive being extracted) writes
a line every :data:`UNKNOWN_TOTAL_INTERVAL_S` seconds instead.

Both are :class:`tqdm.tqdm` objects, so a call site swaps only the constructor's name:
iterate it, use it as a context manager, ``update(n)``, ``set_postfix``, ``close()``,
``write``, and annotate it as ``tqdm``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

STEP_PERCENT = 5.0
UNKNOWN_TOTAL_INTERVAL_S = 30.0


def _is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream counts as not one)."""
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty):
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):
        return False


def _in_notebook_kernel() -> bool:
    """Whether this runs in a Jupyter kernel, where ``tqdm.auto`` shows a widget.

    Checked through ``sys.modules`` only, so a pipeline stage never imports IPython.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Discard:
    """Where tqdm's own drawing goes in line mode: it is thrown away."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        return None


class LineProgress(tqdm):
    """A tqdm that writes a plain line per ``every`` percent to ``out``, and nothing else.

    tqdm itself draws into :class:`_Discard`; :meth:`display`, which tqdm calls to draw, is
    where a line may be written. Every update reaches it (``miniters=1``, ``mininterval=0``),
    so no crossing of a step is missed, however fast the updates come.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        out: IO[str],
        every: float = STEP_PERCENT,
        **kwargs: Any,
    ) -> None:
        # set before tqdm's __init__, which draws (calls display) once already
        self._out = out
        self._every = float(every)
        self._last_step: int | None = None
        self._last_line_n: float | None = None
        self._last_line_t = 0.0
        self._closing = False
        kwargs.update(file=_Discard(), miniters=1, mininterval=0, ascii=True)
        kwargs.pop("dynamic_ncols", None)
        super().__init__(iterable, **kwargs)

    def _line(self) -> str:
        """The line for the current state, through tqdm's own ``format_meter``."""
        d = dict(self.format_dict)
        desc = str(d.get("prefix") or "")
        d["prefix"] = desc[:-2] if desc.endswith(": ") else desc  # set_description adds ": "
        head = "{desc}: " if d["prefix"] else ""
        if d.get("total"):
            fmt = head + "{percentage:.0f}% {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}"
        else:
            fmt = head + "{n_fmt} {unit} [{elapsed}, {rate_fmt}"
        d.update(bar_format=fmt + "{postfix}]", ncols=None, colour=None)
        return self.format_meter(**d)

    def _due(self) -> bool:
        """Whether a line is due: a new step, the first draw, or the end."""
        n, total = self.n, self.total
        if self._closing:
            return n != self._last_line_n
        if self._last_line_n is None:
            return True
        if total:
            step = int(min(n / total, 1.0) * 100.0 // self._every)
            return self._last_step is None or step > self._last_step
        return time.monotonic() - self._last_line_t >= UNKNOWN_TOTAL_INTERVAL_S

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Write a line when one is due (tqdm passes ``msg=""`` only to clear: ignored)."""
        if msg == "" or not self._due():
            return True
        if self.total:
            self._last_step = int(min(self.n / self.total, 1.0) * 100.0 // self._every)
        self._last_line_n = self.n
        self._last_line_t = time.monotonic()
        self._out.write(self._line() + "\n")
        self._out.flush()
        return True

    def close(self) -> None:
        """Close, with a last line for where the work ended (if not written already)."""
        self._closing = True
        super().close()


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    file: IO[str] | None = None,
    every: float = STEP_PERCENT,
    **kwargs: Any,
) -> tqdm:
    """A progress bar over ``iterable`` (or for ``total`` updates) on ``file`` (stderr).

    On a terminal, or in a Jupyter kernel writing to stderr (where ``tqdm.auto`` shows its
    widget), the ordinary tqdm bar; otherwise a :class:`LineProgress`, one line per
    ``every`` percent. Other keyword arguments go to tqdm (``initial``, ``unit_scale``, ...).
    """
    stream = sys.stderr if file is None else file
    kwargs.update(total=total, desc=desc, unit=unit, disable=disable)
    if disable:
        return tqdm(iterable, file=file, **kwargs)
    if file is None and _in_notebook_kernel():
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(iterable, **kwargs)
    if _is_terminal(stream):
        return tqdm(iterable, file=file, **kwargs)
    return LineProgress(iterable, out=stream, every=every, **kwargs)
