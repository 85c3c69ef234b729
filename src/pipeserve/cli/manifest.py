"""`pipeserve manifest`: render a model's InferenceService (and storage credentials) as YAML.

The manifest is built from the model card by :func:`pipeserve.kube.build_inference_service`,
checked strictly (:mod:`pipeserve.kube.schema`) and only then written, to stdout or ``--output``.
The deployment options are shared with ``pipeserve deploy`` (see :func:`add_spec_arguments`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeserve.errors import ConfigError, UserError

if TYPE_CHECKING:
    from pipeserve.kube import DeploymentSpec
    from pipeserve.kube.render import Rendered, S3Credentials

_EPILOG = """\
examples:
  pipeserve manifest build/model --storage-uri s3://models/iris/
  pipeserve manifest build/model --storage-uri s3://models/iris/ --target triton-cpu -o isvc.yaml
  pipeserve manifest build/model --storage-uri s3://models/iris/ --mode Knative --min-replicas 0 \\
      --canary-traffic-percent 10
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pipeserve manifest build/model \\
      --storage-uri s3://mlpipeline/iris/ --s3-credentials minio-creds \\
      --s3-endpoint minio-service.kubeflow:9000 --s3-no-https

Triton serves the model under its folder name in the repository (the model card's name), whatever
the InferenceService is called: the URL path is in the pipeserve.dev/v2-model-path annotation.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "manifest",
        help="Render the KServe InferenceService for a packaged model (YAML to stdout or a file).",
        description="Render the KServe InferenceService for a packaged model from its model card. The "
        "manifest is validated strictly (KServe CRD schema, unknown fields rejected) before it is written.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    add_spec_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, help="Write the YAML to this file instead of stdout.")
    parser.set_defaults(func=_run, command="manifest")
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model location arguments shared by `manifest` and `deploy`."""
    parser.add_argument(
        "model_path",
        type=Path,
        metavar="MODEL",
        help="A model directory (holding model-card.json), a model repository (its parent), or a registered "
        "version: NAME@ALIAS (iris@champion) or NAME/VERSION (iris/3), from --registry.",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="Which model of the repository to use when MODEL holds several.",
    )
    parser.add_argument(
        "--storage-uri",
        metavar="URI",
        help="Where the cluster fetches the model repository from (the folder holding <name>/), "
        "e.g. s3://models/iris/, gs://..., pvc://claim/path. Required for a folder; for a registered version "
        "the default is where the registry keeps it, when KServe can fetch that.",
    )
    parser.add_argument(
        "--registry",
        metavar="URI",
        help="The model registry a NAME@ALIAS or NAME/VERSION is read from (default $PIPESERVE_REGISTRY, else "
        "./mlflow.db); the version is downloaded and checked against its card.",
    )
    parser.add_argument(
        "--artifacts-destination",
        metavar="URI",
        help="The MLflow server's --artifacts-destination (s3://…), to turn its mlflow-artifacts: locations into "
        "the bucket path KServe fetches (default $PIPESERVE_REGISTRY_ARTIFACTS).",
    )


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the DeploymentSpec options shared by `manifest` and `deploy`."""
    from pipeserve.kube.spec import AUTOSCALERS, MODES, TARGETS

    g = parser.add_argument_group("deployment")
    g.add_argument("--target", choices=TARGETS, default="triton-gpu", help="Serving target (default: %(default)s).")
    g.add_argument("--name", help="InferenceService name (default: the model's name).")
    g.add_argument("--namespace", help="Namespace (default: none in the YAML; kubectl's current namespace).")
    g.add_argument("--mode", choices=MODES, default="Standard", help="KServe deployment mode (default: %(default)s).")
    g.add_argument("--autoscaler", choices=AUTOSCALERS, help="hpa (Standard), kpa (Knative), keda or none.")
    g.add_argument(
        "--scale-metric",
        help="hpa: cpu|memory; kpa: concurrency|rps; keda: gpu-utilization|triton-queue-time.",
    )
    g.add_argument("--scale-target", type=int, help="Target value per replica for the scale metric.")
    g.add_argument("--min-replicas", type=int, default=1, help="Minimum replicas (default: %(default)s).")
    g.add_argument("--max-replicas", type=int, default=3, help="Maximum replicas (default: %(default)s).")
    g.add_argument("--gpus", type=int, help="GPUs per replica (default: 1 for triton-gpu, else 0).")
    g.add_argument("--gpu-resource", default="nvidia.com/gpu", help="GPU resource name (default: %(default)s).")
    g.add_argument(
        "--node-selector", action="append", metavar="KEY=VALUE", help="Node selector entry (repeatable)."
    )
    g.add_argument(
        "--toleration", action="append", metavar="KEY[=VALUE][:EFFECT]", help="Toleration (repeatable)."
    )
    g.add_argument("--runtime-class", dest="runtime_class_name", help="runtimeClassName, e.g. nvidia.")
    g.add_argument("--cpu-request", help="CPU request, e.g. 500m.")
    g.add_argument("--cpu-limit", help="CPU limit, e.g. 2.")
    g.add_argument("--memory-request", help="Memory request, e.g. 1Gi.")
    g.add_argument("--memory-limit", help="Memory limit, e.g. 4Gi.")
    g.add_argument("--canary-traffic-percent", type=int, help="Traffic to the latest revision (Knative mode).")
    g.add_argument("--service-account", dest="service_account_name", help="ServiceAccount with storage credentials.")
    g.add_argument("--runtime-version", help="Runtime image tag override, e.g. 24.08-py3 for Triton.")
    g.add_argument("--prometheus-url", help="Prometheus server KEDA queries.")
    g.add_argument(
        "--no-prometheus-scraping",
        dest="prometheus_scraping",
        action="store_false",
        help="Do not ask KServe to add prometheus.io scrape annotations.",
    )
    g.add_argument("--pipeline-run-id", help="Lineage: pipeline run id (default: the model card's).")
    g.add_argument("--source-revision", help="Lineage: source revision (default: the model card's).")
    s3 = parser.add_argument_group(
        "S3 credentials (Secret + ServiceAccount in KServe's annotation format; keys from "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    )
    s3.add_argument("--s3-credentials", metavar="NAME", help="Also emit a Secret + ServiceAccount named NAME.")
    s3.add_argument("--s3-endpoint", metavar="HOST[:PORT]", help="S3 endpoint (MinIO), without scheme.")
    s3.add_argument("--s3-region", help="S3 region.")
    s3.add_argument("--s3-no-https", action="store_true", help="The endpoint speaks plain HTTP.")


def spec_from_args(args: argparse.Namespace) -> DeploymentSpec:
    """The checked DeploymentSpec the `--target`, `--mode`, ... options describe."""
    import dataclasses

    from pipeserve.kube import DeploymentSpec

    names = [f.name for f in dataclasses.fields(DeploymentSpec)
             if not f.name.startswith("_") and f.name not in ("node_selector", "tolerations")]
    return DeploymentSpec.from_options(node_selector=args.node_selector, tolerations=args.toleration,
                                       **{name: getattr(args, name) for name in names})


def render(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Rendered:
    """Render and check the documents the parsed `manifest`/`deploy` options describe.

    Args:
        args: Parsed arguments.
        environ: Where the S3 keys are read from (default: ``os.environ``, read here, not at import).
    """
    from pipeserve.kube.render import render_documents, select_model
    from pipeserve.registry import is_model_ref, resolve_temporary

    storage_uri = args.storage_uri
    if is_model_ref(args.model_path):
        with resolve_temporary(str(args.model_path), registry=args.registry,
                               artifacts_destination=args.artifacts_destination) as found:
            card = found.card
        if not storage_uri and found.storage_uri is None:
            raise ConfigError(str(found.storage_problem))
        storage_uri = storage_uri or found.storage_uri
    else:
        _, card = select_model(args.model_path, args.model)
        if not storage_uri:
            raise ConfigError("--storage-uri is required for a model folder: where the cluster fetches it from, "
                              "e.g. s3://models/iris/ after uploading the repository there.")
    return render_documents(card, storage_uri, spec_from_args(args), s3_from_args(args, environ))


def s3_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> S3Credentials | None:
    """The S3 credentials Secret the --s3-* flags ask for (keys from AWS_* in ``environ``), or None."""
    import os

    from pipeserve.kube.render import S3Credentials

    if args.s3_credentials:
        env = os.environ if environ is None else environ
        return S3Credentials(args.s3_credentials, env.get("AWS_ACCESS_KEY_ID", ""),
                             env.get("AWS_SECRET_ACCESS_KEY", ""), endpoint=args.s3_endpoint, region=args.s3_region,
                             use_https=not args.s3_no_https)
    if args.s3_endpoint or args.s3_region or args.s3_no_https:
        raise ConfigError("--s3-endpoint/--s3-region/--s3-no-https need --s3-credentials NAME.")
    return None


def _run(args: argparse.Namespace) -> int:
    from pipeserve.kube import to_yaml

    rendered = render(args)
    docs = rendered.documents
    for note in rendered.warnings:
        print(f"pipeserve manifest: warning: {note}", file=sys.stderr)
    text = to_yaml(docs)
    if args.output:
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
        except OSError as exc:
            raise UserError(f"Cannot write {args.output}: {exc.strerror}. Pick a writable path.") from exc
        print(f"wrote {args.output} ({', '.join(d['kind'] for d in docs)})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
