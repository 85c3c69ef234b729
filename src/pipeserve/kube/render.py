"""From a packaged model to the documents `manifest`, `deploy` and the pipeline write or apply.

One path for every caller: pick the model folder, check its files against the card, build the
InferenceService (and the S3 credentials pair when asked), run the strict checks, and only then
hand the documents over. The CLI only parses options and prints.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, UserError
from pipeserve.kube.builder import build_inference_service, build_s3_credentials
from pipeserve.kube.spec import DeploymentSpec
from pipeserve.modelcard import ModelCard, find_model_dirs, read_card, verify_files

# Whether render_documents runs the offline schema check when its caller does not say (offline_checks).
_OFFLINE_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("pipeserve_offline_checks", default=True)


@dataclass(frozen=True)
class S3Credentials:
    """The Secret + ServiceAccount pair KServe's storage initializer reads S3 keys from.

    Args:
        name: Name of both objects; the predictor runs as this ServiceAccount.
        access_key_id: ``AWS_ACCESS_KEY_ID``.
        secret_access_key: ``AWS_SECRET_ACCESS_KEY``.
        endpoint: ``host[:port]`` of a non-AWS endpoint (MinIO), without scheme.
        region: Bucket region.
        use_https: Whether the endpoint speaks HTTPS.
    """

    name: str
    access_key_id: str
    secret_access_key: str
    endpoint: str | None = None
    region: str | None = None
    use_https: bool = True


@dataclass(frozen=True)
class Rendered:
    """What :func:`render_documents` produced: Secret + ServiceAccount first when asked, then the ISVC."""

    documents: list[dict[str, Any]]
    warnings: list[str]
    card: ModelCard
    spec: DeploymentSpec

    @property
    def inference_service(self) -> dict[str, Any]:
        return self.documents[-1]


def select_model(path: Path, wanted: str | None = None) -> tuple[Path, ModelCard]:
    """The model folder at ``path`` (a model folder or a repository of several) and its verified card.

    Raises:
        UserError: no model there, several without ``wanted``, or ``wanted`` missing.
        IntegrityError: the files do not match the card (the manifest would advertise wrong sha256s).
    """
    dirs = find_model_dirs(path)
    names = ", ".join(p.name for p in dirs)
    if wanted:
        matches = [p for p in dirs if p.name == wanted]
        if not matches:
            raise ConfigError(f"No model {wanted!r} in the repository; it holds: {names}.")
        model_dir = matches[0]
    elif len(dirs) > 1:
        raise ConfigError(f"The repository holds several models ({names}); pick one with --model NAME.")
    else:
        model_dir = dirs[0]
    card = read_card(model_dir)
    verify_files(model_dir, card)
    return model_dir, card


@contextlib.contextmanager
def offline_checks(enabled: bool) -> Iterator[None]:
    """Whether :func:`render_documents` checks the documents offline, for the calls made inside.

    The pipeline's deploy step turns the check off: it applies with server-side strict field
    validation (the API server refuses what the CRD schema refuses), and its library leaves out
    the vendored CRD schemas (:mod:`pipeserve.kube.schema`) to keep the compiled pipeline small.
    """
    token = _OFFLINE_CHECKS.set(enabled)
    try:
        yield
    finally:
        _OFFLINE_CHECKS.reset(token)


def render_documents(card: ModelCard, storage_uri: str, spec: DeploymentSpec,
                     s3: S3Credentials | None = None) -> Rendered:
    """Build and strictly validate the documents that serve ``card``'s model from ``storage_uri``.

    Args:
        card: The model's verified card.
        storage_uri: Where KServe fetches the model.
        spec: How to serve it.
        s3: Also render this S3 credentials Secret + ServiceAccount (the predictor runs as it).

    The documents are checked offline (:mod:`pipeserve.kube.schema`: the vendored CRD schema,
    strict, and the admission rules) unless rendered inside ``offline_checks(False)``.

    Raises:
        ConfigError: a refused spec, runtime or storage URI, or ``s3`` disagreeing with the spec's
            ServiceAccount.
        UserError: a document fails the strict checks (a builder bug: nothing is returned).
    """
    docs: list[dict[str, Any]] = []
    if s3 is not None:
        if spec.service_account_name not in (None, s3.name):
            raise ConfigError(
                f"ServiceAccount {spec.service_account_name} and S3 credentials {s3.name} disagree; the predictor "
                "must use the ServiceAccount that holds the credentials. Drop one."
            )
        spec = dataclasses.replace(spec, service_account_name=s3.name)
        docs += build_s3_credentials(s3.name, access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
                                     endpoint=s3.endpoint, region=s3.region, use_https=s3.use_https,
                                     namespace=spec.namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs.append(build_inference_service(card, storage_uri, spec))
    if _OFFLINE_CHECKS.get():
        from pipeserve.kube.schema import validate_all

        errors = validate_all(docs, require_builtin_check=False)
        if errors:
            raise UserError("The rendered manifest fails the strict checks, nothing written: " + "; ".join(errors))
    return Rendered(docs, [str(w.message) for w in caught], card, spec.resolved())

