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
        description="Render the model's InferenceService (as `pipeserve manifest` does), apply it with "
        "server-side apply, wait until it is Ready, send one v2 inference and print the URL. Needs a "
        "kubeconfig (or in-cluster credentials) and KServe 0.21 on the cluster.",
    )
    add_model_arguments(parser)
    add_spec_arguments(parser)
    c = parser.add_argument_group("cluster")
    c.add_argument("--context", help="kubeconfig context (default: the current one).")
    c.add_argument("--timeout", type=float, default=600, help="Seconds to wait for Ready (default: %(default)s).")
    c.add_argument("--dry-run", action="store_true", help="Print what would be applied; do not contact a cluster.")
    c.add_argument("--no-smoke", dest="smoke", action="store_false", help="Skip the smoke inference.")
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
    from pipeserve.kube.client import FIELD_MANAGER, Cluster, smoke_infer

    rendered = render(args)
    for note in rendered.warnings:
        _say(f"warning: {note}")
    docs, card, isvc = rendered.documents, rendered.card, rendered.inference_service
    if args.dry_run:
        names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        _say(f"dry run: would server-side apply (field manager {FIELD_MANAGER}) {names}")
        sys.stdout.write(to_yaml(docs))
        return 0
    cluster = Cluster(args.context).connect()
    namespace = isvc["metadata"].get("namespace") or cluster.namespace
    applied = cluster.apply(docs, force_conflicts=args.force_conflicts)
    _say(f"applied {', '.join(applied)} in namespace {namespace}")
    started = time.monotonic()
    state = cluster.wait_ready(
        isvc["metadata"]["name"],
        namespace,
        timeout_s=args.timeout,
        progress=lambda s: _say(f"[{time.monotonic() - started:5.0f}s] {s}"),
    )
    path = isvc["metadata"]["annotations"]["pipeserve.dev/v2-model-path"]
    model_name = path.rsplit("/", 1)[-1]
    url = state.url or ""
    if args.smoke:
        target = args.smoke_url or url
        if not target:
            _say("no status.url reported: smoke inference skipped (pass --smoke-url)")
        else:
            outputs = smoke_infer(target, model_name, card.n_features)
            _say(f"smoke inference ok: {outputs}")
    print(f"{url}{path}/infer" if url else f"{path}/infer (no status.url: reach it through the predictor Service)")
    return 0
