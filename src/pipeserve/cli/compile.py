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
        "Kubernetes-native API mode. By default every step runs on a stock Python image and pip-installs "
        "the pinned packages it imports; the first step carries the pipeserve modules the steps need "
        "and hands them to the others as an artifact. With --image the steps run on an image built from "
        "the project's Dockerfile and install nothing.",
    )
    parser.add_argument("--output", "-o", type=Path, default=Path("train_and_serve.yaml"),
                        help="pipeline YAML to write (default: train_and_serve.yaml)")
    parser.add_argument("--kubernetes-manifest", type=Path, default=None, metavar="PATH",
                        help="also write KFP Pipeline + PipelineVersion resources to PATH")
    parser.add_argument("--components-dir", type=Path, default=None, metavar="DIR",
                        help="also write each component alone to DIR/<name>.yaml "
                        "(for kfp.components.load_component_from_file)")
    parser.add_argument("--image", default=None, metavar="IMAGE",
                        help="run every step on IMAGE, built from the project's Dockerfile "
                        "(e.g. ghcr.io/pipeserve/pipeserve-runtime:0.1.0): the pods install nothing")
    parser.set_defaults(func=_run, command="compile")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pipeserve.compiler import compile_components, compile_pipeline
    from pipeserve.components import ComponentRuntime

    runtime = ComponentRuntime.prebuilt(args.image) if args.image is not None else ComponentRuntime()
    written = compile_pipeline(args.output, args.kubernetes_manifest, runtime)
    if args.components_dir is not None:
        written += compile_components(args.components_dir, runtime)
    for path in written:
        print(f"wrote {path}")
    return 0
