"""The deploy's smoke test (scripts/smoke_test.py) against the local stack, run as `make smoke` runs it
(a subprocess, the password in SMOKE_PASSWORD) as the demo clinician, so the script cannot rot.
tests/e2e/test_make_run.py runs it against `make run` itself."""

import os
import subprocess
import sys

from scripts.local_cognito import DEMO_USERS
from scripts.local_stack import MODELS_TO_SEED
from tests.helpers.models import REPO_ROOT

CHECKS = [
    "health",
    "authorizer",
    "sign-in",
    "models",
    *(f"predict {m}" for m in sorted(MODELS_TO_SEED)),
    "upload ticket",
]


def smoke_test(url: str, username: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.smoke_test", "--url", url, "--username", username],
        cwd=REPO_ROOT,
        env={**os.environ, "SMOKE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=600,
    )


def checks(output: str) -> list[tuple[str, str]]:
    """(PASS|FAIL|SKIP, check) of each line but the verdict."""
    return [(line[:4], line[6:38].strip()) for line in output.splitlines()[:-1]]


def assert_every_check_passes(url: str) -> None:
    clinician = DEMO_USERS["clinician"]
    done = smoke_test(url, clinician.username, clinician.password)
    assert done.returncode == 0, done.stdout + done.stderr
    assert checks(done.stdout) == [("PASS", check) for check in CHECKS], done.stdout
    assert done.stdout.splitlines()[-1] == f"smoke test passed: {len(CHECKS)} checks against {url}"


def test_the_smoke_test_passes_against_the_local_stack(stack):
    assert_every_check_passes(stack["url"])


def test_a_wrong_password_fails_the_smoke_test_at_sign_in(stack):
    username = DEMO_USERS["clinician"].username
    done = smoke_test(stack["url"], username, "Not-the-password-1")
    assert done.returncode == 1
    assert checks(done.stdout) == [
        ("PASS", "health"),
        ("PASS", "authorizer"),
        ("FAIL", "sign-in"),
        ("SKIP", "models, predict, upload ticket"),
    ]
    failed = done.stdout.splitlines()[2]
    assert failed.endswith(f"  sign-in as {username} failed: NotAuthorizedException: Incorrect username or password.")
