"""The local runner's emulation of API Gateway's Cognito authorizer (scripts/local_runner/cognito.py):
which routes it guards, each reason a token is refused, and the claims as API Gateway passes them.
tests/e2e/test_auth_over_http.py sends the same tokens to every route through the running stack."""

from __future__ import annotations

import json
import time

import pytest
from joserfc.jwk import KeySet
from moto.utilities.utils import load_resource

from scripts.local_runner.cognito import (
    CLAIMS_KEY,
    CognitoAuthorizerCheck,
    TokenRefused,
    UserPool,
    api_gateway_claims,
    cognito_routes,
    route_authorizer,
)
from tests.helpers.tokens import forged, stranger_key
from tests.unit.test_template import REPO_ROOT, RESOURCES

POOL_ID = "us-east-1_abc"
CLIENT = "client-1"
NOW = 1_800_000_000
OTHER_POOL = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"
OPEN = ("^/$", "^/health$", "^/openapi\\.json$", "^/docs$", "^/auth/config$")


def pool() -> UserPool:
    keys = KeySet.import_key_set(load_resource("cognitoidp/resources/jwks-public.json"))
    return UserPool(POOL_ID, frozenset({CLIENT}), jwks_url="unused://", _keys=keys)


def id_claims(**changes) -> dict:
    claims = {
        "iss": f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}",
        "sub": "sub-1",
        "aud": CLIENT,
        "token_use": "id",
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "email": "clinician@example.org",
        "cognito:groups": ["clinicians"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_token_of_the_pool_for_its_client_is_accepted_with_its_claims():
    assert pool().verify(forged(id_claims()), now=NOW) == id_claims()


@pytest.mark.parametrize(
    "token, reason",
    [
        ("", "no Authorization header"),
        ("not.a.token", "not a token of this pool"),
        ("Bearer " + forged(id_claims()), "not a token of this pool"),  # API Gateway wants the bare token
        (forged(id_claims(), key=stranger_key()), "not a token of this pool: BadSignatureError"),
        (forged(id_claims(exp=NOW - 1)), "ExpiredTokenError"),
        (forged(id_claims(aud="another-client")), "InvalidClaimError: invalid_claim: Invalid claim: 'aud'"),
        (forged(id_claims(iss=OTHER_POOL)), "Invalid claim: 'iss'"),
        (forged(id_claims(token_use="access")), "Invalid claim: 'token_use'"),
        (forged(id_claims(sub=None)), "MissingClaimError"),
    ],
    ids=["none", "garbage", "bearer", "wrong-signature", "expired", "wrong-client", "wrong-pool", "access", "no-sub"],
)
def test_each_token_api_gateway_refuses_is_refused_with_its_reason(token, reason):
    with pytest.raises(TokenRefused) as refused:
        pool().verify(token, now=NOW)
    assert reason in str(refused.value)


def test_the_template_guards_every_route_but_the_open_ones():
    guarded = {(method, pattern.pattern) for method, pattern in cognito_routes(RESOURCES)}
    assert ("POST", "^/models/[^/]+/uploads$") in guarded and ("POST", "^/models/[^/]+/retrain$") in guarded
    assert ("GET", "^/models$") in guarded and ("POST", "^/models/chest\\-ct/predict$") in guarded
    assert ("GET", "^/models/[^/]+/drift$") in guarded
    assert not {
        (m, p) for m, p in guarded if p in ("^/$", "^/health$", "^/openapi\\.json$", "^/docs$", "^/auth/config$")
    }
    assert len(guarded) == 9


def test_the_routes_are_found_in_the_stacks_sam_cli_resolves_too():
    # SAM CLI's stack provider resolves `RestApiId: !Ref MedClassifierApi` to the logical id itself.
    from scripts.local_runner.api import LocalFunctions

    functions = LocalFunctions(str(REPO_ROOT / "template.yaml"), str(REPO_ROOT / "events" / "env.json"))
    try:
        (stack,) = functions.stacks
        event = stack.resources["PredictFunction"]["Properties"]["Events"]["ListModels"]["Properties"]
        assert event["RestApiId"] == "MedClassifierApi"
        resolved = {(m, p.pattern) for m, p in cognito_routes(stack.resources)}
        assert resolved == {(m, p.pattern) for m, p in cognito_routes(RESOURCES)} and len(resolved) == 9
    finally:
        functions.stop()


def test_an_events_authorizer_wins_over_the_apis_default():
    auth = {"DefaultAuthorizer": "Pool"}
    assert route_authorizer(auth, {}) == "Pool"
    assert route_authorizer(auth, {"Auth": {"Authorizer": "NONE"}}) is None
    assert route_authorizer(auth, {"Auth": {"Authorizer": "Other"}}) == "Other"
    assert route_authorizer(None, {}) is None


def test_claims_reach_the_function_as_api_gateway_writes_them():
    shown = api_gateway_claims({"sub": "s", "cognito:groups": ["a", "b"], "exp": 0, "email_verified": True, "n": 5})
    assert shown == {
        "sub": "s",
        "cognito:groups": "a,b",
        "exp": "Thu Jan 01 00:00:00 UTC 1970",
        "email_verified": "true",
        "n": "5",
    }


def call(check: CognitoAuthorizerCheck, method: str, path: str, token: str | None = None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = token
    seen, status = {}, []

    def app(env, start_response):
        seen.update(env)
        start_response("200 OK", [])
        return [b"ok"]

    body = b"".join(check.__class__(app, check.routes, check.pool)(environ, lambda s, h: status.append(s)))
    return status[0], body, seen.get(CLAIMS_KEY)


def test_the_middleware_answers_401_or_passes_the_claims_on():
    check = CognitoAuthorizerCheck(None, cognito_routes(RESOURCES), pool())
    fresh = forged(id_claims(iat=int(time.time()), exp=int(time.time()) + 600))
    assert call(check, "POST", "/models/chest-ct/retrain") == ("401 UNAUTHORIZED", b'{"message":"Unauthorized"}', None)
    status, body, claims = call(check, "POST", "/models/chest-ct/retrain", fresh)
    assert (status, body, claims["cognito:groups"], claims["sub"]) == ("200 OK", b"ok", "clinicians", "sub-1")
    assert call(check, "GET", "/health") == ("200 OK", b"ok", None)  # an open route: no token needed, none passed
    assert call(check, "GET", "/health", fresh)[2] is None  # nor claims, even with a token


def test_without_a_user_pool_every_guarded_route_answers_401():
    check = CognitoAuthorizerCheck(None, cognito_routes(RESOURCES), None)
    assert call(check, "GET", "/models", forged(id_claims()))[0] == "401 UNAUTHORIZED"
    assert json.loads(call(check, "GET", "/models")[1]) == {"message": "Unauthorized"}


def test_a_verified_token_is_not_checked_again_but_its_expiry_is():
    checked = pool()
    token = forged(id_claims(exp=NOW + 60))
    assert checked.verify(token, now=NOW) == id_claims(exp=NOW + 60)
    checked._keys = KeySet([stranger_key()])  # a second signature check would now fail
    assert checked.verify(token, now=NOW + 59)["sub"] == "sub-1"
    with pytest.raises(TokenRefused, match="ExpiredTokenError"):
        checked.verify(token, now=NOW + 60)  # expired at exp, as the first check would say
    with pytest.raises(TokenRefused, match="not a token of this pool"):
        checked.verify(forged(id_claims(exp=NOW + 61)), now=NOW)  # another token is checked in full
