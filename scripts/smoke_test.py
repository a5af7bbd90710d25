"""Smoke test of a running API, deployed or local: `python -m scripts.smoke_test --url BASE ...`.
NOT FOR CLINICAL USE.

`make deploy` runs it against the new stack (scripts/deploy.py), `make smoke` against any URL, and
tests/e2e/test_smoke_test.py against the local stack, so it cannot rot. Plain HTTP (requests); only the
sign-in is boto3: Cognito's InitiateAuth, unsigned, as the web page sends it. One line per check:

  health           GET /health answers 200 with status "ok"
  authorizer       GET /models without a token answers 401: the Cognito authorizer is on
  sign-in          USER_PASSWORD_AUTH with the app client, region and endpoint GET /auth/config names
  models           GET /models lists every --expect-model (at least one model), each with a production version
  predict <model>  each model's example answers 200 with a label among its classes: a tabular model's
                   manifest example row (GET /models/<model>), a small PNG for an image model
  upload ticket    POST /models/<image model>/uploads returns a presigned POST form; nothing is uploaded,
                   so no training data is written and no retraining starts

Exit status 0 when every check passed, else 1; a check that needs a failed one is skipped.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from scripts.local_cognito import PoolUser, SignInChallenge, id_token

TIMEOUT_SECONDS = 30  # API Gateway ends a request after 29 s
# A 16x16 mid-grey RGB PNG: the image models resize and convert any JPEG or PNG to their input.
SMALL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAGUlEQVR42mNsaGhgIAUwMZAIRjWMahg6GgDJTAGg54KQ4AAAAABJRU5ErkJggg=="
)
PASSWORD_VARIABLE = "SMOKE_PASSWORD"  # training/settings.py reads it: a real password stays off the command line


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class SignIn:
    """A Cognito user. Without a client id and region, GET /auth/config names them and the endpoint."""

    username: str
    password: str
    client_id: str | None = None
    region: str | None = None
    endpoint: str | None = None


class Api:
    def __init__(self, url: str):
        self.base = url.rstrip("/")
        self.http = requests.Session()

    def call(self, method: str, path: str, expect: int, token: str | None = None, **request) -> requests.Response:
        headers = {**request.pop("headers", {}), **({"Authorization": token} if token else {})}
        try:
            response = self.http.request(method, self.base + path, headers=headers, timeout=TIMEOUT_SECONDS, **request)
        except requests.RequestException as exc:
            raise CheckFailed(f"{method} {path} failed: {exc}") from None
        if response.status_code != expect:
            raise CheckFailed(
                f"{method} {path} answered {response.status_code}, expected {expect}: {response.text[:300]}"
            )
        return response

    def json(self, method: str, path: str, expect: int = 200, token: str | None = None, **request) -> dict:
        response = self.call(method, path, expect, token, **request)
        try:
            body = response.json()
        except ValueError:
            raise CheckFailed(f"{method} {path}: the answer is not JSON: {response.text[:300]}") from None
        if not isinstance(body, dict):
            raise CheckFailed(f"{method} {path}: the answer is not a JSON object: {response.text[:300]}")
        return body


def check_health(api: Api) -> bool:
    status = api.json("GET", "/health").get("status")
    if status != "ok":
        raise CheckFailed(f"GET /health: status is {status!r}, expected 'ok'")
    return True


def check_authorizer(api: Api) -> bool:
    try:
        api.call("GET", "/models", 401)
    except CheckFailed as exc:
        raise CheckFailed(f"{exc} (without a token: is the Cognito authorizer on?)") from None
    return True


def sign_in(api: Api, user: SignIn) -> str:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client_id, region, endpoint = user.client_id, user.region, user.endpoint
    if not (client_id and region):
        try:
            config = api.json("GET", "/auth/config")
        except CheckFailed as exc:
            raise CheckFailed(f"{exc} (or pass --client-id and --region)") from None
        client_id = client_id or config.get("client_id")
        region = region or str(config.get("user_pool_id", "")).partition("_")[0]
        endpoint = endpoint or config.get("endpoint")
    if not client_id or not region:
        raise CheckFailed("GET /auth/config names no user pool or app client: the API has no sign-in configured")
    # Unsigned, as the page sends it: signing in needs no AWS credentials.
    cognito = boto3.client(
        "cognito-idp", region_name=region, endpoint_url=endpoint or None, config=Config(signature_version=UNSIGNED)
    )
    try:
        return id_token(cognito, client_id, PoolUser(user.username, user.password, ()))
    except ClientError as exc:
        error = exc.response["Error"]
        raise CheckFailed(f"sign-in as {user.username} failed: {error.get('Code')}: {error.get('Message')}") from None
    except (BotoCoreError, SignInChallenge) as exc:
        raise CheckFailed(f"sign-in as {user.username} failed: {exc}") from None


def check_models(api: Api, token: str, expected: Iterable[str]) -> dict[str, dict]:
    listed = {m.get("model"): m for m in api.json("GET", "/models", token=token).get("models", [])}
    if not listed:
        raise CheckFailed("GET /models lists no model: publish them (README, Deploy to AWS)")
    missing = [m for m in expected if m not in listed]
    if missing:
        raise CheckFailed(f"GET /models does not list {', '.join(missing)} (it lists {', '.join(sorted(listed))})")
    unpublished = sorted(name for name, m in listed.items() if not m.get("production_version"))
    if unpublished:
        raise CheckFailed(f"GET /models: no production version of {', '.join(unpublished)}")
    return listed


def check_predict(api: Api, token: str, model: str) -> bool:
    described = api.json("GET", f"/models/{model}", token=token)
    spec, classes = described.get("input") or {}, described.get("classes") or []
    if spec.get("kind") == "tabular":
        if not spec.get("example"):
            raise CheckFailed(f"GET /models/{model}: the manifest has no input.example row to send")
        request: dict[str, Any] = {"json": {"instances": [spec["example"]]}}
    elif spec.get("kind") == "image":
        request = {"data": SMALL_PNG, "headers": {"Content-Type": "image/png"}}
    else:
        raise CheckFailed(f"GET /models/{model}: input.kind is {spec.get('kind')!r}, neither 'tabular' nor 'image'")
    path = f"/models/{model}/predict"
    predictions = api.json("POST", path, token=token, **request).get("predictions") or [{}]
    label = predictions[0].get("label")
    if label not in classes:
        raise CheckFailed(f"POST {path}: label {label!r} is not one of the model's classes ({', '.join(classes)})")
    return True


def check_upload_ticket(api: Api, token: str, models: dict[str, dict]) -> bool:
    images = [name for name, m in sorted(models.items()) if (m.get("input") or {}).get("kind") == "image"]
    if not images:
        raise CheckFailed(f"no image model among {', '.join(sorted(models))}: no upload ticket to ask for")
    model, path = images[0], f"/models/{images[0]}/uploads"
    label = (models[model].get("classes") or [""])[0]
    try:
        ticket = api.json("POST", path, 201, token, json={"label": label, "content_type": "image/png"})
    except CheckFailed as exc:
        raise CheckFailed(f"{exc} (uploads need a user in clinicians or ml-admins)") from None
    if not str(ticket.get("url", "")).startswith("http") or not ticket.get("fields"):
        raise CheckFailed(f"POST {path}: the answer holds no presigned form (url and fields): {ticket}")
    return True


class Report:
    def __init__(self, out: Callable[[str], None]):
        self.out, self.failed, self.checks = out, 0, 0

    def check(self, name: str, run: Callable[[], Any]) -> Any:
        """`run`'s value (never None when it passed), or None when it failed."""
        self.checks += 1
        started = time.perf_counter()
        try:
            value = run()
        except CheckFailed as exc:
            self.failed += 1
            self.out(f"FAIL  {name:<32} {(time.perf_counter() - started) * 1000:7.0f} ms  {exc}")
            return None
        self.out(f"PASS  {name:<32} {(time.perf_counter() - started) * 1000:7.0f} ms")
        return value

    def skip(self, names: str, needs: str) -> None:
        self.out(f"SKIP  {names:<32} {'':>10}  needs {needs}")


def run(url: str, auth: str | SignIn, *, expect_models: Iterable[str] = (), out: Callable[[str], None] = print) -> bool:
    """Every check against `url`, with an ID token or signed in as a user; True when all passed."""
    api, report = Api(url), Report(out)
    report.check("health", lambda: check_health(api))
    report.check("authorizer", lambda: check_authorizer(api))
    token = auth if isinstance(auth, str) else report.check("sign-in", lambda: sign_in(api, auth))
    models = token and report.check("models", lambda: check_models(api, token, expect_models))
    if models:
        for model in sorted(models):
            report.check(f"predict {model}", lambda model=model: check_predict(api, token, model))
        report.check("upload ticket", lambda: check_upload_ticket(api, token, models))
    elif token:
        report.skip("predict, upload ticket", "GET /models")
    else:
        report.skip("models, predict, upload ticket", "a signed-in user")
    if report.failed:
        out(f"smoke test FAILED: {report.failed} of {report.checks} checks failed against {api.base}")
    else:
        out(f"smoke test passed: {report.checks} checks against {api.base}")
    return not report.failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.smoke_test",
        description="Smoke test of a running med-classifier API (health, authorizer, sign-in, every model's "
        "example, an upload ticket). NOT FOR CLINICAL USE.",
    )
    parser.add_argument("--url", required=True, help="the API's base URL (the stack's ApiUrl, or make run's)")
    parser.add_argument("--token", help="a Cognito ID token to send instead of signing in")
    parser.add_argument("--username", help="a user in clinicians or ml-admins to sign in as")
    parser.add_argument("--password", help=f"the user's password (default: ${PASSWORD_VARIABLE})")
    parser.add_argument("--client-id", help="the app client (default: GET /auth/config's)")
    parser.add_argument("--region", help="the user pool's region (default: GET /auth/config's)")
    parser.add_argument("--cognito-endpoint", help="Cognito's endpoint (default: GET /auth/config's)")
    parser.add_argument(
        "--expect-model", action="append", default=[], metavar="MODEL", help="a model GET /models must list"
    )
    args = parser.parse_args(argv)
    if args.password is None:
        from training.settings import training_settings

        args.password = training_settings().smoke_password
    if args.token and args.username:
        parser.error("--token or --username, not both")
    if not args.token and not args.username:
        parser.error(f"sign in: --username (with --password or ${PASSWORD_VARIABLE}), or --token")
    if args.username and not args.password:
        parser.error(f"--username {args.username} needs --password or ${PASSWORD_VARIABLE}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = args.token or SignIn(args.username, args.password, args.client_id, args.region, args.cognito_endpoint)
    return 0 if run(args.url, auth, expect_models=args.expect_model) else 1


if __name__ == "__main__":
    sys.exit(main())
