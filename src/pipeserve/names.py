"""The names pipeserve hands to Kubernetes and KServe, and their formats (one place).

A model's name becomes a folder of the model repository, a URL path (``/v2/models/<name>``) and,
by default, the InferenceService name, which KServe validates as a DNS-1035 label. Packaging, the
deployment spec and the admission rules all check names here.
"""

from __future__ import annotations

import re

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # InferenceService names
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespaces
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_NAME_LENGTH = 63


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1035 label (KServe appends ``-predictor`` and more to it), or None.

    The reason reads after "<name> is ", e.g. ``not a DNS-1123 label starting with a letter ...; try 'iris'``.
    """
    if DNS1035_LABEL.match(name) and len(name) <= MAX_NAME_LENGTH:
        return None
    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:MAX_NAME_LENGTH].rstrip("-") or "model"
    return (
        "not a DNS-1123 label starting with a letter (lower-case letters, digits and '-', at most "
        f"{MAX_NAME_LENGTH} characters); try {suggestion!r}"
    )


def is_dns1123_label(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and DNS1123_LABEL.match(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and DNS1123_SUBDOMAIN.match(value) is not None
