"""`pipeserve schedule`: a recurring run of the pipeline on Kubeflow Pipelines (cron with seconds first)."""

from __future__ import annotations

import argparse
import sys

from pipeserve.cli.submit import add_kfp_arguments, connection_and_submission, print_submitted

_EPILOG = """\
examples:
  pipeserve schedule --host "$(cat .cluster/kfp-endpoint)" --cron "0 0 3 * * *"      # 03:00 every day
  pipeserve schedule --host http://127.0.0.1:8888 --cron "0 */30 * * * *" --max-concurrency 1 -a source=wine

KFP's cron has 6 fields, seconds first (`0 0 3 * * *`, not `0 3 * * *`). Exit 0 when the recurring run
was created, 1 when the server is unreachable, 2 for a bad cron expression or a refused pipeline.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "schedule",
        help="Run the pipeline on Kubeflow Pipelines on a schedule (a recurring run; 6-field cron).",
        description="Upload or version the pipeline as `submit` does, then create a recurring run that KFP's "
        "scheduler fires on --cron (6 fields, seconds first).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kfp_arguments(parser)
    parser.add_argument("--cron", required=True, help='6-field cron, seconds first, e.g. "0 0 3 * * *".')
    parser.add_argument("--max-concurrency", type=int, default=1, help="Runs at once (default: 1).")
    parser.add_argument("--catchup", action="store_true", help="Run missed schedules after a pause (default: no).")
    parser.set_defaults(func=_run, command="schedule")
    return parser


def _run(args: argparse.Namespace) -> int:
    from pipeserve.submission import schedule

    connection, what = connection_and_submission(args)
    submitted = schedule(connection, what, args.cron, max_concurrency=args.max_concurrency, catchup=args.catchup,
                         progress=lambda line: print(f"pipeserve schedule: {line}", file=sys.stderr, flush=True))
    print_submitted(submitted, args.output)
    return 0
