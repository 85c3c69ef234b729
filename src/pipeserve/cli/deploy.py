"""`pipeserve deploy`: apply a model's InferenceService, wait until Ready, smoke-test it over v2.

Same options as `pipeserve manifest`; the documents are rendered and strictly validated the same
way, then applied with server-side apply (field manager ``pipeserve``). ``--dry-run`` prints what
would be applied and touches no cluster. All cluster I/O goes through :mod:`pipeserve.kube.client`.
"""

from __future__ import annotations

import argparse
import sys
import time

from pipeserve.cli.manifest import add_model_arguments, add_spec_arguments, render


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "deploy",
        help="Apply the InferenceService to the current cluster, wait for Ready and run a smoke inference.",
        description="Render the model's InferenceService (as `pipeserve manifest` does), run the preflight "
        "checks of `pipeserve doctor`, apply it with server-side apply (strict field validation), wait until it "
        "is Ready, send one v2 inference and print the URL. Needs a kubeconfig (or in-cluster credentials) and "
        "KServe on the cluster. Exit 0 when Ready, 1 on a cluster failure or timeout (the message names the "
        "reason, e.g. the scheduler's), 2 when the manifest is refused (webhook or validation message verbatim).",
    )
    add_model_arguments(parser)
    add_spec_arguments(parser)
    c = parser.add_argument_group("cluster")
    c.add_argument("--context", help="kubeconfig context (default: the current one).")
    c.add_argument("--timeout", type=float, default=600, help="Seconds to wait for Ready (default: %(default)s).")
    c.add_argument("--dry-run", action="store_true", help="Print what would be applied; do not contact a cluster.")
    c.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="Wait until the InferenceService is Ready (default); --no-wait returns after the apply.")
    c.add_argument("--no-smoke", dest="smoke", action="store_false",
                   help="Skip the smoke inference (e.g. on a cluster whose pods are simulated).")
    c.add_argument(
        "--smoke-url",
        help="Base URL for the smoke inference when status.url is not reachable from here, e.g. "
        "http://localhost:8000 through `kubectl port-forward svc/<name>-predictor 8000:80`.",
    )
    c.add_argument("--force-conflicts", action="store_true", help="Take over fields another manager owns.")
    parser.set_defaults(func=_run, command="deploy")
    return parser


def _say(text: str) -> None:
    print(f"pipeserve deploy: {text}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from pipeserve.kube import to_yaml
    from pipeserve.kube.client import FIELD_MANAGER, Cluster
    from pipeserve.kube.deploy import deploy
    from pipeserve.smoke import smoke_infer

    rendered = render(args)
    for note in rendered.warnings:
        _say(f"warning: {note}")
    if args.dry_run:
        names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in rendered.documents)
        _say(f"dry run: would server-side apply (field manager {FIELD_MANAGER}) {names}")
        sys.stdout.write(to_yaml(rendered.documents))
        return 0
    started = time.monotonic()
    result = deploy(
        Cluster(args.context).connect(), rendered, wait=args.wait, timeout_s=args.timeout,
        force_conflicts=args.force_conflicts, smoke=smoke_infer if args.smoke else None, smoke_url=args.smoke_url,
        progress=lambda line: _say(f"[{time.monotonic() - started:5.0f}s] {line}"),
    )
    path = rendered.inference_service["metadata"]["annotations"]["pipeserve.dev/v2-model-path"]
    if result.url:
        print(result.url)
    elif args.wait:
        print(f"{path}/infer (no status.url: reach it through the predictor Service)")
    else:
        print(f"applied; not waiting (kubectl wait --for=condition=Ready inferenceservice/{result.name} "
              f"-n {result.namespace})")
    return 0
