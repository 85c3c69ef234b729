"""`pipeserve models`: versions and aliases in the model registry (MLflow).

    pipeserve models register build/model/iris --alias challenger
    pipeserve models list iris
    pipeserve models show iris@champion
    pipeserve models promote iris 3 --gate 'f1_macro>=champion; log_loss<=champion+0.02'
    pipeserve models rollback iris
    pipeserve models history iris --output json
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
    p = _verb(verbs, "rollback", "Give the champion alias back to the previous champion (from the alias history).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reason", default="", help="Recorded in the alias history.")
    p = _verb(verbs, "history", "Show the recorded alias moves of a model, oldest first.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", help="Only this alias.")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1], command="models")
    return parser


def _verb(verbs: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    p = verbs.add_parser(name, help=text, description=text, epilog=_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", metavar="URI", help="Registry URI (default $PIPESERVE_REGISTRY, else ./mlflow.db).")
    p.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json.")
    p.set_defaults(func=_run, command=f"models {name}", verb=name)
    return p


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
    from pipeserve.registry import CHAMPION, ModelRef

    version = args.version.strip()
    if not version.isdigit():
        raise ConfigError(f"VERSION must be a version number, e.g. 3; got {args.version!r}.")
    expected = reg.aliases(args.name).get(CHAMPION) if args.expect is None else (
        None if args.expect.strip().lower() == "none" else args.expect.strip())
    verdict = None
    if args.gate is not None:
        mv = reg.get(ModelRef(args.name, version=version))
        champion = gate.champion_from_registry(reg, args.name)
        verdict = gate.evaluate(mv.metrics, champion, args.gate, task=mv.task or "",
                                challenger_label=f"{mv.name}/{mv.version}", data_fingerprint=mv.data_fingerprint)
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
    change = reg.rollback(args.name, reason=args.reason)
    if args.output == "json":
        return _print_json(change.to_dict())
    print(_change_line(args.name, change))


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
