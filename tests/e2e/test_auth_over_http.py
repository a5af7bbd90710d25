"""Who may call what, over HTTP through the local stack (README, "Who may call what"): every route the
template puts behind the Cognito authorizer refuses each kind of bad token with API Gateway's 401, the
open routes need none, and the functions answer 403 to a signed-in user outside the route's groups.
The tokens are moto's (signed in as the demo users) or forged with moto's signing key (expired, for
another client or pool, an access token), and one signed by a key the pool does not have."""

from __future__ import annotations

import time

import pytest
import requests

from scripts.local_runner.cognito import cognito_routes
from tests.helpers.tokens import claims, forged, stranger_key, subject
from tests.unit.test_template import RESOURCES
from training.datasets import chest_ct

UNAUTHORIZED = (401, {"message": "Unauthorized"})
# A concrete request for each guarded route (method, path): its body and headers when it is signed in.
REQUESTS = {
    ("GET", "/models"): {},
    ("GET", "/models/chest-ct"): {},
    ("GET", "/models/chest-ct/drift"): {},
    ("POST", "/models/breast-cancer/predict"): {"json": {"instances": [[1.0] * 30]}},
    ("POST", "/models/skin-lesion/predict"): {"data": b"", "headers": {"Content-Type": "image/png"}},
    ("POST", "/models/chest-ct/predict"): {"data": b"", "headers": {"Content-Type": "image/png"}},
    ("POST", "/models/chest-ct/uploads"): {"json": {"label": "normal", "content_type": "image/png"}},
    ("POST", "/models/chest-ct/retrain"): {"json": {}},
    ("GET", "/models/chest-ct/retrain/no-such-job"): {},
}
OPEN = [("GET", "/"), ("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/auth/config")]


def test_every_route_behind_the_authorizer_is_requested_here():
    guarded = cognito_routes(RESOURCES)
    assert len(guarded) == len(REQUESTS)
    for method, pattern in guarded:
        assert [path for m, path in REQUESTS if m == method and pattern.match(path)], pattern.pattern


def bad_tokens(stack) -> dict[str, str | None]:
    real = claims(stack["tokens"]["clinician"])
    now = int(time.time())
    return {
        "none": None,
        "garbage": "not-a-token",
        "bearer": "Bearer " + stack["tokens"]["clinician"],  # API Gateway takes the bare token
        "expired": forged({**real, "iat": now - 7200, "exp": now - 3600}),
        "wrong signature": forged(real, key=stranger_key()),
        "wrong client": forged({**real, "aud": "another-app-client"}),
        "wrong pool": forged({**real, "iss": real["iss"].rsplit("/", 1)[0] + "/us-east-1_another"}),
        "access token": forged({**real, "token_use": "access"}),
    }


def send(stack, method: str, path: str, token: str | None, **request) -> requests.Response:
    headers = {**request.pop("headers", {}), "Authorization": token}  # None: no header at all
    return stack["http"].request(method, stack["url"] + path, headers=headers, timeout=60, **request)


@pytest.mark.parametrize("route", sorted(REQUESTS), ids=lambda route: " ".join(route))
def test_a_guarded_route_refuses_every_bad_token_with_api_gateways_401(stack, route):
    for name, token in bad_tokens(stack).items():
        response = send(stack, *route, token, **REQUESTS[route])
        assert (response.status_code, response.json()) == UNAUTHORIZED, (name, response.text[:300])


@pytest.mark.parametrize("route", OPEN, ids=lambda route: " ".join(route))
def test_the_open_routes_need_no_token(stack, route):
    response = send(stack, *route, None)
    assert response.status_code == 200, response.text[:300]


def test_any_signed_in_user_may_predict_and_view_models(stack):
    image = chest_ct.example_image("normal")
    for user in ("clinician", "ml-admin", "no-group"):
        token = stack["tokens"][user]
        assert send(stack, "GET", "/models", token).status_code == 200, user
        answer = send(
            stack, "POST", "/models/chest-ct/predict", token, data=image, headers={"Content-Type": "image/png"}
        )
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "normal", (user, answer.text)


@pytest.mark.parametrize("user, status", [("clinician", 201), ("ml-admin", 201), ("no-group", 403)])
def test_uploads_need_clinicians_or_ml_admins_and_record_the_uploader(stack, user, status):
    response = send(
        stack, "POST", "/models/chest-ct/uploads", stack["tokens"][user], **REQUESTS["POST", "/models/chest-ct/uploads"]
    )
    assert response.status_code == status, response.text
    if status == 201:
        fields = response.json()["fields"]
        assert fields["x-amz-meta-uploader"] == subject(stack["tokens"][user])
    else:
        error = response.json()["error"]
        assert error["code"] == "forbidden"
        assert error["message"] == (
            "visitor@example.org may not upload training data: that needs membership of clinicians or ml-admins."
        )


@pytest.mark.parametrize("user", ["clinician", "no-group"])
def test_only_ml_admins_may_retrain_or_see_jobs(stack, user):
    token = stack["tokens"][user]
    refused = send(stack, "POST", "/models/chest-ct/retrain", token, json={})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", refused.text
    assert refused.json()["error"]["message"].endswith("may not start retraining: that needs membership of ml-admins.")
    job = send(stack, "GET", "/models/chest-ct/retrain/no-such-job", token)
    assert job.status_code == 403 and job.json()["error"]["code"] == "forbidden", job.text
    # An ml-admin gets past the check: the job does not exist.
    assert send(stack, "GET", "/models/chest-ct/retrain/no-such-job", stack["tokens"]["ml-admin"]).status_code == 404
