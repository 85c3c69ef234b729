"""From where MLflow keeps a version's artifacts to a ``storageUri`` KServe can fetch (pure).

KServe's storage initializer fetches ``s3://``, ``gs://``, ``https://`` (incl. Azure Blob),
``hdfs://``/``webhdfs://`` and ``pvc://``. MLflow also writes ``mlflow-artifacts:`` (artifacts
proxied by a tracking server, stored under its ``--artifacts-destination``), ``wasbs://`` (Azure)
and plain local paths; the first two are translated, the last cannot be fetched by a cluster.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pipeserve.errors import ConfigError

KSERVE_SCHEMES = ("s3://", "gs://", "https://", "http://", "hdfs://", "webhdfs://", "pvc://")
_WASBS = re.compile(r"wasbs?://(?P<container>[^@/]+)@(?P<account>[^/]+)(?P<path>/.*)?")


class UnfetchableStorage(ConfigError):
    """The version's artifacts live where a cluster cannot fetch them (a local store, no destination)."""


def kserve_storage_uri(source: str, what: str, artifacts_destination: str | None = None) -> str:
    """Return the ``storageUri`` for artifacts MLflow keeps at ``source``.

    Args:
        source: The version's artifact URI (the folder that holds ``<name>/``).
        what: The version, for messages (``iris/2``).
        artifacts_destination: The MLflow server's ``--artifacts-destination``; needed for
            ``mlflow-artifacts:`` sources.

    Raises:
        UnfetchableStorage: A local store, or an ``mlflow-artifacts:`` source without a usable
            destination.
    """
    if source.startswith("mlflow-artifacts:"):
        path = urlsplit(source).path.lstrip("/")
        if not artifacts_destination:
            raise UnfetchableStorage(
                f"{what} is stored through the MLflow server ({source}), a scheme KServe cannot fetch: set "
                "PIPESERVE_REGISTRY_ARTIFACTS (or --artifacts-destination) to the server's --artifacts-destination, "
                "e.g. s3://bucket/mlartifacts, to resolve it to the bucket path."
            )
        return kserve_storage_uri(f"{artifacts_destination.rstrip('/')}/{path}", what)
    wasbs = _WASBS.fullmatch(source)
    if wasbs:
        return f"https://{wasbs['account']}/{wasbs['container']}{wasbs['path'] or ''}"
    if source.startswith(KSERVE_SCHEMES):
        return source
    if source.startswith(("file:", "/")) or re.match(r"[A-Za-z]:[\\/]", source):
        raise UnfetchableStorage(
            f"{what} is in a local artifact store ({source}) that a cluster cannot fetch. Use an MLflow server "
            "whose --artifacts-destination (or --default-artifact-root) is s3:// or gs://, or copy the model "
            "folder to a bucket and pass that as --storage-uri."
        )
    scheme = source.split(":", 1)[0]
    raise UnfetchableStorage(f"{what} is stored at {source}; KServe cannot fetch {scheme}: URIs (it fetches "
                             f"{', '.join(s.rstrip('/') for s in KSERVE_SCHEMES)}).")
