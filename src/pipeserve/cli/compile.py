"""`pipeserve compile`: write the pipeline YAML to upload in the Kubeflow Pipelines UI."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "compile",
        help="compile the pipeline to YAML for the KFP UI (and KFP Pipeline resources for kubectl)",
        description="Compile the train_and_serve pipeline. Upload OUTPUT in the Kubeflow Pipelines UI "
        "(Pipelines → Upload pipeline), or apply the --kubernetes-manifest with kubectl on KFP's "
        "Kubernetes-native API mode.",
    )
    parser.add_argument("--output", "-o", type=Path, default=Path("train_and_serve.yaml"),
                        help="pipeline YAML to write (default: train_and_serve.yaml)")
    parser.add_argument("--kubernetes-manifest", type=Path, default=None, metavar="PATH",
                        help="also write KFP Pipeline + PipelineVersion resources to PATH")
    parser.set_defaults(func=_run, command="compile")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pipeserve.localrun import compile_pipeline

    for path in compile_pipeline(args.output, args.kubernetes_manifest):
        print(f"wrote {path}")
    return 0
