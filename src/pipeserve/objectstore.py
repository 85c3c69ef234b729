"""Model repositories in object storage: ``s3://`` (and any fsspec URL) fetched to a verified local folder.

``pipeserve serve s3://models/iris/`` serves what KServe's storage initializer would fetch for
the same ``storageUri``: every object under the prefix is downloaded, keeping its path relative
to the prefix, into a cache folder, then every model directory found there is checked against
its model card's sha256 (:func:`pipeserve.modelcard.verify_files`). Only a download that
verifies replaces the cached copy, so a torn or tampered download is never served.

Endpoint and credentials come from where boto3 and s3fs read them: the standard AWS variables
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``), ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an S3-compatible
store such as MinIO or versitygw, ``AWS_PROFILE`` and ``~/.aws/``; or ``storage_options``, passed
to fsspec as they are (e.g. ``{"endpoint_url": "http://127.0.0.1:7070", "key": ..., "secret": ...}``).
``s3://`` needs the ``s3fs`` package, ``gs://`` needs ``gcsfs``.

This module is kept apart from :mod:`pipeserve.storage` (storage URIs as KServe understands
them, embedded in the pipeline's emit step) so the pipeline steps do not ship it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, NotFound, PipeserveError

__all__ = ["ENV_MODEL_CACHE", "ObjectStoreError", "cache_dir_for", "fetch_model_repository", "is_remote",
           "local_model_path"]

#: Where downloaded model repositories are kept (default ``$XDG_CACHE_HOME/pipeserve/models``).
ENV_MODEL_CACHE = "PIPESERVE_MODEL_CACHE"

# Schemes fetched through fsspec; anything else with "://" is refused with the list.
_FSSPEC_SCHEMES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


class ObjectStoreError(PipeserveError):
    """The object store could not be read: unreachable endpoint, refused credentials, failed download."""


def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL to fetch (``s3://…``, ``gs://…``) rather than a local path."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def local_model_path(location: str | os.PathLike[str], *, cache_dir: Path | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> Path:
    """The local folder to serve for ``location``: a path as it is, a URL fetched and verified.

    This is the one place the CLI resolves a model location: a local path or ``file://`` URI is
    returned unchanged (the server verifies it when it loads), an ``s3://``/``gs://`` URI is
    downloaded by :func:`fetch_model_repository`.

    Args:
        location: A model directory or repository: path, ``file://`` URI or object-store URI.
        cache_dir: Cache root for downloads (default: :func:`cache_dir_for`'s).
        storage_options: fsspec options for the object store (endpoint, credentials).

    Raises:
        ConfigError: An unsupported scheme, or the fsspec backend for it is not installed.
        NotFound: Nothing is stored under the URI.
        ObjectStoreError: The store is unreachable or refused the request.
        IntegrityError: A downloaded file does not match its model card.
    """
    text = os.fspath(location)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(text).path))
    if not is_remote(text):
        return Path(text)
    return fetch_model_repository(text, cache_dir=cache_dir, storage_options=storage_options)


def cache_dir_for(uri: str, cache_root: Path | None = None) -> Path:
    """The folder a download of ``uri`` lands in: ``<root>/<scheme>/<bucket>/<path>-<hash>``.

    The root is ``cache_root``, else ``$PIPESERVE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/pipeserve/models``
    (``~/.cache/pipeserve/models``). The short hash keeps two URIs that differ only in characters
    a file name cannot hold apart.
    """
    root = cache_root or _default_cache_root()
    scheme, rest = uri.split("://", 1)
    parts = [p for p in rest.strip("/").split("/") if p not in ("", ".", "..")]
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:10]
    leaf = f"{parts[-1] if parts else 'root'}-{digest}"
    return root.joinpath(scheme, *parts[:-1], leaf)


def fetch_model_repository(uri: str, *, cache_dir: Path | None = None,
                           storage_options: Mapping[str, Any] | None = None) -> Path:
    """Download every object under ``uri`` into the cache, verify it, and return the local folder.

    The layout is the one KServe's storage initializer writes to ``/mnt/models``: each object's key
    relative to the URI's prefix. The result is a model directory (it holds ``model-card.json``)
    or a model repository (its sub-folders do); every model directory in it is verified against
    its card's sha256 before the download replaces the cached copy.

    Args:
        uri: ``s3://bucket/prefix/`` (a trailing slash or not) or another fsspec URL.
        cache_dir: Cache root (default: ``$PIPESERVE_MODEL_CACHE`` or ``~/.cache/pipeserve/models``).
        storage_options: fsspec options (e.g. ``endpoint_url``, ``key``, ``secret``); by default
            the backend reads the standard AWS environment variables.

    Raises:
        ConfigError: An unsupported scheme, or its fsspec backend is missing.
        NotFound: No object under ``uri``.
        ObjectStoreError: The store is unreachable or refused the request.
        IntegrityError: A file does not match its model card (the cached copy is left as it was).
        UserError: No model card in the download.
    """
    from pipeserve.modelcard import find_model_dirs, read_card, verify_files

    fs, prefix = _filesystem(uri, storage_options)
    prefix = prefix.rstrip("/")
    keys = _list(fs, uri, prefix)
    dest = cache_dir_for(uri, cache_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    try:
        for key in keys:
            rel = key[len(prefix):].lstrip("/") if key != prefix else Path(key).name
            target = partial / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(key, str(target))
            except OSError as exc:
                raise ObjectStoreError(f"Downloading {_url(uri, key)} failed: {exc}") from exc
        try:
            for model_dir in find_model_dirs(partial):
                verify_files(model_dir, read_card(model_dir))
        except PipeserveError as exc:  # name the URI, not the download folder that is about to go
            raise type(exc)(str(exc).replace(str(partial), uri.rstrip("/"))) from exc
        _replace(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def _default_cache_root() -> Path:
    env = os.environ.get(ENV_MODEL_CACHE)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pipeserve" / "models"


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in _FSSPEC_SCHEMES:
        raise ConfigError(f"Cannot fetch {uri!r}: expected a local path, file://, or one of "
                          f"{', '.join(f'{s}://' for s in _FSSPEC_SCHEMES)}. Got the scheme {scheme}:// instead.")
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except ImportError as exc:
        raise ConfigError(f"Cannot fetch {uri!r}: {scheme}:// needs the {_FSSPEC_SCHEMES[scheme]} package "
                          f"(pip install {_FSSPEC_SCHEMES[scheme]}).") from exc


def _list(fs: Any, uri: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` (a single object if ``prefix`` names one)."""
    try:
        keys = [k for k in fs.find(prefix, detail=False) if not k.endswith("/")]
    except FileNotFoundError as exc:
        raise NotFound(f"Nothing is stored under {uri} ({exc}). Check the bucket and path.") from exc
    except (OSError, ValueError) as exc:
        raise ObjectStoreError(f"Cannot list {uri}: {exc}. Check the endpoint (AWS_ENDPOINT_URL) and the "
                               "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).") from exc
    except Exception as exc:  # botocore's connection and auth errors are not OSErrors
        raise ObjectStoreError(f"Cannot list {uri}: {type(exc).__name__}: {exc}. Check the endpoint "
                               "(AWS_ENDPOINT_URL) and the credentials (AWS_ACCESS_KEY_ID, "
                               "AWS_SECRET_ACCESS_KEY).") from exc
    if not keys:
        raise NotFound(f"Nothing is stored under {uri}. Upload the model repository there (e.g. the build/model "
                       "folder of `pipeserve run`), or check the bucket and path.")
    return sorted(keys)


def _url(uri: str, key: str) -> str:
    return f"{uri.split('://', 1)[0]}://{key}"


def _replace(new: Path, dest: Path) -> None:
    """Put ``new`` at ``dest``, moving the old copy aside first, so ``dest`` is never half-written."""
    old = dest.with_name(f"{dest.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
