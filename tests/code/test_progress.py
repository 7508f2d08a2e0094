"""``progress_bar``: a tqdm bar on a terminal, plain lines every few percent anywhere else.

Why it matters: a CI log of ``make repro`` held thousands of carriage-return frames per stage.
These tests write into in-memory streams (one claiming to be a terminal) and, for a real
stage's bar, into an OS pipe from a child process, as ``make repro > log`` does.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tqdm import tqdm

from genreflow.core.progress import LineProgress, progress_bar

ANSI = re.compile(r"\x1b\[")


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


def _assert_plain_lines(text: str) -> list[str]:
    assert "\r" not in text and not ANSI.search(text)
    assert text.endswith("\n")
    return text.splitlines()


def test_a_log_gets_a_line_every_five_percent_for_a_thousand_updates() -> None:
    log = io.StringIO()
    with progress_bar(total=1000, desc="synthesise", unit="clip", file=log) as bar:
        for i in range(1000):
            bar.update(1)
            if i == 499:
                bar.set_postfix(loss="0.123")
    lines = _assert_plain_lines(log.getvalue())
    assert 19 <= len(lines) <= 22  # 0%, 5%, ..., 100%
    assert lines[0].startswith("synthesise: 0% 0/1000 clip [")
    assert lines[8].startswith("synthesise: 40% 400/1000 clip [")
    assert re.fullmatch(r"synthesise: 100% 1000/1000 clip \[\S+<\S+, loss=0\.123\]", lines[-1])
    assert len(set(lines)) == len(lines)  # the end is not written twice


def test_iterating_and_stopping_early_ends_with_where_it_stopped() -> None:
    log = io.StringIO()
    bar = progress_bar(range(200), desc="train cnn", unit="epoch", file=log)
    for i in bar:
        if i == 72:  # tqdm counts an item once the next one is asked for: 72 done
            break
    bar.close()
    lines = _assert_plain_lines(log.getvalue())
    assert lines[-1].startswith("train cnn: 36% 72/200 epoch [")
    assert len(lines) == 9  # 0%, 5%, ..., 35%, then where it stopped

    resumed = io.StringIO()  # a resumed bar starts where its work stands
    bar = progress_bar(total=10, initial=4, desc="train", unit="epoch", file=resumed)
    bar.update(1)
    bar.close()
    assert _assert_plain_lines(resumed.getvalue())[0].startswith("train: 40% 4/10 epoch [")


def test_without_a_total_it_writes_the_first_and_last_counts() -> None:
    log = io.StringIO()
    with progress_bar(desc="extract a.tar", unit="B", unit_scale=True, file=log) as bar:
        for _ in range(100):
            bar.update(123_456)
    lines = _assert_plain_lines(log.getvalue())
    assert len(lines) == 2 and lines[-1].startswith("extract a.tar: 12.3M B [")


def test_a_terminal_gets_tqdms_own_bar() -> None:
    term = _Terminal()
    with progress_bar(total=100, desc="copy audio", unit="file", file=term) as bar:
        assert type(bar) is tqdm
        bar.update(100)
    assert "\r" in term.getvalue() and "copy audio: 100%|" in term.getvalue()


def test_disabled_writes_nothing_anywhere(capsys) -> None:
    log, term = io.StringIO(), _Terminal()
    for stream in (log, term, None):
        with progress_bar(total=10, desc="x", disable=True, file=stream) as bar:
            bar.update(10)
    assert [x for x in progress_bar(range(3), disable=True)] == [0, 1, 2]
    assert log.getvalue() == term.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_call_sites_keep_tqdms_interface() -> None:
    """Annotated as tqdm, written to with ``.write``, used as a context manager."""
    log = io.StringIO()
    with progress_bar(total=4, desc="re-score", file=log) as bar:
        assert isinstance(bar, tqdm) and isinstance(bar, LineProgress)
        bar.write("one message", file=log)
        bar.set_description("re-score champion")
        bar.update(4)
    lines = _assert_plain_lines(log.getvalue())
    assert "one message" in lines
    assert lines[-1].startswith("re-score champion: 100% 4/4 it [")


def test_a_stage_writing_into_a_pipe_leaves_no_carriage_returns(tmp_path: Path) -> None:
    """The synthetic generator (the default fetch stage's work), its stderr an OS pipe."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from genreflow.core.config import SyntheticParams
        from genreflow.sources.synthetic.corpus import generate_corpus

        params = SyntheticParams(clips_per_genre=20, duration_s=0.5, sample_rate=8000)
        paths = generate_corpus(params, ["jazz", "blues"], Path({str(tmp_path)!r}), progress=True)
        print(len(paths))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,  # stdout and stderr are OS pipes, not terminals
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "40"
    lines = _assert_plain_lines(done.stderr)
    bar_lines = [line for line in lines if line.startswith("synthesise: ")]
    assert bar_lines[0].startswith("synthesise: 0% 0/40 clip [")
    assert bar_lines[-1].startswith("synthesise: 100% 40/40 clip [")
    assert 19 <= len(bar_lines) <= 22
