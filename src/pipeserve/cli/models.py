"""`pipeserve models`: versions and aliases in the model registry (MLflow).

    pipeserve models register build/model/iris --alias challenger
    pipeserve models list iris
    pipeserve models show iris@champion
    pipeserve models promote iris 3 --gate 'f1_macro>=champion; log_loss<=champion+0.02'
    pipeserve models rollback iris
    pipeserve models history iris --output json

With --namespace NS, promote and rollback also update the served InferenceService (the library's
pipeserve.rollout): the version is rolled out first and the alias moves once it runs; a rollout
that never gets Ready is rolled back on the cluster and the alias stays.

    pipeserve models promote iris 3 --namespace ml --no-smoke
    pipeserve models promote iris 3 --namespace ml --canary 10      # Knative mode
    pipeserve models rollback iris --namespace ml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeserve.errors import ConfigError

if TYPE_CHECKING:
    from pipeserve.registry import AliasChange
    from pipeserve.registry.mlflow_registry import MlflowRegistry

_EPILOG = """\
registry: --registry URI, else $PIPESERVE_REGISTRY, else ./mlflow.db (MLflow's own default, so
`mlflow ui` in the same folder shows the same models). URIs: sqlite:///path.db, a path, or an MLflow
tracking server http(s)://host:port. Exit codes: 0 ok (also when --gate holds a version back),
1 registry unreachable or failing, or a concurrent alias move (compare-and-set lost), 2 bad input.
"""
_ROLLOUT_EPILOG = _EPILOG + """
on a cluster (--namespace NS): the version's InferenceService is rendered from its registered model
card and storage URI (--storage-uri overrides it) with the serving setup read back from the one it
replaces (options given change it), applied server-side, and waited for until the controller has
rolled it out and it is Ready; only then does the alias move. If it never gets Ready (--timeout),
the InferenceService is put back as it was and waited for, the alias stays, and the command fails
in one line with the reason (exit 1). --canary N (Knative mode only) sends N % of traffic to the
new version and leaves the alias; promote the same version again for all traffic, or roll back to
return it to 0 %. Each rollout is recorded on the version (tags pipeserve.rollout.*).
"""
# Options that only mean something with --namespace (the cluster part of promote/rollback).
_CLUSTER_DESTS = ("canary_traffic_percent", "storage_uri", "context", "timeout", "wait", "smoke", "smoke_url",
                  "force_conflicts", "s3_credentials", "s3_endpoint", "s3_region", "s3_no_https")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "models", help="List, show, register, promote and roll back model versions in the registry (MLflow).",
        description="Model versions and the champion/challenger aliases in an MLflow model registry.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")
    p = _verb(verbs, "list", "List the versions of a model, newest first.")
    p.add_argument("name", metavar="NAME")
    p = _verb(verbs, "show", "Show one version: NAME@ALIAS, NAME/VERSION or NAME (the latest).")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--artifacts-destination", metavar="URI",
                   help="The MLflow server's --artifacts-destination (s3://…), to resolve mlflow-artifacts: URIs "
                   "to what KServe fetches (default $PIPESERVE_REGISTRY_ARTIFACTS).")
    p = _verb(verbs, "register", "Register a packaged model folder as a new version (the registry assigns the number).")
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                   help="A model folder (<repository>/<name>/) or its repository.")
    p.add_argument("--alias", help="Point this alias at the new version, e.g. challenger.")
    p.add_argument("--reason", default="", help="Recorded in the alias history.")
    p = _verb(verbs, "promote",
              "Make VERSION the champion (compare-and-set; optionally only if it passes a gate rule).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--expect", metavar="VERSION",
                   help="Fail unless the champion is still this version ('none': no champion). Default: the "
                   "champion read when the command starts.")
    p.add_argument("--gate", metavar="RULE", nargs="?", const="",
                   help="Promote only if VERSION passes this rule against the champion, e.g. "
                   "'f1_macro>=champion; log_loss<=champion+0.02' (no RULE: the task's default).")
    p.add_argument("--reason", default="", help="Recorded in the alias history.")
    _add_cluster_arguments(p, canary=True)
    p = _verb(verbs, "rollback", "Give the champion alias back to the previous champion (from the alias history).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reason", default="", help="Recorded in the alias history.")
    _add_cluster_arguments(p, canary=False)
    p = _verb(verbs, "history", "Show the recorded alias moves of a model, oldest first.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", help="Only this alias.")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1], command="models")
    return parser


def _verb(verbs: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    p = verbs.add_parser(name, help=text, description=text,
                         epilog=_ROLLOUT_EPILOG if name in ("promote", "rollback") else _EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", metavar="URI", help="Registry URI (default $PIPESERVE_REGISTRY, else ./mlflow.db).")
    p.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json.")
    p.set_defaults(func=_run, command=f"models {name}", verb=name)
    return p


def _add_cluster_arguments(p: argparse.ArgumentParser, canary: bool) -> None:
    """The rollout options: the deploy options (default: as the served InferenceService has them) and the waits."""
    import dataclasses
    import re

    from pipeserve.cli.manifest import add_spec_arguments
    from pipeserve.kube.spec import DeploymentSpec

    first = len(p._actions)
    c = p.add_argument_group("on a cluster (with --namespace: update the served InferenceService too)")
    if canary:
        c.add_argument("--canary", dest="canary_traffic_percent", type=int, metavar="PERCENT",
                       help="Knative mode: send PERCENT %% of traffic to VERSION and keep the rest on the revision "
                       "serving now; the alias stays (promote again without --canary for all traffic).")
    c.add_argument("--storage-uri", metavar="URI", help="Where the cluster fetches the version (default: the "
                   "registry's storage URI, e.g. s3://… of an MLflow server with --artifacts-destination).")
    c.add_argument("--artifacts-destination", metavar="URI",
                   help="The MLflow server's --artifacts-destination (s3://…), to resolve mlflow-artifacts: URIs "
                   "(default $PIPESERVE_REGISTRY_ARTIFACTS).")
    c.add_argument("--context", help="kubeconfig context (default: the current one).")
    c.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                   help="Wait until rolled out and Ready before moving the alias (default); --no-wait moves it "
                   "after the apply, and nothing rolls back by itself.")
    c.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="Seconds to wait for the rollout, and again for a rollback (default: 600).")
    c.add_argument("--no-smoke", dest="smoke", action="store_const", const=False, default=None,
                   help="Skip the smoke inference (e.g. on a cluster whose pods are simulated).")
    c.add_argument("--smoke-url", help="Base URL for the smoke inference when status.url is not reachable from here.")
    c.add_argument("--force-conflicts", action="store_const", const=True, default=None,
                   help="Take over fields another field manager owns.")
    before = len(p._actions)
    add_spec_arguments(p)
    spec_fields = {f.name for f in dataclasses.fields(DeploymentSpec)}
    for action in p._actions[before:]:
        if action.dest == "canary_traffic_percent":
            action.help = argparse.SUPPRESS  # --canary is the rollout's word for it
        if action.dest not in spec_fields or action.dest in ("namespace", "canary_traffic_percent") \
                or action.default is None:
            continue
        default = action.default
        action.default = None  # None: as the served InferenceService has it
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = re.sub(r"\s*\(default: (%\(default\)s|[^)]*)\)", "", action.help).rstrip(".") + \
                f" (default: as served, else {'on' if default is True else default})."
    for action in p._actions[before:]:
        if action.dest == "namespace":
            action.help = ("Namespace of the InferenceService to update with the alias; without it only the "
                           "alias moves.")
        elif action.option_strings == ["--name"]:
            action.dest = "isvc_name"  # NAME, the positional, is the registered model's
            action.help = "InferenceService name (default: the model's name)."
    flags: dict[str, str] = {}
    for action in p._actions[first:]:
        if action.option_strings and action.help is not argparse.SUPPRESS:
            flags.setdefault(action.dest, action.option_strings[-1])
    p.set_defaults(cluster_flags=flags)


def _rollout_options(args: argparse.Namespace) -> Any:
    """The RolloutOptions the arguments describe, or None without --namespace (the alias only)."""
    import dataclasses

    from pipeserve.cli.manifest import s3_from_args
    from pipeserve.kube.spec import DeploymentSpec
    from pipeserve.rollout import RolloutOptions
    from pipeserve.smoke import smoke_infer

    fields = [f.name for f in dataclasses.fields(DeploymentSpec) if not f.name.startswith("_")]
    dests = {"node_selector": "node_selector", "tolerations": "toleration"}
    spec = {name: getattr(args, dests.get(name, name), None) for name in fields}
    spec = {k: v for k, v in spec.items() if v is not None and k not in ("name", "namespace", "canary_traffic_percent")}
    # Given on the command line: not None (their default); --no-smoke and --no-wait store False.
    cluster_only = [d for d in (*_CLUSTER_DESTS, "isvc_name") if getattr(args, d, None) is not None
                    and (getattr(args, d) is not False or d in ("smoke", "wait"))]
    if not args.namespace:
        flags = args.cluster_flags
        given = sorted({flags.get(dests.get(k, k), k) for k in spec} | {flags.get(d, d) for d in cluster_only})
        if given:
            raise ConfigError(f"{', '.join(given)} act on the served InferenceService: add --namespace NS "
                              f"(without it, {args.verb} only moves the alias).")
        return None
    return RolloutOptions(
        namespace=args.namespace, name=args.isvc_name, spec_options=spec,
        canary_percent=getattr(args, "canary_traffic_percent", None), storage_uri=args.storage_uri,
        wait=args.wait is not False, timeout_s=600 if args.timeout is None else args.timeout,
        smoke=None if args.smoke is False else smoke_infer, smoke_url=args.smoke_url,
        force_conflicts=bool(args.force_conflicts), s3=s3_from_args(args))


def _connect(args: argparse.Namespace) -> Any:
    from pipeserve.kube.client import Cluster

    return Cluster(args.context).connect()


def _say(args: argparse.Namespace, started: float) -> Any:
    import time

    def say(line: str) -> None:
        print(f"pipeserve {args.command}: [{time.monotonic() - started:5.1f}s] {line}", file=sys.stderr, flush=True)

    return say


def _run(args: argparse.Namespace) -> int:
    from pipeserve.registry import open_registry

    registry = open_registry(args.registry, artifacts_destination=getattr(args, "artifacts_destination", None))
    _VERBS[args.verb](registry, args)
    return 0


def _list(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    versions = reg.versions(args.name)
    if args.output == "json":
        return _print_json([v.to_dict() for v in versions])
    metrics = sorted({m for v in versions for m in v.metrics})
    rows = [[v.version, ",".join(v.aliases) or "-", v.status, v.created_at, v.estimator or "-",
             *[f"{v.metrics[m]:.4f}" if m in v.metrics else "-" for m in metrics]] for v in versions]
    _print_table(["VERSION", "ALIASES", "STATUS", "CREATED", "ESTIMATOR", *[m.upper() for m in metrics]], rows)


def _show(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    from pipeserve.errors import UserError

    mv = reg.get(args.ref)
    storage, problem = None, None
    try:
        storage = reg.storage_uri(mv.ref)
    except UserError as exc:
        problem = str(exc)
    if args.output == "json":
        return _print_json({**mv.to_dict(), "storage_uri": storage, "storage_uri_error": problem})
    fields = [("model", f"{mv.name}/{mv.version}"), ("aliases", ", ".join(mv.aliases) or "-"), ("status", mv.status),
              ("created", mv.created_at), ("task", mv.task or "-"), ("estimator", mv.estimator or "-"),
              ("params", ", ".join(f"{k}={v}" for k, v in sorted(mv.params.items())) or "-"),
              ("metrics", " · ".join(f"{k} {v:.4f}" for k, v in sorted(mv.metrics.items())) or "-"),
              ("data", mv.data_fingerprint or "-"), ("mlflow run", mv.run_id or "-"), ("source", mv.source),
              ("storage uri", storage or f"(none) {problem}"), ("card sha256", mv.card_sha256 or "-")]
    if mv.tags.get("pipeserve.rollout.outcome"):
        last = {k: mv.tags.get(f"pipeserve.rollout.{k}", "?") for k in ("outcome", "where", "action", "at", "by")}
        fields.insert(-1, ("last rollout", f"{last['outcome']} in {last['where']} ({last['action']}, {last['at']}, "
                                           f"by {last['by']})"))
    fields += [(f"  {path}", sha) for path, sha in sorted(mv.files.items())]
    width = max(len(k) for k, _ in fields)
    sys.stdout.write("".join(f"{k:<{width}}  {v}\n" for k, v in fields))


def _register(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    mv = reg.register(args.model_dir, alias=args.alias, reason=args.reason)
    if args.output == "json":
        return _print_json(mv.to_dict())
    aliases = f" ({', '.join(mv.aliases)})" if mv.aliases else ""
    print(f"Registered {mv.name} version {mv.version}{aliases} in {reg.settings.display_uri}")
    print(f"  artifacts  {mv.source}")


def _promote(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    from pipeserve import gate
    from pipeserve.registry import CHAMPION

    version = args.version.strip()
    if not version.isdigit():
        raise ConfigError(f"VERSION must be a version number, e.g. 3; got {args.version!r}.")
    expected = reg.aliases(args.name).get(CHAMPION) if args.expect is None else (
        None if args.expect.strip().lower() == "none" else args.expect.strip())
    verdict = None if args.gate is None else gate.gate_registered(reg, args.name, version, args.gate).verdict
    options = _rollout_options(args)
    if options is not None and (verdict is None or verdict.passed):
        return _promote_on_cluster(reg, args, version, expected, verdict, options)
    change = None
    if verdict is None or verdict.passed:
        change = reg.promote(args.name, version, expected=expected, reason=args.reason)
    promoted = change is not None
    if args.output == "json":
        return _print_json({"name": args.name, "alias": CHAMPION, "from": expected,
                            "to": version if promoted else expected, "promoted": promoted,
                            "change": change.to_dict() if change else None,
                            "verdict": verdict.to_dict() if verdict else None})
    if verdict is not None:
        print(verdict.summary())
    if promoted:
        print(_change_line(args.name, change))
    elif verdict is not None and not verdict.passed:
        print(f"{args.name}@{CHAMPION} stays {expected or 'unset'}: version {version} was held back.")
    else:
        print(f"{args.name}@{CHAMPION} is already {version}; nothing changed.")


def _rollback(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    options = _rollout_options(args)
    if options is not None:
        import time

        from pipeserve.rollout import rollback

        started = time.monotonic()
        cluster = _connect(args)
        rollout = rollback(reg, cluster, args.name, options, reason=args.reason, progress=_say(args, started))
        if args.output == "json":
            return _print_json(rollout.to_dict())
        return _print_rollout(rollout)
    change = reg.rollback(args.name, reason=args.reason)
    if args.output == "json":
        return _print_json(change.to_dict())
    print(_change_line(args.name, change))


def _promote_on_cluster(reg: MlflowRegistry, args: argparse.Namespace, version: str, expected: str | None,
                        verdict: Any, options: Any) -> None:
    import time

    from pipeserve.rollout import promote

    started = time.monotonic()
    if verdict is not None and args.output != "json":
        print(verdict.summary(), flush=True)
    cluster = _connect(args)
    rollout = promote(reg, cluster, args.name, version, options, expected=expected, reason=args.reason,
                      progress=_say(args, started))
    if args.output == "json":
        return _print_json({**rollout.to_dict(), "verdict": verdict.to_dict() if verdict else None})
    _print_rollout(rollout)


def _print_rollout(rollout: Any) -> None:
    """What the rollout did, in a line or two: the alias, then what the cluster serves."""
    from pipeserve.registry import CHAMPION

    where = f"{rollout.namespace}/{rollout.inference_service}"
    if rollout.change is not None:
        print(_change_line(rollout.name, rollout.change))
    elif rollout.action in ("promote", "rollback"):
        print(f"{rollout.name}@{CHAMPION} is already {rollout.version}; nothing changed in the registry.")
    split = _split(rollout)
    if rollout.action == "canary":
        print(f"{where}: {rollout.name}/{rollout.version} is the canary: {split}; {rollout.name}@{CHAMPION} stays "
              f"{rollout.previous or 'unset'}.")
        print(f"next: pipeserve models promote {rollout.name} {rollout.version} --namespace {rollout.namespace} "
              f"(all traffic), or pipeserve models rollback {rollout.name} --namespace {rollout.namespace} (0 %).")
        return
    if rollout.action == "abort-canary":
        print(f"{where}: canary of {rollout.name}/{rollout.version} aborted: {split}; {rollout.name}@{CHAMPION} "
              f"stays {rollout.previous or 'unset'}.")
        return
    how = "unchanged" if not rollout.changed else (
        f"rolled out and Ready {rollout.seconds:.1f} s after the apply" if rollout.seconds is not None
        else "applied, not waited for")
    extra = f"; {split}" if rollout.traffic else ""
    print(f"{where} serves {rollout.name}/{rollout.version} ({rollout.mode} mode): {how}{extra}"
          f"{f'; {rollout.url}' if rollout.url else ''}")
    for note in rollout.notes:
        print(f"note: {note}")


def _split(rollout: Any) -> str:
    parts = []
    for entry in rollout.traffic:
        name = entry.get("revision") or ("the latest revision" if entry.get("latest") else "?")
        label = f" ({entry['tag']})" if entry.get("tag") else (" (latest)" if entry.get("latest") else "")
        parts.append(f"{entry.get('percent')} % to {name}{label}")
    return ", ".join(parts) or "traffic split not reported"


def _history(reg: MlflowRegistry, args: argparse.Namespace) -> None:
    entries = reg.history(args.name, args.alias)
    if args.output == "json":
        return _print_json([e.to_dict() for e in entries])
    _print_table(["SEQ", "AT", "ALIAS", "ACTION", "FROM", "TO", "ACTOR", "REASON"],
                 [[str(e.seq), e.at, e.alias, e.action, e.from_version or "-", e.to_version or "-", e.actor,
                   e.reason or ""] for e in entries])


def _change_line(name: str, change: AliasChange) -> str:
    return (f"{name}@{change.alias}: {change.from_version or 'unset'} → {change.to_version or 'unset'} "
            f"({change.action}, #{change.seq})")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())


_VERBS = {"list": _list, "show": _show, "register": _register, "promote": _promote, "rollback": _rollback,
          "history": _history}
