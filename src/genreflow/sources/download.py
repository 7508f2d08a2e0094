"""Resumable, verified, retrying HTTP download of the corpus archive (standard library only).

GTZAN is a 1.2 GB archive on a host that has been unreliable for years, so the download
must survive a dropped connection without starting over and must never hand a truncated
or wrong file to the next step:

* bytes go to ``<name>.part``; an interrupted transfer resumes with ``Range: bytes=N-``
  (``If-Range`` with the first response's ETag/Last-Modified guards against the file
  changing upstream in between; a server that ignores the range and answers 200 restarts
  the part from byte 0);
* connection errors, timeouts, short bodies, 408/425/429 and 5xx are retried with
  exponential backoff (the ``sleep`` callable is injectable so tests do not wait);
  ``retries`` bounds consecutive attempts that made no progress;
* the part becomes ``<name>`` (``os.replace``) only after its SHA-256 matches, so a file
  under the final name is always complete; an existing final file with the right hash is
  reused without any network access.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from urllib.parse import unquote, urlsplit

from genreflow.core.errors import GenreflowError
from genreflow.core.hashing import file_sha256
from genreflow.core.progress import progress_bar

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16
_USER_AGENT = "genreflow/0.1 (+urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


class DownloadError(GenreflowError, RuntimeError):
    """A download that failed for good; the message names the URL and the reason."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not hash to the configured SHA-256."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.url, self.expected, self.actual = url, expected, actual
        super().__init__(
            f"{url}: SHA-256 mismatch: expected {expected}, got {actual}; "
            "the downloaded file was discarded (check data.url.sha256 or the URL)"
        )


class _Retry(Exception):
    """An attempt that failed in a way worth retrying (network, 5xx, short body)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def download_name(url: str) -> str:
    """File name for ``url`` in the download cache: the last path segment, else 'download'."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).strip()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return name if name.strip(".") else "download"


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _read_meta(meta: Path) -> dict[str, str]:
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _open(url: str, part: Path, meta: Path, timeout_s: float) -> http.client.HTTPResponse | None:
    """Send the (ranged) request; ``None`` means the part already holds the whole file."""
    offset = _size(part)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        state = _read_meta(meta)
        validator = state.get("etag") if not str(state.get("etag", "")).startswith("W/") else ""
        validator = validator or state.get("last_modified", "")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            if exc.code == 416 and offset:
                m = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", "") or "")
                if m and int(m.group(1)) == offset:
                    return None  # the part is already complete (e.g. killed before rename)
                _discard(part, meta)
                raise _Retry("HTTP 416 for the resume range; restarting from byte 0") from exc
            if exc.code in RETRYABLE_STATUS or exc.code >= 500:
                raise _Retry(f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)) from exc
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc


def _attempt(url: str, part: Path, meta: Path, timeout_s: float, progress: bool) -> None:
    """One request; returns when ``part`` holds the full body, raises :class:`_Retry` if not."""
    response = _open(url, part, meta, timeout_s)
    if response is None:
        return
    with response:
        offset = _size(part)
        if response.status == 206:
            m = _CONTENT_RANGE.search(response.headers.get("Content-Range", "") or "")
            if not m or int(m.group(1)) != offset:
                _discard(part, meta)
                raise _Retry(
                    f"server answered range {response.headers.get('Content-Range')!r} "
                    f"to a request from byte {offset}; restarting from byte 0"
                )
            total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        elif response.status == 200:
            if offset:
                log.warning("%s: server ignored the Range request; restarting from byte 0", url)
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
            meta.write_text(
                json.dumps(
                    {
                        "url": url,
                        "etag": response.headers.get("ETag", "") or "",
                        "last_modified": response.headers.get("Last-Modified", "") or "",
                    }
                )
            )
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {response.status}")

        with (
            open(part, mode) as fh,
            progress_bar(
                total=total,
                initial=offset,
                desc=f"download {part.name[: -len('.part')]}",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"{type(exc).__name__} while reading the body: {exc}") from exc
                if not chunk:
                    break
                fh.write(chunk)  # a local disk error here is not retried
                bar.update(len(chunk))

    size = _size(part)
    if total is not None and size != total:
        if size > total:
            _discard(part, meta)
            raise _Retry(f"received {size} bytes, more than the announced {total}; restarting")
        raise _Retry(f"connection closed after {size} of {total} bytes")


def download(
    url: str,
    dest: Path,
    sha256: str = "",
    *,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, and return ``dest``.

    ``sha256`` empty skips verification (a warning prints the hash to pin in params.yaml).
    Raises :class:`ChecksumMismatchError` on a hash mismatch (the part is deleted, since a
    resume could never fix it) and :class:`DownloadError` on a non-retryable HTTP error or
    after ``retries`` consecutive attempts without progress (the part is kept, so running
    again resumes).
    """
    dest = Path(dest)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"{url}: only http:// and https:// URLs are supported")
    expected = sha256.strip().lower()
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")

    if dest.is_file():
        if not expected:
            log.warning("%s: reusing %s unverified (data.url.sha256 is empty)", url, dest)
            return dest
        actual = file_sha256(dest)
        if actual == expected:
            log.info("%s: reusing verified %s", url, dest)
            return dest
        log.warning("%s: has SHA-256 %s, expected %s; downloading again", dest, actual, expected)

    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and _read_meta(meta).get("url") != url:
        log.warning("%s: left over from another URL; starting over", part)
        _discard(part, meta)

    failures = 0
    attempts = 0
    while True:
        attempts += 1
        before = _size(part)
        try:
            _attempt(url, part, meta, timeout_s, progress)
            break
        except _Retry as exc:
            failures = 0 if _size(part) > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"{url}: giving up after {attempts} attempts ({failures} in a row without "
                    f"progress); last error: {exc}; {_size(part)} bytes kept in {part}, "
                    "run again to resume"
                ) from exc
            delay = min(max_backoff_s, backoff_s * 2 ** max(failures - 1, 0))
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, max_backoff_s))
            log.warning("%s: %s; retrying in %.1f s (attempt %d)", url, exc, delay, attempts + 1)
            sleep(delay)

    actual = file_sha256(part)
    if expected and actual != expected:
        _discard(part, meta)
        raise ChecksumMismatchError(url, expected, actual)
    if not expected:
        log.warning("%s: not verified; pin data.url.sha256: %s in params.yaml", url, actual)
    os.replace(part, dest)
    _discard(meta)
    log.info("%s: downloaded %d bytes to %s", url, _size(dest), dest)
    return dest
