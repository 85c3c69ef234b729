"""`pipeserve doctor`: check a cluster before deploying to it (the preflight `deploy` runs first)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeserve.cli.manifest import add_spec_arguments


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "doctor",
        help="Check that the current cluster can serve a model: KServe, runtime, GPUs, rights, storage, mode.",
        description="Run the preflight checks `pipeserve deploy` runs before applying anything: KServe CRDs and "
        "their version, the target's runtime (present, serving the format, able to load the model's ONNX), GPU "
        "capacity for GPU targets, your rights on InferenceServices (SelfSubjectAccessReview), the storage "
        "ServiceAccount and Secret, and whether the deployment mode's parts (Knative, KEDA) are installed. "
        "Exit 0 when every check passes (or is skipped for lack of rights), 1 otherwise.",
    )
    parser.add_argument("model_path", type=Path, nargs="?", metavar="MODEL_PATH",
                        help="Optional: a packaged model, to check that the runtime can load it.")
    parser.add_argument("--model", metavar="NAME", help="Which model of the repository (when it holds several).")
    add_spec_arguments(parser)
    parser.add_argument("--context", help="kubeconfig context (default: the current one).")
    parser.set_defaults(func=_run, command="doctor")
    return parser


def preflight(args: argparse.Namespace, cluster, card=None):  # type: ignore[no-untyped-def]
    """Run the checks for the parsed options; return them (used by `deploy` too)."""
    from pipeserve.cli.manifest import spec_from_args
    from pipeserve.kube.doctor import Preflight, run_checks

    spec = spec_from_args(args)
    return run_checks(cluster, Preflight(spec, spec.namespace or cluster.namespace, card))


def _run(args: argparse.Namespace) -> int:
    from pipeserve.kube.client import Cluster
    from pipeserve.kube.render import select_model

    card = select_model(args.model_path, args.model)[1] if args.model_path else None
    cluster = Cluster(args.context).connect()
    checks = preflight(args, cluster, card)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.failed]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (f", {len(failed)} failed" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0
