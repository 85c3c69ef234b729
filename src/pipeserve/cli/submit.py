"""`pipeserve submit`: run the pipeline on a Kubeflow Pipelines cluster (upload or version it, then a run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeserve.errors import ConfigError

_EPILOG = """\
examples:
  pipeserve submit --host http://127.0.0.1:8888 -a source=wine -a model_name=wine
  pipeserve submit --host "$(cat .cluster/kfp-endpoint)" --experiment nightly --wait --timeout 1800
  pipeserve submit --host https://kubeflow.example.com/pipeline --namespace team-a --cookies "authservice_session=..."

Prints the run's id and its link in the KFP UI. Exit 0 when the run was created (and, with --wait,
succeeded), 1 when the server is unreachable or the run failed or did not finish in time, 2 when the
server refused the pipeline or the arguments.
"""


def add_kfp_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection and pipeline options shared by `submit` and `schedule`."""
    c = parser.add_argument_group("Kubeflow Pipelines (the options of kfp.Client)")
    c.add_argument("--host", required=True, help="KFP API server URL (local cluster: $(cat .cluster/kfp-endpoint)).")
    c.add_argument("--namespace", help="Profile namespace in multi-user KFP (default: none, standalone KFP).")
    c.add_argument("--existing-token", metavar="TOKEN",
                   help="Bearer token (in a pod kfp reads KF_PIPELINES_SA_TOKEN_PATH).")
    c.add_argument("--cookies", help="Cookies for an authenticating proxy, e.g. authservice_session=...")
    c.add_argument("--ssl-ca-cert", metavar="PATH", help="CA bundle for an HTTPS host.")
    c.add_argument("--ui-host", metavar="URL", help="KFP UI URL for the printed links (default: --host).")
    p = parser.add_argument_group("pipeline")
    p.add_argument("--package", type=Path, metavar="YAML",
                   help="A compiled pipeline (default: compile pipeserve's pipeline now).")
    p.add_argument("--pipeline-name", default="train-and-serve", help="Pipeline name in KFP (default: %(default)s).")
    p.add_argument("--experiment", default="pipeserve", help="Experiment (created when missing; default: %(default)s).")
    p.add_argument("--run-name", help="Name of the run (default: the pipeline name and the time).")
    p.add_argument("--arg", "-a", action="append", default=[], metavar="NAME=VALUE",
                   help="A pipeline parameter, repeatable; the value is read as the parameter's type (a string "
                   "stays text; numbers, true/false, JSON lists and objects otherwise).")
    p.add_argument("--service-account", help="ServiceAccount the run's pods use (default: the server's).")
    p.add_argument("--output", choices=("text", "json"), default="text", help="Print the result as text or JSON.")


def connection_and_submission(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pipeserve.submission import Connection, Submission

    arguments = {}
    for pair in args.arg:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"Pipeline arguments are NAME=VALUE, e.g. -a source=wine; got {pair!r}.")
        arguments[name] = raw  # typed by the pipeline's own parameter types (submission.typed_arguments)
    connection = Connection(args.host, args.namespace, args.existing_token, args.cookies, args.ssl_ca_cert,
                            args.ui_host)
    return connection, Submission(args.package, args.pipeline_name, args.experiment, args.run_name, arguments,
                                  args.service_account)


def print_submitted(submitted, output: str) -> None:  # type: ignore[no-untyped-def]
    if output == "json":
        print(json.dumps(submitted.__dict__, sort_keys=True))
    else:
        print(f"{submitted.kind} {submitted.id}\n{submitted.link}")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "submit",
        help="Run the pipeline on Kubeflow Pipelines: upload or version it, create a run, optionally wait.",
        description="Compile the pipeline (or take --package), upload it to the KFP API server as a pipeline or as "
        "a new version of it (the same package is not uploaded twice), and create a run in an experiment. "
        "With --wait, stream the run's state until it finishes.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kfp_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="Wait until the run finishes, printing its state.")
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds to wait with --wait (default: 3600).")
    parser.set_defaults(func=_run, command="submit")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pipeserve.submission import submit

    connection, what = connection_and_submission(args)
    submitted = submit(connection, what, wait=args.wait, timeout_s=args.timeout,
                       progress=lambda line: print(f"pipeserve submit: {line}", file=sys.stderr, flush=True))
    print_submitted(submitted, args.output)
    return 0
