"""`make load`: Locust headless against a running API for a bounded time, then the per-route table.

    .venv-tools/locust/bin/python -m scripts.load.run --url http://127.0.0.1:3000 --users 16 --seconds 30

Starts nothing: the API must already answer (`make run`, or a deployed stage URL). The routes need a
signed-in user: LOAD_HEADERS='{"Authorization": "<ID token>"}' gives one (a deployed API); without an
Authorization header there, `--sign-in` is run and prints the token to use (`make load` passes make
run's demo clinician: `python -m scripts.local_cognito token clinician`). Exits 2 when nothing answers
at the URL or no token could be had, 1 when any request failed (or Locust did), else 0. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.load import report

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def answers(url: str, timeout: float = 10.0) -> bool:
    """True when an HTTP server answers GET <url>/health, whatever its status."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def signed_in_headers(environ: dict[str, str], sign_in: str | None) -> dict[str, str] | None:
    """LOAD_HEADERS with an Authorization header: as given, else the token `sign_in` prints; None when
    neither gives one."""
    headers = json.loads(environ.get("LOAD_HEADERS") or "{}")
    if any(name.lower() == "authorization" for name in headers):
        return headers
    if not sign_in:
        return None
    done = subprocess.run(shlex.split(sign_in), cwd=REPO, capture_output=True, text=True, timeout=120)
    token = done.stdout.strip()
    if done.returncode != 0 or not token:
        print(f"`{sign_in}` gave no token:\n{done.stderr[-1000:]}", file=sys.stderr)
        return None
    return {**headers, "Authorization": token}


def locust_command(args: argparse.Namespace, url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.seconds}s",
        "--stop-timeout",
        "30",  # requests in flight at the end finish and count
        "--only-summary",
        "--final-csv",  # the locustfile's: Locust's own --csv can miss the last second
        str(args.csv),
        "--loglevel",
        "WARNING",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="API base URL (default: %(default)s)")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=8, help="users started per second")
    parser.add_argument("--seconds", type=int, default=30, help="how long the load runs")
    parser.add_argument("--csv", default="artifacts/load/load", help="Locust's CSV prefix (default: %(default)s)")
    parser.add_argument("--sign-in", help="a command that prints an ID token, used when LOAD_HEADERS has none")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    args.csv = Path(args.csv).resolve()
    if not answers(url):
        print(f"nothing answers at {url}: start `make run` first (or set LOAD_URL to a deployed API)", file=sys.stderr)
        return 2
    headers = signed_in_headers(dict(os.environ), args.sign_in)
    if headers is None:
        print('no ID token: set LOAD_HEADERS=\'{"Authorization": "<ID token>"}\' or --sign-in', file=sys.stderr)
        return 2
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    for stale in ("stats", "failures"):  # a run that fails to start must not report the last one's
        Path(f"{args.csv}_{stale}.csv").unlink(missing_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"Load test: {args.users} users ({args.spawn_rate:g}/s), {args.seconds} s against {url}", flush=True)
    locust = subprocess.run(
        locust_command(args, url), cwd=REPO, env={**os.environ, "LOAD_HEADERS": json.dumps(headers)}
    )
    if not Path(f"{args.csv}_stats.csv").exists():
        print(f"Locust wrote no statistics (exit status {locust.returncode})", file=sys.stderr)
        return locust.returncode or 1
    text, status = report.report(args.csv)
    print(f"\n{started}, load average before the run {load}:\n\n{text}")
    return status or (1 if locust.returncode else 0)


if __name__ == "__main__":
    sys.exit(main())
