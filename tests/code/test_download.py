"""Download against a loopback HTTP server: resume, retry/backoff, checksum, reuse."""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.core.config import DataParams, UrlParams
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.sources.download import ChecksumMismatchError, DownloadError, download
from genreflow.sources.manifest import read_manifest
from genreflow.sources.stage import fetch

PAYLOAD = random.Random(0).randbytes(200_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; it records each request."""

    payload: bytes = PAYLOAD
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    drop_after: int | None = None  # first full-body response stops after this many bytes
    ignore_range: bool = False
    requests: list[dict[str, str | None]] = field(default_factory=list)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(
                {
                    "path": self.path,
                    "range": self.headers.get("Range"),
                    "if_range": self.headers.get("If-Range"),
                }
            )
            if state.statuses:
                code, headers = state.statuses.pop(0)
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, total = state.payload, len(state.payload)
            rng = self.headers.get("Range")
            if rng and not state.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                body = body[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            if state.drop_after is not None:
                cut, state.drop_after = state.drop_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body disconnect
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # the deliberate disconnects would print tracebacks otherwise


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ServerState]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = ServerState()
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _dl(url: str, dest: Path, sha: str, sleeps: list[float], **kw) -> Path:
    kw.setdefault("progress", False)
    return download(url, dest, sha, sleep=sleeps.append, timeout_s=5.0, **kw)


def test_plain_download_is_verified_and_placed(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    dest = tmp_path / "dl" / "genres.tar.gz"
    out = _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps, progress=True)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("genres.tar.gz.part").exists()
    assert [r["range"] for r in state.requests] == [None]
    assert sleeps == []


def test_checksum_mismatch_raises_and_keeps_nothing(server, tmp_path: Path, sleeps) -> None:
    url, _ = server
    dest = tmp_path / "genres.tar.gz"
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as exc:
        _dl(f"{url}/genres.tar.gz", dest, wrong, sleeps)
    msg = str(exc.value)
    assert f"{url}/genres.tar.gz" in msg and wrong in msg and PAYLOAD_SHA in msg
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a .part survives


def test_interrupted_transfer_resumes_with_range(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.drop_after = 70_000
    dest = tmp_path / "genres.tar.gz"
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps)
    assert [r["range"] for r in state.requests] == [None, "bytes=70000-"]
    assert state.requests[1]["if_range"] == '"v1"'
    assert dest.stat().st_size == len(PAYLOAD)
    assert file_sha256(dest) == PAYLOAD_SHA
    assert len(sleeps) == 1  # one retry after the dropped connection


def test_resume_after_a_killed_run(server, tmp_path: Path, sleeps) -> None:
    """A .part left by an earlier process (with its metadata) is continued, not restarted."""
    url, state = server
    state.drop_after = 50_000
    dest = tmp_path / "genres.tar.gz"

    def killed(_: float) -> None:  # the process dies while waiting to retry
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleep=killed, progress=False)
    part = tmp_path / "genres.tar.gz.part"
    assert part.stat().st_size == 50_000 and not dest.exists()
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps)
    assert state.requests[-1]["range"] == "bytes=50000-"
    assert file_sha256(dest) == PAYLOAD_SHA and not part.exists()


def test_giving_up_keeps_the_part_for_the_next_run(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.drop_after = 40_000
    dest = tmp_path / "genres.tar.gz"
    # first attempt: 40 000 bytes then a drop; then the host goes down

    def down_after_first(delay: float) -> None:
        sleeps.append(delay)
        if len(state.requests) == 1:
            state.statuses.extend([(502, {})] * 5)

    with pytest.raises(DownloadError, match=r"40000 bytes kept in .*genres\.tar\.gz\.part"):
        download(
            f"{url}/genres.tar.gz",
            dest,
            PAYLOAD_SHA,
            retries=1,
            sleep=down_after_first,
            progress=False,
        )
    assert sleeps == [1.0, 1.0]  # after the drop (progress resets the count), after one 502
    assert (tmp_path / "genres.tar.gz.part").stat().st_size == 40_000
    state.statuses.clear()
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, [])
    assert state.requests[-1]["range"] == "bytes=40000-"
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.drop_after = 30_000
    state.ignore_range = True
    dest = tmp_path / "genres.tar.gz"
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps)
    assert state.requests[1]["range"] == "bytes=30000-"  # asked for a range, got a 200
    assert dest.read_bytes() == PAYLOAD  # not 30 000 bytes twice


def test_complete_part_answered_416_is_finalised(server, tmp_path: Path, sleeps) -> None:
    """A run killed after the last byte but before the rename: the server answers 416."""
    url, state = server
    part = tmp_path / "x.bin.part"
    part.write_bytes(PAYLOAD)
    (tmp_path / "x.bin.part.json").write_text(f'{{"url": "{url}/x.bin"}}')
    _dl(f"{url}/x.bin", tmp_path / "x.bin", PAYLOAD_SHA, sleeps)
    assert state.requests[-1]["range"] == f"bytes={len(PAYLOAD)}-"
    assert (tmp_path / "x.bin").read_bytes() == PAYLOAD


def test_part_from_another_url_is_discarded(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    (tmp_path / "g.tgz.part").write_bytes(b"stale bytes from elsewhere")
    (tmp_path / "g.tgz.part.json").write_text('{"url": "http://example.invalid/g.tgz"}')
    _dl(f"{url}/g.tgz", tmp_path / "g.tgz", PAYLOAD_SHA, sleeps)
    assert state.requests[0]["range"] is None
    assert (tmp_path / "g.tgz").read_bytes() == PAYLOAD


def test_503_is_retried_with_exponential_backoff(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.statuses = [(503, {}), (503, {}), (500, {})]
    dest = tmp_path / "genres.tar.gz"
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps, backoff_s=0.5)
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(state.requests) == 4
    assert dest.read_bytes() == PAYLOAD


def test_retry_after_header_is_respected(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.statuses = [(429, {"Retry-After": "7"})]
    _dl(f"{url}/a.tgz", tmp_path / "a.tgz", PAYLOAD_SHA, sleeps)
    assert sleeps == [7.0]


def test_gives_up_after_retries(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.statuses = [(503, {})] * 10
    with pytest.raises(DownloadError, match=r"giving up after 3 attempts.*HTTP 503"):
        _dl(f"{url}/a.tgz", tmp_path / "a.tgz", PAYLOAD_SHA, sleeps, retries=2)
    assert sleeps == [1.0, 2.0]
    assert len(state.requests) == 3
    assert not (tmp_path / "a.tgz").exists()


def test_404_is_not_retried(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    state.statuses = [(404, {})]
    with pytest.raises(DownloadError, match=r"a\.tgz: HTTP 404"):
        _dl(f"{url}/a.tgz", tmp_path / "a.tgz", PAYLOAD_SHA, sleeps)
    assert sleeps == [] and len(state.requests) == 1


def test_connection_refused_is_retried(tmp_path: Path, sleeps) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="giving up after 2 attempts"):
        _dl(f"http://127.0.0.1:{port}/a.tgz", tmp_path / "a.tgz", PAYLOAD_SHA, sleeps, retries=1)
    assert sleeps == [1.0]


def test_existing_verified_file_is_reused(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    dest = tmp_path / "genres.tar.gz"
    dest.write_bytes(PAYLOAD)
    assert _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps) == dest
    assert state.requests == []


def test_existing_file_with_wrong_hash_is_replaced(server, tmp_path: Path, sleeps) -> None:
    url, state = server
    dest = tmp_path / "genres.tar.gz"
    dest.write_bytes(b"corrupted earlier")
    _dl(f"{url}/genres.tar.gz", dest, PAYLOAD_SHA, sleeps)
    assert len(state.requests) == 1
    assert dest.read_bytes() == PAYLOAD


def test_non_http_url_is_rejected(tmp_path: Path, sleeps) -> None:
    with pytest.raises(DownloadError, match="only http"):
        _dl("ftp://127.0.0.1/a.tgz", tmp_path / "a.tgz", PAYLOAD_SHA, sleeps)


# --------------------------------------------------------------------------- fetch(source=url)
def _tiny_gtzan_tar() -> bytes:
    buf = io.BytesIO()
    tone = (0.1 * np.sin(np.arange(800) * 0.3)).astype(np.float32)
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("genres/blues/blues.00000.au", "genres/jazz/jazz.00000.au"):
            audio = io.BytesIO()
            sf.write(audio, tone, 8000, format="AU", subtype="PCM_16")
            info = tarfile.TarInfo(name)
            info.size = len(audio.getvalue())
            tf.addfile(info, io.BytesIO(audio.getvalue()))
    return buf.getvalue()


def test_fetch_from_url_downloads_extracts_and_caches(server, tmp_path: Path) -> None:
    url, state = server
    state.payload = _tiny_gtzan_tar()
    sha = hashlib.sha256(state.payload).hexdigest()
    layout = Layout(tmp_path / "repo")
    params = DataParams(
        source="url",
        genres=("blues", "jazz"),
        url=UrlParams(url=f"{url}/genres.tar.gz", sha256=sha, retries=1, timeout_s=5.0),
    )
    manifest = fetch(params, layout, progress=False)
    rows = read_manifest(manifest)
    assert [(r["genre"], r["track_id"]) for r in rows] == [
        ("blues", "blues.00000"),
        ("jazz", "jazz.00000"),
    ]
    assert rows[0]["path"] == "data/raw/genres/blues/blues.00000.au"
    cached = layout.downloads_dir / "genres.tar.gz"
    assert file_sha256(cached) == sha
    assert [p.name for p in layout.downloads_dir.iterdir()] == ["genres.tar.gz"]  # no scratch
    fetch(params, layout, progress=False)  # second run reuses the cached archive
    assert len(state.requests) == 1
