"""`make load` against the local stack: a short bounded Locust run of the whole mix answers
without one failure, every route is requested, and the printed table names every route."""

import csv
import json
import os
import subprocess

from scripts.load import report
from scripts.local_stack import free_port
from tests.helpers.models import REPO_ROOT

ROUTES = {
    "GET /health",
    "GET /models",
    "GET /models/{model}",
    "POST /models/{model}/predict [breast-cancer, 1 row]",
    "POST /models/{model}/predict [breast-cancer, 100 rows]",
    "POST /models/{model}/predict [breast-cancer-lite, 1 row]",
    "POST /models/skin-lesion/predict [image/png]",
    "POST /models/chest-ct/predict [image/png]",
}


def make_load(
    url: str, csv_prefix, users: int = 3, seconds: int = 6, token: str | None = None
) -> subprocess.CompletedProcess:
    """`make load` as the README runs it (installs .venv-tools/locust first if it is missing), signed in
    with `token` as the README shows for a deployed API (LOAD_HEADERS)."""
    headers = {"LOAD_HEADERS": json.dumps({"Authorization": token})} if token else {}
    return subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "load",
            f"LOAD_URL={url}",
            f"LOAD_USERS={users}",
            f"LOAD_SPAWN_RATE={users}",
            f"LOAD_SECONDS={seconds}",
            f"LOAD_CSV={csv_prefix}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **headers},
    )


def test_make_load_runs_the_whole_mix_without_a_failure(stack, tmp_path):
    run = make_load(stack["url"], tmp_path / "load", token=stack["tokens"]["clinician"])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    rows = list(csv.DictReader((tmp_path / "load_stats.csv").open()))
    per_route = {report.route(row): row for row in rows if row["Name"] != report.TOTAL}
    assert set(per_route) == ROUTES
    assert all(int(row["Request Count"]) >= 1 for row in per_route.values()), per_route
    assert [row["Failure Count"] for row in rows] == ["0"] * len(rows)
    assert list(csv.DictReader((tmp_path / "load_failures.csv").open())) == []

    table = report.format_table((tmp_path / "load_stats.csv").read_text())
    assert table in run.stdout
    assert all(f"| `{route}` |" in table for route in ROUTES)
    assert "| **all routes** |" in table


def test_make_load_says_so_when_nothing_answers(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    run = make_load(url, tmp_path / "load")
    assert run.returncode != 0
    assert f"nothing answers at {url}: start `make run` first" in run.stderr
    assert not (tmp_path / "load_stats.csv").exists()
