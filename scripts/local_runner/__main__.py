"""Command line: ``python -m scripts.local_runner start-api --template template.yaml --env-vars events/env.json``.

Serves the template's API like ``sam local start-api`` (same routes, events and responses) until SIGINT/SIGTERM.
"""

import argparse
import logging
import os
import signal
import sys
import threading

from scripts.local_runner.api import LocalApi
from scripts.local_runner.cognito import moto_user_pool

LOG = logging.getLogger("scripts.local_runner")


def parameter_override(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_api_parser = commands.add_parser("start-api", help="serve the template's API until interrupted")
    start_api_parser.add_argument("--template", "-t", default="template.yaml", help="default: %(default)s")
    start_api_parser.add_argument(
        "--env-vars", "-n", help='SAM env-vars file: {"Parameters": {...all functions...}, "<LogicalId>": {...}}'
    )
    start_api_parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    start_api_parser.add_argument("--port", "-p", type=int, default=3000, help="port to bind (default: %(default)s)")
    start_api_parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        type=parameter_override,
        default=[],
        metavar="KEY=VALUE",
        help="template parameter values",
    )
    start_api_parser.add_argument(
        "--user-pool-id",
        default=None,
        help="the Cognito user pool (in moto) whose ID tokens the routes behind the template's Cognito authorizer "
        "accept (none: they answer 401); make run creates it (scripts/local_cognito.py)",
    )
    start_api_parser.add_argument(
        "--cognito-endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="where that user pool is served, moto (default: $AWS_ENDPOINT_URL)",
    )
    start_api_parser.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start a worker of every function at startup rather than at its first request (default: on)",
    )
    start_api_parser.add_argument(
        "--workers-per-function",
        type=positive_int,
        default=None,
        metavar="N",
        help="most worker processes a function runs at once, as Lambda instances, started when all are busy; a "
        "function's ReservedConcurrentExecutions in the template takes precedence (default: the number of cores)",
    )
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def start_api(args: argparse.Namespace) -> int:
    overrides = dict(args.parameter_overrides)
    api = LocalApi(
        args.template,
        args.env_vars,
        args.host,
        args.port,
        overrides,
        warm=args.warm,
        user_pool=moto_user_pool(args.cognito_endpoint, args.user_pool_id) if args.user_pool_id else None,
        workers_per_function=args.workers_per_function,
    )

    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())

    api.start()
    try:
        for line in api.route_lines():
            LOG.info("%s", line)
        LOG.info("Serving on %s; Ctrl+C to stop.", api.url)
        while not stop_requested.wait(timeout=1.0):
            pass
    finally:
        LOG.info("Stopping")
        api.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Like sam local: SAM CLI's own INFO messages and the request log go to stderr.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return start_api(args)


if __name__ == "__main__":
    sys.exit(main())
