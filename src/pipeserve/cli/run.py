"""`pipeserve run`: train, evaluate, package and emit an InferenceService, locally via kfp.local."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeserve.catalog import BUILTIN_DATASETS, TASKS

SERVING_TARGETS = ("triton-gpu", "triton-cpu", "pipeserve")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "run",
        help="run the pipeline locally: train, evaluate, package, emit an InferenceService",
        description="Run the train_and_serve pipeline on this machine through kfp.local (no cluster). "
        "Writes OUTPUT/model (a Triton model repository with ONNX, skops and model-card.json), "
        "OUTPUT/inferenceservice.yaml, OUTPUT/metrics.json and OUTPUT/model-card.md.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", "-d", default="iris", metavar="SOURCE",
                      help=f"built-in dataset ({', '.join(BUILTIN_DATASETS)}), a CSV/Parquet path, or an "
                      "fsspec URL (s3://, gs://, https://) (default: iris)")
    data.add_argument("--target", help="target column (required for files)")
    data.add_argument("--task", choices=TASKS, help="default: inferred from the target")
    data.add_argument("--test-size", type=float, default=0.2, help="held-out fraction (default: 0.2)")
    data.add_argument("--seed", type=int, default=42, help="seed of the train/test split (default: 42)")
    model = parser.add_argument_group("model")
    model.add_argument("--estimator", "-e", help="logistic_regression (default), random_forest, "
                       "hist_gradient_boosting; regression: ridge (default), random_forest, hist_gradient_boosting")
    model.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                       help="hyperparameter, repeatable (e.g. -p C=0.5 -p max_iter=200)")
    model.add_argument("--model-name", help="model name (default: the dataset name)")
    model.add_argument("--model-version", default="1", help="model version, a positive integer (default: 1)")
    model.add_argument("--triton-max-batch-size", type=int, default=0,
                       help="Triton max_batch_size; >0 enables dynamic batching (default: 0)")
    serving = parser.add_argument_group("serving (the emitted InferenceService)")
    target = serving.add_mutually_exclusive_group()
    target.add_argument("--cpu", action="store_true", help="serve the ONNX model on Triton without a GPU")
    target.add_argument("--serving-target", choices=SERVING_TARGETS, default=None,
                        help="default: triton-gpu (ONNX on kserve-tritonserver with one GPU)")
    serving.add_argument("--runtime-version", default="", metavar="TAG",
                         help="image tag of the serving runtime, e.g. Triton 24.08-py3; the ONNX file is "
                         "converted for the ONNX Runtime in it (default: 23.05-py3, what KServe 0.21 runs)")
    serving.add_argument("--namespace", default="", help="namespace of the InferenceService")
    serving.add_argument("--min-replicas", type=int, default=1)
    serving.add_argument("--max-replicas", type=int, default=3)
    serving.add_argument("--storage-uri", default="",
                         help="storageUri for the manifest (e.g. s3://bucket/models/iris/ after uploading "
                         "OUTPUT/model there); default: file:// URI of OUTPUT/model")
    parser.add_argument("--output", "-o", type=Path, default=Path("build"), help="output folder (default: build)")
    parser.add_argument("--verbose", "-v", action="store_true", help="stream KFP's full logs")
    parser.add_argument("--no-smoke", dest="smoke", action="store_false",
                        help="skip the smoke inference through a local v2 server at the end")
    parser.set_defaults(func=_run, command="run")
    return parser


def _validate(args: argparse.Namespace) -> tuple[str, str]:
    """Fail fast, in one line, on anything the pipeline would only reject minutes later."""
    from pipeserve import data, training
    from pipeserve.kube import DeploymentSpec
    from pipeserve.workflow import default_model_name

    ds = data.load_dataset(args.dataset, target=args.target, task=args.task)
    data.split_dataset(ds, test_size=args.test_size, random_state=args.seed)
    training.make_estimator(ds.task, args.estimator or training.DEFAULT_ESTIMATOR[ds.task],
                            training.parse_params(args.param))
    spec = DeploymentSpec.from_options(target=_serving_target(args), namespace=args.namespace,
                                       min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                                       runtime_version=args.runtime_version)
    from pipeserve import runtimes

    runtimes.onnx_target(spec.runtime, spec.runtime_version)
    name = args.model_name or default_model_name(args.dataset)
    from pipeserve.packaging import PackageRequest, _check_request

    _check_request(PackageRequest(name=name, version=args.model_version, task=ds.task, estimator={},
                                  metrics={}, feature_names=[], data={},
                                  max_batch_size=args.triton_max_batch_size))
    return ds.task, name


def _serving_target(args: argparse.Namespace) -> str:
    return "triton-cpu" if args.cpu else (args.serving_target or "triton-gpu")


def _run(args: argparse.Namespace) -> int:
    from pipeserve import training
    from pipeserve.localrun import RunOptions, run_pipeline

    task, name = _validate(args)
    output = args.output.resolve()
    arguments = {
        "source": args.dataset,
        "target": args.target or "",
        "task": task,
        "estimator": args.estimator or "",
        "params_json": json.dumps(training.parse_params(args.param)),
        "model_name": name,
        "model_version": args.model_version,
        "test_size": args.test_size,
        "random_state": args.seed,
        "serving_target": _serving_target(args),
        "runtime_version": args.runtime_version,
        "namespace": args.namespace,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "storage_uri": args.storage_uri or (output / "model").as_uri(),
        "triton_max_batch_size": args.triton_max_batch_size,
    }
    print(f"pipeserve run: {name} from {args.dataset} ({task}) on kfp.local", file=sys.stderr)
    result = run_pipeline(RunOptions(output=output, arguments=arguments, verbose=args.verbose))
    _summary(result, arguments, Path.cwd())
    if args.smoke:
        _smoke(result)
    return 0


def _example_row(result) -> str:  # type: ignore[no-untyped-def]
    from pipeserve import data

    X, _, _ = data.read_split_frame(result.test_data, result.card.data["target"])
    return json.dumps([[round(float(v), 4) for v in X[0]]])


def _smoke(result) -> None:  # type: ignore[no-untyped-def]
    from pipeserve import data
    from pipeserve.smoke import smoke_inference

    X, y, _ = data.read_split_frame(result.test_data, result.card.data["target"])
    rows = X[:3]
    print(f"\nSmoke test: pipeserve serve {_rel(result.repository, Path.cwd())}/ on a free port, 3 test rows …",
          flush=True)
    smoke = smoke_inference(result.repository, result.card.name, rows)
    primary = result.card.outputs[0].name
    print(f"  POST {smoke.url}/v2/models/{smoke.model}/infer -> {primary} {smoke.outputs[primary]} "
          f"(true: {y[:3].tolist()}); server started, answered and stopped in {smoke.seconds:.1f} s")


def _rel(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def _summary(result, arguments: dict, cwd: Path) -> None:  # type: ignore[no-untyped-def]
    card = result.card
    metrics = " · ".join(f"{k} {v:.3f}" for k, v in sorted(card.metrics.items()))
    parity = card.parity
    if card.task == "classification":
        parity_txt = f"{parity['label_mismatches']} label mismatches, max |Δp| {parity['max_abs_probability_diff']:.1e}"
    else:
        parity_txt = f"max |Δ| {parity['max_abs_diff']:.1e}"
    repo, manifest = _rel(result.repository, cwd), _rel(result.manifest, cwd)
    steps = " · ".join(f"{step} {seconds:.1f} s" for step, seconds in result.step_seconds.items())
    onnx = (f"IR {card.onnx['ir_version']}, opset {card.onnx['opsets'].get('ai.onnx')}, loads in ONNX Runtime >= "
            f"{card.onnx['min_onnxruntime']} (packaged for {card.onnx['packaged_for']})")
    print(f"""
Model {card.name} v{card.version}: {card.estimator['name']} ({card.task}), in {result.seconds:.1f} s
  steps              {steps}
  metrics            {metrics}
  model repository   {_rel(result.model_dir, cwd)}/  (ONNX for Triton, skops, model-card.json; parity: {parity_txt})
  ONNX               {onnx}
  InferenceService   {manifest}  ({arguments['serving_target']}, storageUri {arguments['storage_uri']})
  model card         {_rel(result.model_dir.parent.parent / 'model-card.md', cwd)}
  KFP log            {_rel(result.log, cwd)}

Next:
  pipeserve serve {repo}                       # v2 inference server on http://127.0.0.1:8080
  pipeserve predict {card.name} --url http://127.0.0.1:8080 '{_example_row(result)}'
  pipeserve manifest {_rel(result.model_dir, cwd)} --storage-uri s3://BUCKET/PATH/   # after uploading {repo}/
  kubectl apply -f {manifest}
  pipeserve compile                                   # pipeline YAML to upload in the KFP UI""")
