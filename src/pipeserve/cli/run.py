"""`pipeserve run`: train (or search a grid), evaluate, package, register and gate, and emit an
InferenceService, locally via kfp.local."""

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
    model.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                       help="search these values, repeatable (e.g. --grid C=0.01,0.1,1 --grid max_iter=100,200): "
                       "every combination is scored by cross-validation on the training split (never the test "
                       "split), in parallel, and the best is trained")
    model.add_argument("--cv-folds", type=int, default=5, metavar="K",
                       help="cross-validation folds per grid candidate (default: 5)")
    model.add_argument("--model-name", help="model name (default: the dataset name)")
    model.add_argument("--model-version", default="1",
                       help="model version, a positive integer (default: 1; with --registry the registry numbers it)")
    model.add_argument("--triton-max-batch-size", type=int, default=0,
                       help="Triton max_batch_size; >0 enables dynamic batching (default: 0)")
    sizing = parser.add_argument_group("training resources (on a cluster; kfp.local runs on this machine)")
    sizing.add_argument("--train-cpu-request", default="1", metavar="CPU", help="(default: 1)")
    sizing.add_argument("--train-cpu-limit", default="2", metavar="CPU", help="(default: 2)")
    sizing.add_argument("--train-memory-request", default="2Gi", metavar="MEM", help="(default: 2Gi)")
    sizing.add_argument("--train-memory-limit", default="4Gi", metavar="MEM", help="(default: 4Gi)")
    sizing.add_argument("--train-node-selector", action="append", default=[], metavar="KEY=VALUE",
                        help="node label the training pods need, repeatable (a training node pool)")
    sizing.add_argument("--train-toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                        help="taint of that node pool the training pods tolerate, repeatable")
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
    registry = parser.add_argument_group("registry and gate")
    registry.add_argument("--registry", nargs="?", const="", default=None, metavar="URI",
                          help="register the model in this MLflow registry (sqlite:///path.db, a path, or "
                          "http(s)://host:port; no URI: $PIPESERVE_REGISTRY, else ./mlflow.db) as challenger, gate "
                          "it against the champion, and promote it and emit its InferenceService only if it passes "
                          "(a model held back is not an error: exit 0, the verdict in the summary)")
    registry.add_argument("--gate", dest="gate_rule", default="default", metavar="RULE",
                          help="when the new version may replace the champion, e.g. 'f1_macro>=champion; "
                          "log_loss<=champion+0.02; accuracy>=0.9' (default: the task's primary metric, f1_macro or "
                          "rmse, must not get worse)")
    registry.add_argument("--serving-name", default="", metavar="ISVC",
                          help="gate against what this deployed InferenceService serves (its pipeserve.dev/* "
                          "annotations, read through the current kubeconfig) instead of the registry's champion")
    registry.add_argument("--serving-namespace", default="", metavar="NS", help="namespace of --serving-name")
    registry.add_argument("--artifacts-destination", default=None, metavar="URI",
                          help="the MLflow server's --artifacts-destination (s3://…), so the manifest's storageUri "
                          "is the bucket path (default $PIPESERVE_REGISTRY_ARTIFACTS)")
    cluster = parser.add_argument_group("deploy (on the current kubeconfig's cluster)")
    cluster.add_argument("--deploy", action="store_true",
                         help="after the gate passes (or, without --registry, after packaging) put the model on "
                         "KServe: apply, wait until rolled out and Ready, smoke-test (not with --no-smoke), then "
                         "move the champion alias; a rollout that never becomes Ready is rolled back")
    cluster.add_argument("--deploy-timeout", type=int, default=600, metavar="SECONDS",
                         help="how long the deploy step waits for the rollout (default: 600)")
    parser.add_argument("--output", "-o", type=Path, default=Path("build"), help="output folder (default: build)")
    parser.add_argument("--verbose", "-v", action="store_true", help="stream KFP's full logs")
    parser.add_argument("--no-smoke", dest="smoke", action="store_false",
                        help="skip the smoke inference through a local v2 server at the end (and, with --deploy, "
                        "the deploy step's smoke inference on the cluster)")
    parser.set_defaults(func=_run, command="run")
    return parser


def _validate(args: argparse.Namespace) -> tuple[str, str]:
    """Fail fast, in one line, on anything the pipeline would only reject minutes later."""
    from pipeserve import data, training, tuning
    from pipeserve.errors import ConfigError
    from pipeserve.kube import DeploymentSpec
    from pipeserve.workflow import default_model_name

    ds = data.load_dataset(args.dataset, target=args.target, task=args.task)
    data.split_dataset(ds, test_size=args.test_size, random_state=args.seed)
    estimator = args.estimator or training.DEFAULT_ESTIMATOR[ds.task]
    params = training.parse_params(args.param)
    training.make_estimator(ds.task, estimator, params)
    if args.grid:
        for candidate in tuning.expand_grid(tuning.parse_grid(args.grid), params):
            training.make_estimator(ds.task, estimator, candidate)
        if args.cv_folds < 2:
            raise ConfigError(f"--cv-folds must be at least 2, got {args.cv_folds}.")
    if args.registry is None and (args.gate_rule != "default" or args.serving_name):
        raise ConfigError("--gate and --serving-name judge a new version against the champion: they need --registry.")
    if args.registry is not None:
        from pipeserve.gate import parse_rule

        parse_rule(args.gate_rule, ds.task)
    spec = DeploymentSpec.from_options(target=_serving_target(args), namespace=args.namespace,
                                       min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                                       runtime_version=args.runtime_version)
    from pipeserve import runtimes

    runtimes.onnx_target(spec.runtime, spec.runtime_version)
    from pipeserve.kube.kserve import QUANTITY

    for flag in ("train_cpu_request", "train_cpu_limit", "train_memory_request", "train_memory_limit"):
        if not QUANTITY.match(getattr(args, flag)):
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)!r} is not a Kubernetes quantity; "
                              "use forms like 500m, 2, 512Mi, 4Gi.")
    _training_placement(args)
    if args.deploy:
        from pipeserve.kube.client import Cluster

        Cluster().connect()  # no cluster: one line now, not after training
    name = args.model_name or default_model_name(args.dataset)
    from pipeserve.packaging import PackageRequest, _check_request

    _check_request(PackageRequest(name=name, version=args.model_version, task=ds.task, estimator={},
                                  metrics={}, feature_names=[], data={},
                                  max_batch_size=args.triton_max_batch_size))
    return ds.task, name


def _training_placement(args: argparse.Namespace) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The training pods' node selector and tolerations, checked like an InferenceService's."""
    from pipeserve.errors import ConfigError
    from pipeserve.kube.scheduling import (
        node_selector_problem,
        parse_node_selector,
        parse_toleration,
        tolerations_problem,
    )

    selector = parse_node_selector(args.train_node_selector)
    tolerations = [parse_toleration(t) for t in args.train_toleration]
    problem = node_selector_problem(selector) or tolerations_problem(tolerations)
    if problem:
        raise ConfigError(problem)
    return selector, [t.to_dict() for t in tolerations]


def _serving_target(args: argparse.Namespace) -> str:
    return "triton-cpu" if args.cpu else (args.serving_target or "triton-gpu")


def _registry_uri(args: argparse.Namespace) -> tuple[str, str, str]:
    """The registry's URI as the steps get it (absolute), as the summary shows it, and its artifacts
    destination (the flag, else the environment's); checked reachable."""
    if args.registry is None:
        return "", "", ""
    from pipeserve.registry import open_registry

    registry = open_registry(args.registry or None, artifacts_destination=args.artifacts_destination)
    registry.check()
    return registry.settings.uri, registry.settings.display_uri, registry.settings.artifacts_destination or ""


def _run(args: argparse.Namespace) -> int:
    from pipeserve import training, tuning
    from pipeserve.localrun import RunOptions, run_pipeline

    task, name = _validate(args)
    registry, shown, artifacts = _registry_uri(args)
    output = args.output.resolve()
    grid = tuning.parse_grid(args.grid) if args.grid else {}
    placement = _training_placement(args)
    arguments = {
        "source": args.dataset,
        "target": args.target or "",
        "task": task,
        "estimator": args.estimator or "",
        "params_json": json.dumps(training.parse_params(args.param)),
        "param_grid_json": json.dumps(grid) if grid else "",
        "cv_folds": args.cv_folds,
        "registry": registry,
        "registry_artifacts": artifacts,
        "gate_rule": args.gate_rule,
        "serving_name": args.serving_name,
        "serving_namespace": args.serving_namespace,
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
        "deploy": args.deploy,
        "smoke": args.smoke,
        "train_cpu_request": args.train_cpu_request,
        "train_cpu_limit": args.train_cpu_limit,
        "train_memory_request": args.train_memory_request,
        "train_memory_limit": args.train_memory_limit,
        "train_node_selector": placement[0],
        "train_tolerations": placement[1],
        "deploy_timeout_seconds": args.deploy_timeout,
    }
    extra = "".join([f", a grid of {len(tuning.expand_grid(grid))} candidates" if grid else "",
                     f", registry {shown}" if registry else ""])
    print(f"pipeserve run: {name} from {args.dataset} ({task}) on kfp.local{extra}", file=sys.stderr)
    result = run_pipeline(RunOptions(output=output, arguments=arguments, verbose=args.verbose))
    _summary(result, arguments, Path.cwd(), shown)
    if args.smoke:
        _smoke(result)
    return 0


def _test_rows(result):  # type: ignore[no-untyped-def]
    """(X float32, y) of the run's test split."""
    from pipeserve.data import read_split_frame

    X, y, _ = read_split_frame(result.test_data, result.card.data["target"])
    return X, y


def _example_row(result) -> str:  # type: ignore[no-untyped-def]
    X, _ = _test_rows(result)
    return json.dumps([[round(float(v), 4) for v in X[0]]])


def _smoke(result) -> None:  # type: ignore[no-untyped-def]
    from pipeserve.smoke import smoke_inference

    X, y = _test_rows(result)
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


def _summary(result, arguments: dict, cwd: Path, registry: str = "") -> None:  # type: ignore[no-untyped-def]
    card = result.card
    metrics = " · ".join(f"{k} {v:.3f}" for k, v in sorted(card.metrics.items()))
    parity = card.parity
    if card.task == "classification":
        parity_txt = f"{parity['label_mismatches']} label mismatches, max |Δp| {parity['max_abs_probability_diff']:.1e}"
    else:
        parity_txt = f"max |Δ| {parity['max_abs_diff']:.1e}"
    repo = _rel(result.repository, cwd)
    counts = {step: f" ×{n}" if n > 1 else "" for step, n in result.step_counts.items()}
    steps = " · ".join(f"{_step_name(step)}{counts.get(step, '')} {seconds:.1f} s"
                       for step, seconds in result.step_seconds.items())
    onnx = (f"IR {card.onnx['ir_version']}, opset {card.onnx['opsets'].get('ai.onnx')}, loads in ONNX Runtime >= "
            f"{card.onnx['min_onnxruntime']} (packaged for {card.onnx['packaged_for']})")
    lines = [f"Model {card.name} v{card.version}: {card.estimator['name']} ({card.task}), in {result.seconds:.1f} s",
             f"  steps              {steps}"]
    if result.search is not None:
        from pipeserve.tuning import candidate_label, select_best

        best = select_best(result.search.scores)
        report = f"; {_rel(result.search.report, cwd)}" if result.search.report else ""
        lines.append(f"  grid search        {len(result.search.scores)} candidates, {len(best.folds)}-fold CV "
                     f"{best.metric} on the training split: "
                     f"{candidate_label(result.search.chosen, json.loads(arguments['param_grid_json']))} chosen "
                     f"({best.mean:.3f} ± {best.std:.3f}){report}")
    lines += [f"  metrics            {metrics}",
              f"  model repository   {_rel(result.model_dir, cwd)}/  (ONNX for Triton, skops, model-card.json; "
              f"parity: {parity_txt})",
              f"  ONNX               {onnx}"]
    reg = result.registration
    if reg is not None:
        lines.append(f"  registry           {card.name} version {reg.version} (challenger) in {registry}")
        report = f"; {_rel(reg.gate_report, cwd)}" if reg.gate_report else ""
        lines.append(f"  gate               {reg.summary}{report}")
        if reg.passed:
            lines.append(f"  champion           {reg.promotion or f'{card.name}@champion: {reg.version}'}")
        else:
            lines.append(f"  champion           stays {reg.champion_before or 'unset'}: version {reg.version} was "
                         "held back (not an error)")
    storage = reg.storage_uri if reg is not None and reg.storage_uri else arguments["storage_uri"]
    if result.manifest is not None:
        lines.append(f"  InferenceService   {_rel(result.manifest, cwd)}  ({arguments['serving_target']}, storageUri "
                     f"{storage})")
    else:
        lines.append("  InferenceService   not emitted: the gate held the model back")
    if result.deployed:
        lines.append(f"  deployed           {result.deployed}")
    elif arguments.get("deploy"):
        lines.append("  deployed           nothing: the gate held the model back")
    lines += [f"  model card         {_rel(result.model_dir.parent.parent / 'model-card.md', cwd)}",
              f"  KFP log            {_rel(result.log, cwd)}", "", "Next:",
              f"  pipeserve serve {repo}                       # v2 inference server on http://127.0.0.1:8080",
              f"  pipeserve predict {card.name} --url http://127.0.0.1:8080 '{_example_row(result)}'"]
    if reg is not None:
        flag = f" --registry {registry}"
        lines += [f"  pipeserve models list {card.name}{flag}   # versions, aliases, metrics",
                  f"  pipeserve serve {card.name}@champion{flag}"]
    if result.manifest is not None:
        lines += [f"  pipeserve manifest {_rel(result.model_dir, cwd)} --storage-uri s3://BUCKET/PATH/   "
                  f"# after uploading {repo}/",
                  f"  kubectl apply -f {_rel(result.manifest, cwd)}"]
    lines.append("  pipeserve compile                                   # pipeline YAML to upload in the KFP UI")
    print("\n" + "\n".join(lines))


def _step_name(task: str) -> str:
    """kfp.local names the second use of a component ``<name>-2`` (train for the best grid candidate)."""
    import re

    return re.sub(r"-\d+$", "", task)


