"""Model storage URIs as KServe understands them."""

from __future__ import annotations

# KFP's default artifact store speaks S3, but KServe's storage initializer knows no minio:// scheme.
_REWRITES = {"minio://": "s3://"}


def storage_uri_for(artifact_uri: str) -> str:
    """The KServe ``storageUri`` for a KFP artifact URI.

    ``minio://b/k`` becomes ``s3://b/k``; a local path (kfp.local runs) becomes a ``file://`` URI,
    which KServe accepts but which only resolves where that path is mounted into the pod; other
    URIs are unchanged.
    """
    if artifact_uri.startswith("/"):
        from pathlib import Path

        return Path(artifact_uri).as_uri()
    for old, new in _REWRITES.items():
        if artifact_uri.startswith(old):
            return new + artifact_uri[len(old):]
    return artifact_uri
