"""scripts/smoke_test.py against a fake API on a loopback port (the same server answers Cognito's
InitiateAuth): a healthy API passes every check, and each way a check can fail prints its own message.
tests/e2e/test_smoke_test.py runs the script against the real local stack."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from scripts import smoke_test
from scripts.smoke_test import SignIn

TOKEN = "id-token-of-u"


class FakeApi:
    """Answers each (method, path) with what `routes` holds: (status, JSON body or raw bytes), or a function
    of the request giving that. Paths outside `open` answer 401 without TOKEN, as the authorizer does."""

    def __init__(self):
        self.requests: list[dict] = []
        self.open = {"/health", "/auth/config", "/"}  # "/": Cognito's InitiateAuth
        self.routes = {
            ("GET", "/health"): (200, {"status": "ok"}),
            ("GET", "/auth/config"): lambda _: (
                200,
                {"user_pool_id": "us-east-1_fake", "client_id": "client-1", "endpoint": self.url},
            ),
            ("POST", "/"): self.cognito,
            ("GET", "/models"): (200, {"models": [self.summary("tab"), self.summary("img")]}),
            ("GET", "/models/tab"): (200, self.summary("tab")),
            ("GET", "/models/img"): (200, self.summary("img")),
            ("POST", "/models/tab/predict"): (200, {"predictions": [{"label": "b"}]}),
            ("POST", "/models/img/predict"): (200, {"predictions": [{"label": "y"}]}),
            ("POST", "/models/img/uploads"): (201, {"url": "http://uploads.example", "fields": {"key": "k"}}),
        }
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll: shutdown() waits for serve_forever's next look at its flag.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @staticmethod
    def summary(model: str) -> dict:
        if model == "tab":
            spec, classes = {"kind": "tabular", "example": [1.5, 2.5]}, ["a", "b"]
        else:
            spec, classes = {"kind": "image", "height": 96, "width": 96, "channels": 3}, ["x", "y"]
        return {"model": model, "production_version": "v1", "input": spec, "classes": classes}

    @staticmethod
    def cognito(request: dict) -> tuple[int, dict]:
        sent = json.loads(request["body"])
        if sent["AuthParameters"] == {"USERNAME": "u", "PASSWORD": "p"} and sent["ClientId"] == "client-1":
            return 200, {"AuthenticationResult": {"IdToken": TOKEN}}
        return 400, {"__type": "NotAuthorizedException", "message": "Incorrect username or password."}

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                api.requests.append(request)
                route = api.routes.get((self.command, self.path), (403, {"message": "Missing Authentication Token"}))
                if self.path not in api.open and self.headers.get("Authorization") != TOKEN:
                    route = (401, {"message": "Unauthorized"})
                status, payload = route(request) if callable(route) else route
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args):  # quiet
                pass

        return Handler

    def sent(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if (r["method"], r["path"]) == (method, path)]


@pytest.fixture
def api():
    fake = FakeApi()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def results(lines: list[str]) -> list[tuple[str, str, str]]:
    """(PASS|FAIL|SKIP, check, message) of each check's line; the last line is the verdict."""
    parsed = []
    for line in lines[:-1]:
        status, name, rest = line[:4], line[6:38].strip(), line[38:].strip()
        parsed.append((status, name, rest.split(" ms", 1)[1].strip() if status != "SKIP" else rest))
    return parsed


def run(api: FakeApi, auth=None, **options) -> tuple[bool, list[str]]:
    lines: list[str] = []
    passed = smoke_test.run(api.url, auth or SignIn("u", "p"), out=lines.append, **options)
    return passed, lines


ALL_PASS = [
    ("PASS", "health", ""),
    ("PASS", "authorizer", ""),
    ("PASS", "sign-in", ""),
    ("PASS", "models", ""),
    ("PASS", "predict img", ""),
    ("PASS", "predict tab", ""),
    ("PASS", "upload ticket", ""),
]


def test_a_healthy_api_passes_every_check_with_the_requests_a_user_would_send(api):
    passed, lines = run(api, expect_models=["tab", "img"])
    assert passed and results(lines) == ALL_PASS
    assert lines[-1] == f"smoke test passed: 7 checks against {api.url}"
    assert "Authorization" not in api.sent("GET", "/models")[0]["headers"]  # the authorizer check: no token
    assert api.sent("GET", "/models")[1]["headers"]["Authorization"] == TOKEN  # bare, as API Gateway takes it
    [sign_in] = api.sent("POST", "/")
    assert sign_in["headers"]["X-Amz-Target"] == "AWSCognitoIdentityProviderService.InitiateAuth"
    assert json.loads(sign_in["body"])["AuthFlow"] == "USER_PASSWORD_AUTH"
    assert "Authorization" not in sign_in["headers"]  # unsigned, as the page sends it: no AWS credentials
    [tabular] = api.sent("POST", "/models/tab/predict")
    assert json.loads(tabular["body"]) == {"instances": [[1.5, 2.5]]}
    [image] = api.sent("POST", "/models/img/predict")
    assert image["headers"]["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(image["body"])).mode == "RGB"  # a PNG that decodes
    [ticket] = api.sent("POST", "/models/img/uploads")
    assert json.loads(ticket["body"]) == {"label": "x", "content_type": "image/png"}
    assert not [r for r in api.requests if r["headers"].get("Host", "").startswith("uploads")]  # nothing uploaded


def bad(route, answer):
    return lambda api: api.routes.__setitem__(route, answer)


def summaries(**changed):
    return lambda api: api.routes.__setitem__(
        ("GET", "/models"), (200, {"models": [{**FakeApi.summary("tab"), **changed}, FakeApi.summary("img")]})
    )


def described(model, **changed):
    return lambda api: api.routes.__setitem__(("GET", f"/models/{model}"), (200, {**FakeApi.summary(model), **changed}))


UNAUTHORIZED = '{"message": "Unauthorized"}'
# (what breaks, the check that fails, its message; the other checks pass)
FAILURES = {
    "health down": (
        bad(("GET", "/health"), (503, {"message": "down"})),
        "health",
        'GET /health answered 503, expected 200: {"message": "down"}',
    ),
    "health not ok": (
        bad(("GET", "/health"), (200, {"status": "degraded"})),
        "health",
        "GET /health: status is 'degraded', expected 'ok'",
    ),
    "health not JSON": (
        bad(("GET", "/health"), (200, b"<html>")),
        "health",
        "GET /health: the answer is not JSON: <html>",
    ),
    "no authorizer": (
        lambda api: api.open.add("/models"),
        "authorizer",
        "GET /models answered 200, expected 401: "
        + json.dumps({"models": [FakeApi.summary("tab"), FakeApi.summary("img")]})[:300]
        + " (without a token: is the Cognito authorizer on?)",
    ),
    "no sign-in config": (
        bad(("GET", "/auth/config"), (200, {"user_pool_id": "", "client_id": "", "endpoint": ""})),
        "sign-in",
        "GET /auth/config names no user pool or app client: the API has no sign-in configured",
    ),
    "sign-in config missing": (
        bad(("GET", "/auth/config"), (404, {"message": "Not found"})),
        "sign-in",
        'GET /auth/config answered 404, expected 200: {"message": "Not found"} (or pass --client-id and --region)',
    ),
    "first sign-in": (
        bad(("POST", "/"), (200, {"ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": "s"})),
        "sign-in",
        "sign-in as u failed: Cognito asks for NEW_PASSWORD_REQUIRED before it gives u tokens",
    ),
    "no models": (
        bad(("GET", "/models"), (200, {"models": []})),
        "models",
        "GET /models lists no model: publish them (README, Deploy to AWS)",
    ),
    "models not an object": (
        bad(("GET", "/models"), (200, [])),
        "models",
        "GET /models: the answer is not a JSON object: []",
    ),
    "a model unpublished": (
        summaries(production_version=None),
        "models",
        "GET /models: no production version of tab",
    ),
    "no example row": (
        described("tab", input={"kind": "tabular"}),
        "predict tab",
        "GET /models/tab: the manifest has no input.example row to send",
    ),
    "unknown input kind": (
        described("tab", input={"kind": "audio"}),
        "predict tab",
        "GET /models/tab: input.kind is 'audio', neither 'tabular' nor 'image'",
    ),
    "predict fails": (
        bad(("POST", "/models/img/predict"), (503, {"error": {"message": "no loadable version"}})),
        "predict img",
        'POST /models/img/predict answered 503, expected 200: {"error": {"message": "no loadable version"}}',
    ),
    "label not a class": (
        bad(("POST", "/models/tab/predict"), (200, {"predictions": [{"label": "c"}]})),
        "predict tab",
        "POST /models/tab/predict: label 'c' is not one of the model's classes (a, b)",
    ),
    "upload refused": (
        bad(("POST", "/models/img/uploads"), (403, {"error": {"message": "clinicians only"}})),
        "upload ticket",
        'POST /models/img/uploads answered 403, expected 201: {"error": {"message": "clinicians only"}} '
        "(uploads need a user in clinicians or ml-admins)",
    ),
    "upload without a form": (
        bad(("POST", "/models/img/uploads"), (201, {"url": "", "fields": {}})),
        "upload ticket",
        "POST /models/img/uploads: the answer holds no presigned form (url and fields): {'url': '', 'fields': {}}",
    ),
}


# What a failed check leaves out: everything that needs its token or its list of models.
SKIPPED_AFTER = {
    "sign-in": ("models, predict, upload ticket", "needs a signed-in user"),
    "models": ("predict, upload ticket", "needs GET /models"),
}


@pytest.mark.parametrize("breakage", FAILURES)
def test_each_failing_check_says_what_failed_and_the_others_still_run(api, breakage):
    breaks, check, message = FAILURES[breakage]
    breaks(api)
    passed, lines = run(api)
    assert not passed
    expected = [("FAIL", check, message) if name == check else (status, name, m) for status, name, m in ALL_PASS]
    if check in SKIPPED_AFTER:
        expected = [*expected[: [name for _, name, _ in ALL_PASS].index(check) + 1], ("SKIP", *SKIPPED_AFTER[check])]
    assert results(lines) == expected
    checks = len([row for row in expected if row[0] != "SKIP"])
    assert lines[-1] == f"smoke test FAILED: 1 of {checks} checks failed against {api.url}"


def test_a_wrong_password_fails_the_sign_in_with_cognitos_reason(api):
    passed, lines = run(api, SignIn("u", "wrong"))
    assert not passed
    assert results(lines)[2:] == [
        ("FAIL", "sign-in", "sign-in as u failed: NotAuthorizedException: Incorrect username or password."),
        ("SKIP", "models, predict, upload ticket", "needs a signed-in user"),
    ]


def test_a_model_the_caller_expects_must_be_listed(api):
    passed, lines = run(api, expect_models=["tab", "chest-ct", "skin-lesion"])
    assert not passed
    assert ("FAIL", "models", "GET /models does not list chest-ct, skin-lesion (it lists img, tab)") in results(lines)
    assert results(lines)[-1] == ("SKIP", "predict, upload ticket", "needs GET /models")


def test_no_image_model_means_no_upload_ticket_to_ask_for(api):
    api.routes["GET", "/models"] = (200, {"models": [FakeApi.summary("tab")]})
    passed, lines = run(api)
    assert not passed
    assert results(lines)[-1] == ("FAIL", "upload ticket", "no image model among tab: no upload ticket to ask for")


def test_a_token_replaces_the_sign_in_and_a_refused_one_fails_the_models_check(api):
    passed, lines = run(api, TOKEN)
    assert passed and [name for _, name, _ in results(lines)] == [n for _, n, _ in ALL_PASS if n != "sign-in"]
    assert not api.sent("POST", "/")
    passed, lines = run(api, "expired-token")
    assert not passed
    assert results(lines)[2:] == [
        ("FAIL", "models", f"GET /models answered 401, expected 200: {UNAUTHORIZED}"),
        ("SKIP", "predict, upload ticket", "needs GET /models"),
    ]


def test_an_api_that_does_not_answer_fails_every_check_it_reaches(api):
    api.server.shutdown()
    api.server.server_close()
    passed, lines = run(api, TOKEN)
    assert not passed
    assert [(status, name) for status, name, _ in results(lines)] == [
        ("FAIL", "health"),
        ("FAIL", "authorizer"),
        ("FAIL", "models"),
        ("SKIP", "predict, upload ticket"),
    ]
    port = api.url.rsplit(":", 1)[1]
    assert results(lines)[0][2].startswith(f"GET /health failed: HTTPConnectionPool(host='127.0.0.1', port={port})")


def test_the_client_id_and_region_given_skip_auth_config(api):
    passed, lines = run(api, SignIn("u", "p", client_id="client-1", region="us-east-1", endpoint=api.url))
    assert passed and not api.sent("GET", "/auth/config")


def test_cognito_out_of_reach_fails_the_sign_in_with_botocores_reason(api, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    api.routes["GET", "/auth/config"] = (
        200,
        {"user_pool_id": "us-east-1_fake", "client_id": "client-1", "endpoint": "http://127.0.0.1:9"},
    )
    passed, lines = run(api)
    assert not passed
    assert ("FAIL", "sign-in", 'sign-in as u failed: Could not connect to the endpoint URL: "http://127.0.0.1:9/"') in (
        results(lines)
    )


def test_main_exits_0_when_every_check_passed_and_1_otherwise(api, capsys, monkeypatch):
    monkeypatch.setenv("SMOKE_PASSWORD", "p")
    assert smoke_test.main(["--url", api.url, "--username", "u"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"smoke test passed: 7 checks against {api.url}"
    assert smoke_test.main(["--url", api.url, "--username", "u", "--password", "wrong"]) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--url", "http://x"], "sign in: --username (with --password or $SMOKE_PASSWORD), or --token"),
        (["--url", "http://x", "--username", "u"], "--username u needs --password or $SMOKE_PASSWORD"),
        (["--url", "http://x", "--username", "u", "--token", "t"], "--token or --username, not both"),
    ],
)
def test_the_command_line_says_how_to_sign_in(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("SMOKE_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exited:
        smoke_test.parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m scripts.smoke_test: error: {message}"
