"""Fail-fast reachability checks for the shared stores: the DVC remote and the MLflow server.

Why: the tools' own clients retry for minutes against a dead store (MLflow's HTTP client backs
off over several attempts, s3fs retries each object), and a retrain that trains for an hour
before discovering that ``dvc push`` cannot reach its remote has wasted the hour. These checks
run first, take a few seconds at most, and raise :class:`StoreUnreachable` with one line that
names the URL, which :mod:`genreflow.core.runner` prints as ``genreflow <command>: error: ...``.

They only prove that the store answers; they do not write to it (a check must never leave
debris in a shared store).
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genreflow.core.errors import GenreflowError

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # per connect / read; a store slower than this is treated as down


class StoreError(GenreflowError):
    """A shared store (DVC remote, MLflow tracking server) cannot be used."""


class StoreUnreachable(StoreError):
    """The store did not answer a cheap request in time, or refused it; the message names
    its URL."""


class StoreConfigError(StoreError):
    """The store's configuration itself is broken (e.g. the default remote is not defined)."""


def _one_line(exc: BaseException | str) -> str:
    """An exception's text on one line, so the runner's one-line contract holds."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- DVC remote
def check_dvc_remote(root: Path, timeout_s: float = TIMEOUT_S) -> None:
    """Raise :class:`StoreUnreachable` unless the default DVC remote of ``root`` answers.

    A local directory must exist and be writable; an S3 bucket (at its ``endpointurl``, if
    configured) must answer ``HeadBucket`` within ``timeout_s``. Other remote types are
    skipped with a logged note. No remote at all: nothing to check, returns ``None``. Which
    remote counts (and when its absence is an error) is decided by
    :func:`genreflow.retrain.remotes.default_remote`.
    """
    from genreflow.retrain.remotes import default_remote

    found = default_remote(root)
    if found is None:
        log.info("no DVC remote in %s; nothing to check", root)
        return
    name, remote, url = found.name, found.config, found.url
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("", "file"):
        _check_local_remote(name, url)
    elif scheme == "s3":
        _check_s3_remote(name, url, remote, timeout_s)
    else:
        log.info("DVC remote %r (%s): no reachability check for %r remotes", name, url, scheme)


def _check_local_remote(name: str, url: str) -> None:
    path = Path(urlsplit(url).path if url.startswith("file:") else url)
    if not path.is_dir():
        raise StoreUnreachable(
            f"DVC remote {name!r} at {url} is unreachable: the directory does not exist "
            "(mount it or create it)"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreUnreachable(f"DVC remote {name!r} at {url} is not writable by this user")


def _s3_client(remote: dict[str, Any], timeout_s: float) -> Any:
    """A boto3 S3 client configured like DVC's for this remote, with short timeouts and a
    single attempt (no retries: a down store must fail now, not after backoff)."""
    import boto3
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    core = botocore.session.get_session()
    if remote.get("credentialpath"):
        core.set_config_variable("credentials_file", str(remote["credentialpath"]))
    if remote.get("configpath"):
        core.set_config_variable("config_file", str(remote["configpath"]))
    session = boto3.session.Session(
        botocore_session=core, profile_name=remote.get("profile") or None
    )
    unsigned = remote.get("allow_anonymous_login") and session.get_credentials() is None
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        signature_version=UNSIGNED if unsigned else None,
    )
    return session.client(
        "s3",
        endpoint_url=remote.get("endpointurl") or None,
        region_name=remote.get("region") or None,
        aws_access_key_id=remote.get("access_key_id") or None,
        aws_secret_access_key=remote.get("secret_access_key") or None,
        aws_session_token=remote.get("session_token") or None,
        use_ssl=remote.get("use_ssl", True),
        verify=remote.get("ssl_verify"),
        config=config,
    )


def _check_s3_remote(name: str, url: str, remote: dict[str, Any], timeout_s: float) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket = urlsplit(url).netloc
    endpoint = remote.get("endpointurl")
    where = f"{url} (endpoint {endpoint})" if endpoint else url
    try:
        _s3_client(remote, timeout_s).head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = {
            "404": f"bucket {bucket!r} does not exist",
            "NoSuchBucket": f"bucket {bucket!r} does not exist",
            "403": "access denied (check the credentials and the bucket policy)",
        }.get(str(code), f"HTTP {status} {code}")
        raise StoreUnreachable(f"DVC remote {name!r} at {where}: {reason}") from exc
    except NoCredentialsError as exc:
        raise StoreUnreachable(
            f"DVC remote {name!r} at {where}: no AWS credentials found (set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or `dvc remote modify` its profile or keys)"
        ) from exc
    except (BotoCoreError, OSError) as exc:
        raise StoreUnreachable(
            f"DVC remote {name!r} at {where} is unreachable: {_one_line(exc)}"
        ) from exc


# --------------------------------------------------------------------------- MLflow server
def check_tracking_server(uri: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise :class:`StoreUnreachable` unless the MLflow server at ``uri`` answers ``/health``.

    Only ``http(s)://`` URIs name a server; anything else (``sqlite:///…``, a path) is a local
    store that the first MLflow call creates, so there is nothing to reach and this returns.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in ("http", "https"):
        log.debug("tracking URI %s is not a server; nothing to check", uri)
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise StoreUnreachable(
            f"MLflow tracking server {uri} is not healthy: GET {health} answered HTTP {exc.code}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise StoreUnreachable(
            f"MLflow tracking server {uri} is unreachable: GET {health} failed "
            f"within {timeout_s:g} s: {_one_line(reason)}"
        ) from exc
    if status != 200:
        raise StoreUnreachable(
            f"MLflow tracking server {uri} is not healthy: GET {health} answered HTTP {status}"
        )
